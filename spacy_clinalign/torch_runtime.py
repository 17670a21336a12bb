"""Where and how torch runs, for every component: one device rule and one thread rule.

Device: an explicit device name wins; otherwise torch follows spaCy's own GPU switch
(`spacy.require_gpu()` / `prefer_gpu()` set thinc's current ops to CupyOps on a device), so a user who
did not ask for a GPU never gets one behind their back.

Threads: spaCy starts `nlp.pipe(n_process=N)` workers with fork. A child forked after the parent has run
torch's OpenMP/MKL thread pools hangs at its first parallel region. Each forked child therefore runs torch
on one thread, which is also the right share when N processes split the cores.
"""
import os
import sys
from typing import Optional

_installed = False


def torch_device(name: Optional[str] = None):
    """`torch.device(name)` when given; else the GPU spaCy was told to use; else the CPU."""
    import torch

    if name:
        return torch.device(name)
    from thinc.api import get_current_ops

    ops = get_current_ops()
    if type(ops).__name__ == "CupyOps":
        device_id = getattr(ops, "device_id", 0) or 0
        return torch.device(f"cuda:{device_id}")
    return torch.device("cpu")


def _single_threaded_torch() -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def install_fork_guard() -> None:
    global _installed
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_single_threaded_torch)
        _installed = True
