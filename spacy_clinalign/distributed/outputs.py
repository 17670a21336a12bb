"""Per-document output files: written whole or not at all, so a rerun can tell done from not done.

Every file goes to a temporary name in its folder, then `os.replace` puts it in place (io.atomic).
Each document has one *marker* file, written after its other files: a document is done exactly when its
marker exists, and a rerun skips it. Documents that failed are listed in `errors.tsv` (name, reason)."""
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from ..io.atomic import atomic_write_bytes

ERRORS_FILE = "errors.tsv"


@dataclass
class DocResult:
    """What processing one document gave: its output files (relative path -> bytes, the marker among
    them) or the reason it failed."""

    name: str
    files: Dict[str, bytes] = field(default_factory=dict)
    error: Optional[str] = None


def write_document(out_dir: Path, result: DocResult, marker: str) -> str:
    """Write one document's files, its marker last. Returns "written", "exists" (the marker was already
    there: another attempt wrote it) or "error"."""
    if result.error is not None:
        return "error"
    if marker not in result.files:
        raise ValueError(f"{result.name}: the output files {sorted(result.files)} lack the marker {marker}")
    if (out_dir / marker).exists():
        return "exists"
    for rel, data in result.files.items():
        if rel != marker:
            atomic_write_bytes(out_dir / rel, data)
    atomic_write_bytes(out_dir / marker, result.files[marker])
    return "written"


def write_errors(out_dir: Path, errors: Iterable[Tuple[str, str]]) -> Path:
    """errors.tsv: one row per failed document (name, reason), sorted by name; header only when none failed."""
    path = out_dir / ERRORS_FILE
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(["name", "reason"])
    writer.writerows([name, " ".join(reason.split())] for name, reason in sorted(errors))
    atomic_write_bytes(path, buf.getvalue().encode("utf8"))
    return path


def read_errors(out_dir: Path) -> List[Tuple[str, str]]:
    path = Path(out_dir) / ERRORS_FILE
    with path.open(encoding="utf8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return [(r[0], r[1]) for r in rows[1:]]
