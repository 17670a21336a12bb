"""Argument types shared by the commands: numbers that must be positive are checked when parsed, so
`--batch-size 0` is a usage error instead of an empty output file and exit status 0."""
import argparse


LAYER_HELP = ("hidden layer to read when MODEL is an encoder folder (default 8); a saved pipeline keeps the "
              "layer it was trained at, and a different --layer is ignored for it with a warning")


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return number


def non_negative_int(value: str) -> int:
    """For limits where 0 means 'all'."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (0 = all), got {value}")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value}")
    return number
