"""Keep `nlp.pipe(n_process=N)` from deadlocking.

spaCy starts its workers with fork. A child forked after the parent has run torch's OpenMP/MKL thread
pools hangs at its first parallel region. Each forked child therefore runs torch on one thread, which is
also the right share when N processes split the cores.
"""
import os
import sys

_installed = False


def _single_threaded_torch() -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def install_fork_guard() -> None:
    global _installed
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_single_threaded_torch)
        _installed = True
