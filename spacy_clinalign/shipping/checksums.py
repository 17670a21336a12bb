"""`SHA256SUMS` over the shipped weight files, in the format of coreutils' `sha256sum` (so
`cd spacy_clinalign/weights && sha256sum -c SHA256SUMS` checks them too). A file that differs, is missing or
is not listed is an error naming it: nothing shipped is used before its bytes are checked."""
import hashlib
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

SUMS_NAME = "SHA256SUMS"
# Package files next to the data that the sums do not cover (code and Python's caches).
NOT_DATA = ("__init__.py",)
NOT_DATA_DIRS = ("__pycache__",)


class ChecksumError(ValueError):
    """A shipped weight file does not match SHA256SUMS (changed, missing or unlisted)."""


def sha256_file(path: Union[str, Path]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_files(root: Path, under: Optional[str] = None) -> Dict[str, Path]:
    """Every data file below `root` (or below `root/under`), keyed by its POSIX path relative to `root`."""
    base = root / under if under else root
    found = {}
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or path.name in (SUMS_NAME, *NOT_DATA) or set(rel.parts) & set(NOT_DATA_DIRS):
            continue
        found[rel.as_posix()] = path
    return found


def read_sums(sums_path: Path) -> Dict[str, str]:
    """{relative path: sha256} from a SHA256SUMS file; a malformed line is an error naming it."""
    sums = {}
    for n, line in enumerate(sums_path.read_text(encoding="utf8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        name = name.lstrip("*")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not name:
            raise ChecksumError(f"{sums_path}, line {n}: not a `sha256  path` line: {line!r}")
        if name.startswith("/") or ".." in Path(name).parts:
            raise ChecksumError(f"{sums_path}, line {n}: {name!r} is not a path inside {sums_path.parent}")
        sums[name] = digest
    return sums


def write_checksums(root: Union[str, Path]) -> Path:
    """(Re)write `root/SHA256SUMS` over every data file below `root`; returns its path."""
    root = Path(root)
    lines = [f"{sha256_file(path)}  {name}\n" for name, path in data_files(root).items()]
    out = root / SUMS_NAME
    out.write_text("".join(lines), encoding="utf8")
    return out


def verify_checksums(root: Union[str, Path], only: Optional[str] = None) -> Dict[str, str]:
    """Check the files below `root` (or only those of the part folder `only`) against `root/SHA256SUMS`.
    Returns {relative path: sha256}; raises ChecksumError naming the first file that differs, is listed
    but missing, or is present but unlisted."""
    root = Path(root)
    sums_path = root / SUMS_NAME
    if not sums_path.is_file():
        raise ChecksumError(f"{sums_path} is missing: the weights in {root} cannot be checked, so they are not used")
    sums = read_sums(sums_path)
    prefix = f"{only.strip('/')}/" if only else ""
    listed = {name: digest for name, digest in sums.items() if name.startswith(prefix)}
    present = data_files(root, only)
    if only and not listed:
        raise ChecksumError(f"{sums_path} lists no file of {root / only}: its weights cannot be checked")
    missing, unlisted = sorted(set(listed) - set(present)), sorted(set(present) - set(listed))
    if missing:
        raise ChecksumError(f"{root / missing[0]} is listed in {sums_path} but missing")
    if unlisted:
        raise ChecksumError(f"{root / unlisted[0]} is not listed in {sums_path}: an unexpected file next to the weights")
    for name in sorted(listed):
        got = sha256_file(present[name])
        if got != listed[name]:
            raise ChecksumError(f"{root / name} does not match its checksum in {sums_path} "
                                f"(sha256 {got[:12]}..., expected {listed[name][:12]}...): the file was changed or "
                                "corrupted; it is not used")
    return listed


def part_digest(root: Union[str, Path], part: str) -> str:
    """A short identity of a shipped part: sha256 over its files' listed sums (what `make demo` prints)."""
    sums = verify_checksums(root, part)
    digest = hashlib.sha256("".join(f"{sums[n]}  {n}\n" for n in sorted(sums)).encode("utf8"))
    return digest.hexdigest()


def iter_parts(root: Union[str, Path]) -> Iterable[str]:
    """Names of the part folders below `root` (each a shipped delta with its card)."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in NOT_DATA_DIRS
                  and (p / "card.json").is_file())
