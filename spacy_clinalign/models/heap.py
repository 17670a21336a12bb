"""Give the memory freed by an encoder call back to the operating system.

An encoder forward pass allocates tens of MB of short-lived activations (and tokenizer buffers), most of them
below glibc's mmap threshold, which glibc raises on its own up to 32 MiB after the first large free. Those
blocks come from the malloc heap, and between two calls the pipeline allocates small objects that live on
(Docs, alignment matrices, Python objects). A freed activation block sitting below such an object cannot be
returned by glibc's normal trimming (only the heap's top is), so the process keeps it: measured on
`evaluate-projection` with multilingual-e5-small, RSS grew by 335 MiB over 40 pairs, all of it free memory
that `malloc_trim(0)` handed back (bench/RESULTS.md, "Memory"). Calling `malloc_trim(0)` after each encoder
call releases the free pages of every arena (madvise), so the process holds what is live plus one call's
working memory, whatever the number of documents.

Where the C library has no `malloc_trim` (macOS, musl) this does nothing.
"""
import ctypes
import ctypes.util
from typing import Callable, Optional

import torch

from .mapped_pages import release_input_embeddings

_trim: Optional[Callable[[int], int]] = None
_looked_up = False


def _malloc_trim() -> Optional[Callable[[int], int]]:
    global _trim, _looked_up
    if not _looked_up:
        _looked_up = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _trim = libc.malloc_trim
            _trim.argtypes = [ctypes.c_size_t]
            _trim.restype = ctypes.c_int
        except (OSError, AttributeError):
            _trim = None
    return _trim


def can_release() -> bool:
    """Whether this C library can hand freed heap pages back (glibc)."""
    return _malloc_trim() is not None


def release_free_heap() -> bool:
    """Return the malloc heap's free pages to the OS (glibc `malloc_trim(0)`); cheap next to an encoder call
    (it walks the free lists, no live block moves). True if some memory was released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


def release_after_call(model: Optional[torch.nn.Module] = None) -> None:
    """What an inference call leaves behind, handed back: the freed heap, and the pages of `model`'s
    memory-mapped embedding table that the call read (models/mapped_pages.py)."""
    release_free_heap()
    if model is not None:
        release_input_embeddings(model)
