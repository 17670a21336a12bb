"""Refuse encoder weights holding NaN or infinite values, without making every weight resident.

NaN or infinite weights give NaN vectors, matrices and links, so loading refuses them. transformers loads a
`.safetensors` folder by memory-mapping the file: a parameter's pages enter the process only when read, and
inference reads few of them in the 250k-row embedding table (only the rows of the wordpieces it meets).
Checking the parameters themselves would read every page of that map and keep it resident: with
multilingual-e5-small, 0.37 GiB of RSS more for the whole run (plus 0.6 GiB at the check itself when done
on whole tensors: `torch.isfinite` allocates a float copy and bool masks of a tensor's size). So a
safetensors file is checked by reading its bytes through ordinary buffered reads, a few MB at a time (the
page cache holds them, not this process), and other weights are checked on the parameters, chunk by chunk.

The test is on the IEEE bit pattern (exponent all ones means inf or NaN), so it covers float16, bfloat16,
float32 and float64 alike without converting anything.
"""
import json
import struct
from pathlib import Path
from typing import Iterable, List

import numpy
import torch

# Elements checked per step on a parameter, and bytes read per step from a file.
CHUNK_ELEMENTS = 1 << 20
CHUNK_BYTES = 1 << 22

# safetensors dtype -> (unsigned integer view, exponent mask): a value is inf or NaN when all its exponent
# bits are set.
_EXPONENT_MASKS = {
    "F16": (numpy.uint16, 0x7C00),
    "BF16": (numpy.uint16, 0x7F80),
    "F32": (numpy.uint32, 0x7F800000),
    "F64": (numpy.uint64, 0x7FF0000000000000),
}


class NonFiniteWeightsError(ValueError):
    """An encoder weight holds NaN or infinite values."""


def _refuse(name: str, where: str) -> NonFiniteWeightsError:
    return NonFiniteWeightsError(f"spacy-clinalign: the encoder weight {name!r} contains NaN or infinite values "
                                 f"({where}); the weights are corrupted")


def check_finite(transformer: torch.nn.Module, where: str) -> None:
    """Every floating-point tensor of the module's state dict is finite; checked CHUNK_ELEMENTS at a time,
    so the check needs a few MB whatever the size of a weight."""
    for name, tensor in transformer.state_dict().items():
        if not tensor.is_floating_point():
            continue
        for chunk in tensor.detach().reshape(-1).split(CHUNK_ELEMENTS):
            if not bool(torch.isfinite(chunk).all()):
                raise _refuse(name, where)


def safetensors_files(folder: Path) -> List[Path]:
    """The weight files transformers reads from a local folder when it holds safetensors (one file, or the
    shards listed by model.safetensors.index.json); empty when the folder has none."""
    folder = Path(folder)
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf8")).get("weight_map", {}).values()))
        return [folder / shard for shard in shards]
    return []


def check_safetensors_finite(paths: Iterable[Path], where: str) -> None:
    """Every floating-point tensor stored in these safetensors files is finite, read in CHUNK_BYTES steps
    through a reused buffer (no memory map, so nothing of the file stays in this process)."""
    buffer = bytearray(CHUNK_BYTES)
    for path in paths:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) != 8:
                raise ValueError(f"spacy-clinalign: {path} is not a safetensors file (too short) ({where})")
            (header_len,) = struct.unpack("<Q", head)
            try:
                header = json.loads(handle.read(header_len))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"spacy-clinalign: {path} has an unreadable safetensors header ({err}) "
                                 f"({where})") from None
            start = 8 + header_len
            for name, info in header.items():
                if name == "__metadata__" or not isinstance(info, dict) or info.get("dtype") not in _EXPONENT_MASKS:
                    continue
                view, mask = _EXPONENT_MASKS[info["dtype"]]
                begin, end = info["data_offsets"]
                _check_range(handle, start + begin, start + end, buffer, view, mask, name, f"{where}, {path.name}")


def _check_range(handle, begin: int, end: int, buffer: bytearray, view, mask: int, name: str, where: str) -> None:
    handle.seek(begin)
    item = numpy.dtype(view).itemsize
    step = len(buffer) - len(buffer) % item
    mask = view(mask)
    while begin < end:
        want = min(step, end - begin)
        got = handle.readinto(memoryview(buffer)[:want])
        if got != want:
            raise ValueError(f"spacy-clinalign: the weight {name!r} is cut short ({where}); the weights file is "
                             "incomplete")
        values = numpy.frombuffer(buffer, dtype=view, count=want // item)
        if bool(((values & mask) == mask).any()):
            raise _refuse(name, where)
        begin += want
