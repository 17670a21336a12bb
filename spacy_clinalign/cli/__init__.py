"""Command line: `python -m spacy_clinalign COMMAND ...` (also installed as `spacy-clinalign`).

One module per command group; each adds its sub-commands with `add_commands(sub)`. The library never
imports this package: everything a command runs lives in the library (`pipelines.py`, `scoring/`, `io/`)."""
import argparse
from typing import List, Optional

from . import align, demo, encoder, link, ner, pipelines, project, teacher

GROUPS = (align, encoder, teacher, project, ner, demo, link, pipelines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_clinalign", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, ImportError, OSError) as err:  # OSError: disk full, read-only, a folder as output...
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
