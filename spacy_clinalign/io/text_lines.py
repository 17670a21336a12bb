"""Text, line and JSONL reading for the readers in `io/`, with errors that name the file and the line.

Lines end at `\\n` or `\\r\\n` only. `str.splitlines` also breaks at U+2028, U+2029, U+0085, form feeds and
other separators, which occur inside sentences of real corpora; splitting there would shift every
following line of a parallel file against its gold alignment.
"""
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple, Union

import srsly

PathLike = Union[str, Path]


class InputFormatError(ValueError):
    """Bad input in a file; the message starts with `path:line:` (line 1-based)."""

    def __init__(self, path: PathLike, line_no: int, problem: str):
        super().__init__(f"{path}:{line_no}: {problem}")
        self.path = str(path)
        self.line_no = line_no


def check_limit(limit: Optional[int], where: str) -> Optional[int]:
    """A `limit` argument (read at most this many items; 0 or None = all) must be a non-negative integer:
    a negative one would silently drop items from the end instead."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"{where}: limit must be an integer >= 0 (0 = no limit), got {limit!r}")
    return limit


def read_text(path: PathLike, what: str = "file", translate_newlines: bool = False) -> str:
    """The file decoded as UTF-8; an invalid byte is an InputFormatError naming the file, line and offset.
    translate_newlines: turn `\\r\\n` and `\\r` into `\\n`, as `Path.read_text` does."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    data = p.read_bytes()
    try:
        text = data.decode("utf8")
    except UnicodeDecodeError as err:
        line_no = data.count(b"\n", 0, err.start) + 1
        raise InputFormatError(
            p, line_no, f"not valid UTF-8 (byte 0x{data[err.start]:02x} at byte offset {err.start}: {err.reason})"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n") if translate_newlines else text


def split_lines(text: str) -> List[str]:
    """Lines of `text`, split at `\\n` and `\\r\\n` only; a final line break does not start a new line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_lines(path: PathLike, what: str = "file") -> List[str]:
    """The lines of a UTF-8 file (see `split_lines`)."""
    return split_lines(read_text(path, what))


def iter_jsonl(path: PathLike, what: str = "JSONL file") -> Iterator[Tuple[int, Any]]:
    """(line number, object) for each non-blank line; invalid JSON or UTF-8 names the file and line."""
    for n, line in enumerate(read_lines(path, what), start=1):
        if not line.strip():
            continue
        try:
            yield n, srsly.json_loads(line)
        except ValueError as err:
            raise InputFormatError(path, n, f"invalid JSON ({err})") from None
