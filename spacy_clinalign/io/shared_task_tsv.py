"""The MultiClinAI shared task's span TSV: a header `filename<TAB>label<TAB>start_span<TAB>end_span<TAB>text`,
then one span a row, with character offsets (end exclusive) into the document text as written. We write our
predictions in it so the organisers' own scorer can be run on them, and read gold in it so our scorer can
score their files."""
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from spacy.tokens import Span

from ..scoring.spans import SpanCounts, SpanKey
from .atomic import atomic_open

COLUMNS = ("filename", "label", "start_span", "end_span", "text")


@dataclass(frozen=True)
class TsvSpan:
    filename: str
    label: str
    start: int
    end: int
    text: str

    @property
    def key(self) -> SpanKey:
        return (self.start, self.end, self.label)


def spans_to_rows(filename: str, spans: Iterable[Span]) -> List[TsvSpan]:
    """One row per spaCy span, offsets into `span.doc.text`."""
    return [TsvSpan(filename, s.label_, s.start_char, s.end_char, s.text) for s in spans]


def write_shared_task_tsv(path: Union[str, Path], rows: Iterable[TsvSpan]) -> int:
    """Write rows (header first); returns the number of spans written. Tabs and line breaks inside the
    text column become spaces so a row stays one line (the offsets, not the text, are what is scored)."""
    path = Path(path)
    n = 0
    with atomic_open(path) as f:  # complete or absent
        # plain tab-joined lines, no csv quoting: the organisers' files hold quotes verbatim (`"` in a text)
        f.write("\t".join(COLUMNS) + "\n")
        for row in rows:
            for value, name in ((row.filename, "filename"), (row.label, "label")):
                if not value or any(c in value for c in "\t\r\n"):
                    raise ValueError(f"{path}: cannot write span {row}: its {name} {value!r} is empty or holds a tab/line break")
            if row.end <= row.start:
                raise ValueError(f"{path}: cannot write span {row}: end_span {row.end} <= start_span {row.start}")
            f.write(f"{row.filename}\t{row.label}\t{row.start}\t{row.end}\t{' '.join(row.text.split())}\n")
            n += 1
    return n


def read_shared_task_tsv(path: Union[str, Path], texts: Optional[Mapping[str, str]] = None) -> List[TsvSpan]:
    """Rows of a shared-task TSV. A missing column, a non-integer offset or `end_span <= start_span` is an
    error naming the file and line; with `texts` (filename -> document text), so are an unknown filename and
    offsets past the document's end."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"shared-task TSV not found: {path}")
    rows: List[TsvSpan] = []
    with path.open(encoding="utf8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != list(COLUMNS):
            raise ValueError(f"{path}:1: expected the header {'<TAB>'.join(COLUMNS)}, got {header!r}")
        for n, row in enumerate(reader, start=2):
            if not row or row == [""]:
                continue
            where = f"{path}:{n}"
            if len(row) != len(COLUMNS):
                raise ValueError(f"{where}: expected {len(COLUMNS)} tab-separated columns ({', '.join(COLUMNS)}), "
                                 f"got {len(row)}: {row!r}")
            filename, label, start_s, end_s, text = row
            if not filename or not label:
                raise ValueError(f"{where}: empty filename or label in {row!r}")
            try:
                start, end = int(start_s), int(end_s)
            except ValueError:
                raise ValueError(f"{where}: start_span {start_s!r} / end_span {end_s!r} are not integers") from None
            if start < 0 or end <= start:
                raise ValueError(f"{where}: end_span {end} must be greater than start_span {start} (and start >= 0)")
            if texts is not None:
                if filename not in texts:
                    raise ValueError(f"{where}: unknown document {filename!r}")
                if end > len(texts[filename]):
                    raise ValueError(f"{where}: end_span {end} is past the end of document {filename!r} "
                                     f"({len(texts[filename])} characters)")
            rows.append(TsvSpan(filename, label, start, end, text))
    return rows


def group_by_document(rows: Iterable[TsvSpan]) -> Dict[str, List[SpanKey]]:
    out: Dict[str, List[SpanKey]] = {}
    for row in rows:
        out.setdefault(row.filename, []).append(row.key)
    return out


def score_tsv_rows(predicted: Sequence[TsvSpan], gold: Sequence[TsvSpan],
                   documents: Optional[Iterable[str]] = None, prefix: str = "") -> Dict[str, object]:
    """Strict and official character-overlap scores of predicted rows against gold rows, document by
    document. `documents`: every document scored (default: those named in either file), so a document
    with gold spans but no predictions still counts."""
    pred_docs, gold_docs = group_by_document(predicted), group_by_document(gold)
    names = set(documents) if documents is not None else set(pred_docs) | set(gold_docs)
    unknown = sorted(set(pred_docs) - names)
    if unknown:
        raise ValueError(f"predictions name {len(unknown)} documents outside the scored set, e.g. {unknown[:3]}")
    counts = SpanCounts()
    for name in sorted(names):
        counts.add(pred_docs.get(name, []), gold_docs.get(name, []))
    return counts.scores(prefix)


def texts_by_name(pairs: Iterable[Tuple[str, str]]) -> Dict[str, str]:
    """{filename: text}, refusing a repeated filename (two documents would be scored as one)."""
    out: Dict[str, str] = {}
    for name, text in pairs:
        if name in out:
            raise ValueError(f"two documents are named {name!r}")
        out[name] = text
    return out


def write_doc_spans(path: Union[str, Path], named_docs: Iterable[Tuple[str, Iterable[Span]]]) -> int:
    """Write (filename, spans) per document, e.g. predictions after `nlp.evaluate`; returns the span count."""
    return write_shared_task_tsv(path, (row for name, spans in named_docs for row in spans_to_rows(name, spans)))
