"""Character-offset annotations: brat standoff (`.txt` + `.ann`) and the SPACCC / MedProcNER TSV
(filename, mark, label, off0, off1, span). Entities become spans on Docs; projected spans are written
back as brat. Only entity (T) lines are read: relations, events and notes are not projected."""
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from spacy.tokens import Doc, Span

from .atomic import atomic_write_text
from .text_lines import read_lines, read_text

SPACCC_LABELS = {"ENFERMEDAD": "DISEASE", "PROCEDIMIENTO": "PROCEDURE", "SINTOMA": "SYMPTOM"}


@dataclass
class Entity:
    id: str
    label: str
    fragments: List[Tuple[int, int]]  # character offsets, end exclusive; several for discontinuous entities
    text: str


def read_text_exact(path: Path) -> str:
    """A document's text exactly as stored (CRLF kept), so character offsets match the file's bytes;
    invalid UTF-8 names the file, line and byte."""
    return read_text(path, "text file")


def read_ann(path: Path) -> List[Entity]:
    """Entity lines of a brat `.ann` file: `T1<TAB>LABEL start end[;start end]<TAB>text`."""
    entities = []
    for n, line in enumerate(read_text_exact(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.startswith("T"):
            continue
        parts = line.split("\t")
        try:
            label, _, offsets = parts[1].partition(" ")
            fragments = [(int(a), int(b)) for a, b in (frag.split() for frag in offsets.split(";"))]
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{n}: malformed brat entity line {line!r}") from None
        entities.append(Entity(parts[0], label, fragments, parts[2] if len(parts) > 2 else ""))
    return entities


def read_spaccc_tsv(paths: Iterable[Path], map_labels: bool = True) -> Dict[str, List[Entity]]:
    """Mentions per document name from SPACCC-style TSV files: a header row, then one mention a row with
    columns filename, id, label, start, end, text (read by position: DisTEMIST, MedProcNER and SympTEMIST
    name them differently)."""
    result: Dict[str, List[Entity]] = {}
    for path in paths:
        # Unquoted fields hold no line breaks, so the file is split into lines first (at \\n / \\r\\n only).
        reader = csv.reader(read_lines(path, "mention TSV"), delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or len(header) < 5 or header[3].isdigit():
            raise ValueError(f"{path}:1: expected a header row (filename, id, label, start, end, text); got {header}")
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                name, mark, label, start, end = row[0], row[1], row[2], int(row[3]), int(row[4])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{n}: malformed row {row!r}") from None
            label = SPACCC_LABELS.get(label, label) if map_labels else label
            text = _unquote(row[5]) if len(row) > 5 else ""
            result.setdefault(name, []).append(Entity(mark, label, [(start, end)], text))
    return result


def read_codiesp_x(paths: Iterable[Path]) -> Dict[str, List[Entity]]:
    """Mentions per document name from CodiEsp-X TSV files (no header): filename, DIAGNOSTICO or
    PROCEDIMIENTO, code, text, `start end[;start end]`; the label is kept, the code is not an entity field."""
    result: Dict[str, List[Entity]] = {}
    for path in paths:
        with Path(path).open(encoding="utf8", newline="") as f:
            for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if not row:
                    continue
                try:
                    name, label, _code, text, offsets = row
                    fragments = [(int(a), int(b)) for a, b in (frag.split() for frag in offsets.split(";"))]
                except ValueError:
                    raise ValueError(f"{path}:{n}: malformed CodiEsp-X row {row!r} (expected filename, label, code, "
                                     f"text, 'start end[;start end]')") from None
                mentions = result.setdefault(name, [])
                mentions.append(Entity(f"T{len(mentions) + 1}", label, fragments, text))
    return result


def _unquote(field: str) -> str:
    """Undo CSV quoting of a text field (outer quotes removed, doubled quotes halved), which these TSVs
    use only for texts holding quotes; fields are read unquoted so that a stray quote cannot swallow the
    following lines."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def entities_to_spans(doc: Doc, entities: Sequence[Entity], where: str) -> List[Span]:
    """Spans for the entities (one per fragment), expanded to whole tokens. Offsets outside the text, or
    text that does not match the file's, are errors naming the document: annotations are never dropped."""
    spans = []
    for ent in entities:
        for start, end in ent.fragments:
            if not 0 <= start < end <= len(doc.text):
                raise ValueError(f"{where}: entity {ent.id} offsets {start}-{end} are outside the text ({len(doc.text)} chars)")
            if ent.text and len(ent.fragments) == 1 and doc.text[start:end] != ent.text:
                raise ValueError(f"{where}: entity {ent.id} text {ent.text!r} differs from the document's {doc.text[start:end]!r}")
            span = doc.char_span(start, end, label=ent.label, alignment_mode="expand")
            if span is None:
                raise ValueError(f"{where}: entity {ent.id} ({start}-{end}) covers no token")
            spans.append(span)
    return spans


def format_ann(spans: Iterable[Span]) -> str:
    """Spans as brat entity (T) lines, numbered T1, T2... in the order given."""
    lines = []
    for k, span in enumerate(spans, start=1):
        text = " ".join(span.text.splitlines())
        lines.append(f"T{k}\t{span.label_} {span.start_char} {span.end_char}\t{text}")
    return "".join(line + "\n" for line in lines)


def write_ann(path: Path, spans: Iterable[Span]) -> None:
    """Spans as brat entity (T) lines, written atomically."""
    atomic_write_text(path, format_ann(spans))
