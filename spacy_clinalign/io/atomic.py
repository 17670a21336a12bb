"""Output files that are either complete or absent: write to a temporary name in the same folder, then
rename over the final name (`os.replace` is atomic on one filesystem). A full disk, a SIGTERM or an
exception mid-write leaves the old file (or none), never a half-written file that looks complete."""
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Union

PathLike = Union[str, Path]


@contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str = "utf8", newline: str = "") -> Iterator[IO]:
    """`open` for writing whose result appears at `path` only when the block ends without error.
    `newline=""` writes text exactly as given (no \\n -> \\r\\n translation), so offsets stay valid."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, **({} if binary else {"encoding": encoding, "newline": newline})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf8") -> None:
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


@contextmanager
def atomic_folder(path: PathLike) -> Iterator[Path]:
    """A temporary sibling folder to fill; renamed to `path` when the block succeeds, removed otherwise.
    `path` must not exist yet (a folder is never half-replaced)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
