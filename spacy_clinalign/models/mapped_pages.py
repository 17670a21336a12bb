"""Hand back the pages of a memory-mapped embedding table once an encoder call has read its rows.

transformers maps safetensors weights (a private file mapping) instead of copying them. A lookup in
multilingual-e5-small's 250k x 384 embedding table makes the pages of the rows it reads resident, with
their neighbours (the kernel maps around each fault), and they stay: on evaluate-projection over the 297
MultiClinAI dev pairs the table's pages grow to ~0.4 GiB of RSS, for rows each call needs a few hundred of.

An unmodified page of a private file mapping can be dropped with `madvise(MADV_DONTNEED)`: the next read
maps the same bytes back from the page cache (a minor fault, no disk read while the file is cached). A page
that was written (the copy-on-write copy of a fine-tuned or delta-applied weight) holds data the file does
not have, and dropping it would bring the file's bytes back. So `release_mapped_pages` first reads
/proc/self/pagemap and releases nothing when any resident page of the range is such a copy; where that
cannot be checked (no /proc, another OS) it does nothing.
"""
import ctypes
import ctypes.util
import mmap
import os
from typing import Optional, Tuple

import numpy
import torch

MADV_DONTNEED = 4
PAGE_SIZE = mmap.PAGESIZE
_PRESENT = numpy.uint64(1 << 63)
_FILE_OR_SHARED = numpy.uint64(1 << 61)
_madvise = None


def _libc_madvise():
    global _madvise
    if _madvise is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fn = libc.madvise
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            fn.restype = ctypes.c_int
            _madvise = fn
        except (OSError, AttributeError):
            _madvise = False
    return _madvise or None


def mapped_file_range(tensor: torch.Tensor) -> Optional[Tuple[int, int]]:
    """The whole pages of `tensor`'s bytes, (start, end) addresses, if they lie in one private mapping of a
    regular file (what safetensors' memory map is); None for memory the process allocated, or off Linux."""
    if tensor.device.type != "cpu" or not tensor.is_contiguous() or tensor.numel() == 0:
        return None
    first = tensor.data_ptr()
    last = first + tensor.numel() * tensor.element_size()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                low, high = (int(x, 16) for x in fields[0].split("-"))
                if low <= first < high:
                    path = fields[5].strip() if len(fields) == 6 else ""
                    private_file = fields[1].endswith("p") and path.startswith("/")
                    if not private_file or last > high:
                        return None
                    start = -(-first // PAGE_SIZE) * PAGE_SIZE
                    end = last // PAGE_SIZE * PAGE_SIZE
                    return (start, end) if end > start else None
    except OSError:
        return None
    return None


def resident_pages(start: int, end: int) -> Optional[Tuple[int, int]]:
    """(resident pages, resident pages that are the file's own) of [start, end), from /proc/self/pagemap;
    None if it cannot be read."""
    try:
        with open("/proc/self/pagemap", "rb") as pagemap:
            pagemap.seek(start // PAGE_SIZE * 8)
            entries = numpy.frombuffer(pagemap.read((end - start) // PAGE_SIZE * 8), dtype=numpy.uint64)
    except OSError:
        return None
    present = (entries & _PRESENT) != 0
    return int(present.sum()), int((present & ((entries & _FILE_OR_SHARED) != 0)).sum())


def release_mapped_pages(tensor: torch.Tensor) -> int:
    """Drop the resident pages of a file-mapped, unmodified `tensor` from this process (they map back on the
    next read). Returns the bytes released; 0 when the tensor is not file-mapped, when a page of it was
    written (releasing would lose the change), or when this cannot be checked."""
    span = mapped_file_range(tensor)
    madvise = _libc_madvise()
    if span is None or madvise is None:
        return 0
    counts = resident_pages(*span)
    if counts is None or counts[0] == 0 or counts[0] != counts[1]:
        return 0
    if madvise(span[0], span[1] - span[0], MADV_DONTNEED) != 0:
        return 0
    return counts[0] * PAGE_SIZE


def release_input_embeddings(model: torch.nn.Module) -> int:
    """`release_mapped_pages` for a Hugging Face model's input embedding table, the one large weight an
    encoder call reads only a few rows of (every other weight is read whole by each call)."""
    get = getattr(model, "get_input_embeddings", None)
    embeddings = get() if callable(get) else None
    weight = getattr(embeddings, "weight", None)
    return release_mapped_pages(weight.detach()) if isinstance(weight, torch.Tensor) else 0


__all__ = ["mapped_file_range", "resident_pages", "release_mapped_pages", "release_input_embeddings"]
