"""The code catalogue: code -> descriptions (title first, then inclusion terms and synonyms).

Loaders read ICD-10-CM from the `simple-icd-10-cm` package, WHO ICD-10 in Spanish from the `cie`
package (read from its zip: the package's own loader writes into site-packages), a user's JSONL or TSV
file, and synonyms harvested from training mentions. Catalogues merge, so ICD-10-CM's English titles,
CIE-10's Spanish titles and CodiEsp's Spanish surface forms can share one code."""
import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import srsly

from ..extras import require
from .codes import category_of, chapter_of, normalize_code


@dataclass
class CodeEntry:
    code: str
    descriptions: List[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.descriptions[0] if self.descriptions else ""

    @property
    def category(self) -> str:
        return category_of(self.code)

    @property
    def chapter(self) -> Optional[str]:
        return chapter_of(self.code)


class Catalog:
    """An ordered mapping of normalised codes to their descriptions (case-insensitively deduplicated)."""

    def __init__(self, entries: Optional[Iterable[Tuple[str, Iterable[str]]]] = None) -> None:
        self._entries: Dict[str, CodeEntry] = {}
        self._seen: Dict[str, set] = {}
        for code, descriptions in entries or ():
            self.add(code, descriptions)

    def add(self, code: str, descriptions: Union[str, Iterable[str]]) -> str:
        """Add `descriptions` to `code` (created if new); returns the normalised code."""
        norm = normalize_code(code)
        if isinstance(descriptions, str):
            descriptions = [descriptions]
        entry = self._entries.get(norm)
        if entry is None:
            entry = self._entries[norm] = CodeEntry(norm)
            self._seen[norm] = set()
        seen = self._seen[norm]
        for text in descriptions:
            text = " ".join(str(text).split())
            if text and text.lower() not in seen:
                seen.add(text.lower())
                entry.descriptions.append(text)
        return norm

    def merge(self, other: "Catalog", only_known: bool = False) -> "Catalog":
        """Add every description of `other` (only for codes already here if `only_known`)."""
        for entry in other:
            if not only_known or entry.code in self:
                self.add(entry.code, entry.descriptions)
        return self

    def add_synonyms(self, pairs: Iterable[Tuple[str, str]], add_unknown: bool = False) -> Dict[str, int]:
        """Add (surface form, code) pairs, e.g. training mentions. Codes not in the catalogue are skipped
        unless `add_unknown`; the returned counts say how many were added, skipped or created."""
        counts = {"added": 0, "skipped_unknown_code": 0, "new_codes": 0}
        for text, code in pairs:
            norm = normalize_code(code)
            if norm not in self._entries:
                if not add_unknown:
                    counts["skipped_unknown_code"] += 1
                    continue
                counts["new_codes"] += 1
            before = len(self._entries.get(norm, CodeEntry(norm)).descriptions)
            self.add(norm, [text])
            counts["added"] += len(self._entries[norm].descriptions) - before
        return counts

    def __contains__(self, code: str) -> bool:
        try:
            return normalize_code(code) in self._entries
        except ValueError:
            return False

    def __getitem__(self, code: str) -> CodeEntry:
        norm = normalize_code(code)
        if norm not in self._entries:
            raise KeyError(f"code {code!r} (normalised {norm!r}) is not in the catalogue ({len(self)} codes)")
        return self._entries[norm]

    def __iter__(self) -> Iterator[CodeEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def codes(self) -> List[str]:
        return list(self._entries)

    def flat_descriptions(self) -> Tuple[List[str], List[str]]:
        """(texts, codes): one row per description, the unit that the dense and BM25 indexes hold."""
        texts: List[str] = []
        codes: List[str] = []
        for entry in self._entries.values():
            for text in entry.descriptions:
                texts.append(text)
                codes.append(entry.code)
        return texts, codes

    def siblings(self, code: str) -> List[str]:
        """Other codes of the same 3-character category (hard negatives for the reranker)."""
        norm = normalize_code(code)
        if not hasattr(self, "_by_category") or self._by_category_size != len(self):
            self._by_category: Dict[str, List[str]] = {}
            for other in self._entries:
                self._by_category.setdefault(category_of(other), []).append(other)
            self._by_category_size = len(self)
        return [c for c in self._by_category.get(category_of(norm), []) if c != norm]

    # --- serialisation -------------------------------------------------------------------------------
    def to_jsonl(self, path: Union[str, Path]) -> None:
        srsly.write_jsonl(path, ({"code": e.code, "descriptions": e.descriptions} for e in self))

    def to_bytes(self) -> bytes:
        return srsly.msgpack_dumps([[e.code, e.descriptions] for e in self])

    @classmethod
    def from_bytes(cls, data: bytes) -> "Catalog":
        return cls((code, descriptions) for code, descriptions in srsly.msgpack_loads(data))

    @classmethod
    def _from_lines(cls, path: Union[str, Path],
                    parse: Callable[[str, int], Optional[Tuple[str, List[str]]]]) -> "Catalog":
        """Read a catalogue file line by line; `parse` gives (code, descriptions), None to skip a line, or
        raises ValueError, which is re-raised with the file and line number."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"catalogue file {str(path)!r} does not exist")
        catalog = cls()
        with path.open(encoding="utf8") as handle:
            for line_no, line in enumerate(handle, 1):
                try:
                    row = parse(line.rstrip("\n\r"), line_no)
                    if row is not None:
                        catalog.add(*row)
                except ValueError as err:
                    raise ValueError(f"{path}:{line_no}: {err}") from None
        if not len(catalog):
            raise ValueError(f"catalogue file {path} holds no codes")
        return catalog

    @classmethod
    def from_jsonl(cls, path: Union[str, Path]) -> "Catalog":
        """Rows `{"code": ..., "descriptions": [...]}` (or `"description": "..."`); a code may repeat."""
        def parse(line: str, line_no: int) -> Optional[Tuple[str, List[str]]]:
            if not line.strip():
                return None
            try:
                row = srsly.json_loads(line)
            except ValueError as err:
                raise ValueError(f"not valid JSON ({err})") from None
            if not isinstance(row, dict) or not row.get("code"):
                raise ValueError("expected an object with a non-empty 'code'")
            descriptions = row.get("descriptions", row.get("description"))
            if isinstance(descriptions, str):
                descriptions = [descriptions]
            if not descriptions or not all(isinstance(d, str) for d in descriptions):
                raise ValueError(f"code {row['code']!r} has no 'descriptions' strings")
            return row["code"], descriptions

        return cls._from_lines(path, parse)

    @classmethod
    def from_tsv(cls, path: Union[str, Path]) -> "Catalog":
        """Rows `code<TAB>description`, one description per row; a header row starting with `code` is skipped."""
        def parse(line: str, line_no: int) -> Optional[Tuple[str, List[str]]]:
            if not line.strip() or (line_no == 1 and line.lower().startswith("code\t")):
                return None
            parts = line.split("\t")
            if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                raise ValueError(f"expected 'code<TAB>description', got {line[:80]!r}")
            return parts[0], parts[1:2]

        return cls._from_lines(path, parse)

    @classmethod
    def from_file(cls, path: Union[str, Path]) -> "Catalog":
        path = Path(path)
        if path.suffix in (".tsv", ".txt"):
            return cls.from_tsv(path)
        return cls.from_jsonl(path)


def load_icd10cm(inclusion_terms: bool = True) -> Catalog:
    """ICD-10-CM (English, from `simple-icd-10-cm`): every category and subcategory, title first, then
    its inclusion terms. Chapters and blocks are not codes and are left out."""
    cm = require("simple_icd_10_cm")
    catalog = Catalog()
    for code in cm.get_all_codes(with_dots=True):
        if cm.is_chapter_or_block(code):
            continue
        descriptions = [cm.get_description(code)]
        if inclusion_terms:
            descriptions += cm.get_inclusion_term(code)
        catalog.add(code, descriptions)
    return catalog


def load_cie() -> Catalog:
    """WHO ICD-10 in Spanish (CIE-10) from the `cie` package's bundled CSV; chapter and block ranges skipped."""
    cie = require("cie")
    base = Path(next(iter(cie.__path__)))
    with zipfile.ZipFile(base / "data" / "cie-10.zip") as archive:
        text = archive.read("cie-10.csv").decode("utf8")
    catalog = Catalog()
    for row in csv.DictReader(io.StringIO(text)):
        code = row["code"].strip()
        if code and "-" not in code and row["description"].strip():
            catalog.add(code, [row["description"]])
    return catalog


BUILTIN_CATALOGS = {"icd10cm": load_icd10cm, "cie10": load_cie}


def load_catalog(spec: Union[str, Path]) -> Catalog:
    """A built-in name (`icd10cm`, `cie10`), several joined by `+` (merged in order), or a file path."""
    spec = str(spec)
    if all(part in BUILTIN_CATALOGS for part in spec.split("+")):
        catalog = Catalog()
        for part in spec.split("+"):
            catalog.merge(BUILTIN_CATALOGS[part]())
        return catalog
    return Catalog.from_file(spec)
