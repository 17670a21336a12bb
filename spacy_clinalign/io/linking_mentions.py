"""Gold mentions with codes: CodiEsp X.tsv (discontinuous offsets `s e;s e`) and DisTEMIST linking
cross-mappings (`icd10_code`, which may be `None`, a code, several joined by `+`, or a range)."""
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple, Union

from ..linking.codes import normalize_code


@dataclass(frozen=True)
class Mention:
    doc_id: str
    text: str
    codes: Tuple[str, ...]
    offsets: Tuple[Tuple[int, int], ...]
    label: str

    @property
    def start(self) -> int:
        return self.offsets[0][0]

    @property
    def end(self) -> int:
        return self.offsets[-1][1]


def _parse_offsets(value: str, where: str) -> Tuple[Tuple[int, int], ...]:
    pairs = []
    for part in value.split(";"):
        bits = part.split()
        if len(bits) != 2 or not all(b.isdigit() for b in bits) or int(bits[0]) > int(bits[1]):
            raise ValueError(f"{where}: bad offsets {value!r}; expected 'start end[;start end]'")
        if int(bits[0]) < int(bits[1]):  # CodiEsp has a few empty fragments ("1446 1446"): nothing to keep
            pairs.append((int(bits[0]), int(bits[1])))
    if not pairs:
        raise ValueError(f"{where}: offsets {value!r} cover no characters")
    return tuple(sorted(pairs))


def read_codiesp_x(path: Union[str, Path], labels: Sequence[str] = ("DIAGNOSTICO",)) -> List[Mention]:
    """Rows `doc, label, code, text, offsets` of a CodiEsp X.tsv, keeping `labels` (all if empty)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"CodiEsp X file {str(path)!r} does not exist")
    mentions = []
    with path.open(encoding="utf8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n\r").split("\t")
            where = f"{path}:{line_no}"
            if len(parts) != 5:
                raise ValueError(f"{where}: expected 5 tab-separated fields (doc, label, code, text, offsets), got {len(parts)}")
            doc_id, label, code, text, offsets = parts
            if labels and label not in labels:
                continue
            try:
                norm = normalize_code(code)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
            mentions.append(Mention(doc_id, text, (norm,), _parse_offsets(offsets, where), label))
    return mentions


def read_distemist_linking(path: Union[str, Path], skip_uncoded: bool = True) -> List[Mention]:
    """Mentions of DisTEMIST cross-mapping TSVs (a file, or a folder of them) with their ICD-10 codes.
    `+` joins several gold codes; rows with `None` have no ICD-10 mapping and are skipped (counted by
    `count_uncoded`) unless `skip_uncoded` is False, when they keep an empty code tuple."""
    path = Path(path)
    files = sorted(path.glob("*.tsv")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise FileNotFoundError(f"no DisTEMIST linking TSV at {str(path)!r}")
    mentions = []
    for file in files:
        with file.open(encoding="utf8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = {"filename", "off0", "off1", "span", "icd10_code"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{file}: not a DisTEMIST linking file (missing columns {sorted(missing)})")
            for line_no, row in enumerate(reader, 2):
                where = f"{file}:{line_no}"
                value = (row["icd10_code"] or "").strip()
                codes: Tuple[str, ...] = ()
                if value and value != "None":
                    try:
                        codes = tuple(normalize_code(c) for c in value.split("+"))
                    except ValueError as err:
                        raise ValueError(f"{where}: {err}") from None
                elif skip_uncoded:
                    continue
                offsets = _parse_offsets(f"{row['off0']} {row['off1']}", where)
                mentions.append(Mention(row["filename"], row["span"], codes, offsets, row.get("label") or "ENFERMEDAD"))
    return mentions


def read_mentions(path: Union[str, Path], fmt: str = "auto", labels: Sequence[str] = ("DIAGNOSTICO",)) -> List[Mention]:
    """CodiEsp (`*X.tsv` or a folder holding one) or DisTEMIST (`fmt` "codiesp" / "distemist" / "auto")."""
    path = Path(path)
    if fmt == "auto":
        fmt = "distemist" if "distemist" in str(path).lower() else "codiesp"
    if fmt == "codiesp":
        if path.is_dir():
            found = sorted(path.glob("*X.tsv"))
            if not found:
                raise FileNotFoundError(f"no *X.tsv in {str(path)!r}")
            path = found[0]
        return read_codiesp_x(path, labels)
    if fmt == "distemist":
        return read_distemist_linking(path)
    raise ValueError(f"unknown mention format {fmt!r}; expected codiesp, distemist or auto")


def mention_pairs(mentions: Iterable[Mention]) -> List[Tuple[str, str]]:
    """(surface form, code) for every mention and each of its non-range codes: training pairs and synonyms."""
    return [(m.text, code) for m in mentions for code in m.codes if "-" not in code]
