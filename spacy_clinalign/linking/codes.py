"""ICD-10 code normalisation and the hierarchy levels we score at (exact code, 3-character category,
chapter). `n28.1`, `N28.1` and `N281` are one code; ranges such as `I10-I15.9` (DisTEMIST's
cross-mappings use them) are kept as ranges and match any code whose category falls inside."""
import re
from typing import Optional, Tuple

LEVELS = ("exact", "category", "chapter")

_DIAGNOSIS = re.compile(r"^[A-Z][0-9][0-9A-Z]")

# ICD-10-CM chapters by category range (first and last 3-character category, inclusive).
# WHO ICD-10 chapters differ only at a few edges (e.g. C00-D48, E00-E90), which fall in the same chapter.
ICD10_CHAPTERS: Tuple[Tuple[str, str, str], ...] = (
    ("1", "A00", "B99"), ("2", "C00", "D49"), ("3", "D50", "D89"), ("4", "E00", "E89"),
    ("5", "F01", "F99"), ("6", "G00", "G99"), ("7", "H00", "H59"), ("8", "H60", "H95"),
    ("9", "I00", "I99"), ("10", "J00", "J99"), ("11", "K00", "K95"), ("12", "L00", "L99"),
    ("13", "M00", "M99"), ("14", "N00", "N99"), ("15", "O00", "O9A"), ("16", "P00", "P96"),
    ("17", "Q00", "Q99"), ("18", "R00", "R99"), ("19", "S00", "T88"), ("20", "V00", "Y99"),
    ("21", "Z00", "Z99"), ("22", "U00", "U85"),
)


def normalize_code(code: str) -> str:
    """Canonical form: upper case, no spaces, a dot after the category for diagnosis codes (`N28.1`).
    Codes that are not ICD-10 diagnoses (ICD-10-PCS procedures, ranges) keep their characters, upper-cased.
    A misplaced or second dot (`E11.6.5`, `E1.16`) is a ValueError, never a silently different code."""
    if not isinstance(code, str) or not code.strip():
        raise ValueError(f"empty or non-string ICD code: {code!r}")
    text = code.strip().upper().replace(" ", "")
    if "-" in text:
        start, _, end = text.partition("-")
        return f"{normalize_code(start)}-{normalize_code(end)}"
    if "." in text and (text.count(".") > 1 or text.index(".") != 3):
        # A dot is only ever the one after the 3-character category (`E11.65`): dropping the others would
        # turn `E11.6.5` into the real, different code `E11.65`.
        raise ValueError(f"invalid ICD-10 code {code!r}: a dot may only follow the 3-character category (e.g. E11.65)")
    bare = text.replace(".", "")
    if _DIAGNOSIS.match(bare):
        return bare if len(bare) <= 3 else f"{bare[:3]}.{bare[3:]}"
    return bare


def is_range(code: str) -> bool:
    return "-" in code


def category_of(code: str) -> str:
    """The 3-character category of a normalised code (a range keeps its category range)."""
    if is_range(code):
        start, _, end = code.partition("-")
        return f"{start[:3]}-{end[:3]}"
    return code[:3]


def chapter_of(code: str) -> Optional[str]:
    """ICD-10-CM chapter number of a normalised code, None for codes outside every chapter (procedures)."""
    category = code[:3]
    for chapter, first, last in ICD10_CHAPTERS:
        if first <= category <= last:
            return chapter
    return None


def at_level(code: str, level: str) -> Optional[str]:
    """The key two codes must share to match at `level`."""
    if level == "exact":
        return code
    if level == "category":
        return category_of(code)
    if level == "chapter":
        return chapter_of(code)
    raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")


def matches(predicted: str, gold: str, level: str) -> bool:
    """Whether a predicted code counts as `gold` at `level`. A gold range never matches exactly; it
    matches at category level when the predicted category lies in the range."""
    if is_range(gold):
        if level == "exact":
            return False
        if level == "category":
            first, _, last = category_of(gold).partition("-")
            return first <= predicted[:3] <= last
        return chapter_of(predicted) is not None and chapter_of(predicted) == chapter_of(gold)
    key = at_level(gold, level)
    return key is not None and at_level(predicted, level) == key
