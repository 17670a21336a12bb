"""Projected spans point at their source spans by position, not by holding Span objects.

A Span is a view of its Doc: msgpack (DocBin, `nlp.pipe(n_process=N)`) cannot pack one, and spaCy refuses
to pickle one (E112). So `span._.source_span` and `doc._.unprojected` keep plain references
`[start, end, label, kb_id, span_id]` into `doc._.source` in `doc.user_data`, and rebuild the Span (equal
to the original) when read. The source Doc travels with the target (see msgpack_hooks), so they survive
DocBin, pickling and worker processes.
"""
from typing import Any, Dict, List, Optional

from spacy.tokens import Doc, Span

SpanRef = List[Any]  # [start, end, label, kb_id, span_id], token offsets in the source Doc


def span_to_ref(span: Span, source: Optional[Doc], what: str) -> SpanRef:
    """The reference of a span of `source`; anything else would be re-pointed at the wrong Doc."""
    if not isinstance(span, Span):
        raise TypeError(f"{what} must be a spaCy Span of the pair's source Doc, got {type(span).__name__}")
    if source is None or span.doc is not source:
        raise ValueError(f"{what} must be a Span of the pair's source Doc (`doc._.source`); set `doc._.source` "
                         "first, and take the span from it")
    return [span.start, span.end, span.label_, span.kb_id_, span.id_]


def ref_to_span(source: Optional[Doc], ref: Optional[SpanRef]) -> Optional[Span]:
    if ref is None or source is None:
        return None
    start, end, label, kb_id, span_id = ref
    return Span(source, start, end, label=label, kb_id=kb_id, span_id=span_id)


def _key(name: str, span: Optional[Span] = None) -> tuple:
    """spaCy's own user_data key for an extension value, so the value travels like any other."""
    return ("._.", name, None if span is None else span.start_char, None if span is None else span.end_char)


class SourceSlot:
    """Holds `doc._.source` in `doc.user_data`. spaCy's `Doc.copy()` deep-copies user_data, and `nlp.update`
    and `nlp.evaluate` copy every example's Doc; a bare Doc in user_data deep-copies by pickling its whole
    Vocab (more than half of an aligner training step). The slot copies its Doc with `Doc.copy()` instead:
    the copy is still a separate Doc, sharing the vocab as any Doc copy does."""

    __slots__ = ("doc",)

    def __init__(self, doc: Doc) -> None:
        self.doc = doc

    def __deepcopy__(self, memo: Dict[int, Any]) -> "SourceSlot":
        return SourceSlot(self.doc.copy())

    def __reduce__(self):
        return (SourceSlot, (self.doc,))


def get_source(doc: Doc) -> Optional[Doc]:
    value = doc.user_data.get(_key("source"))
    return value.doc if isinstance(value, SourceSlot) else value  # a Doc when read back from msgpack


def set_source(doc: Doc, value: Optional[Doc]) -> None:
    if value is None:
        doc.user_data.pop(_key("source"), None)
    elif isinstance(value, Doc):
        doc.user_data[_key("source")] = SourceSlot(value)
    else:
        raise TypeError(f"doc._.source must be a spaCy Doc (the source of the pair), got {type(value).__name__}")


def get_source_span(span: Span) -> Optional[Span]:
    return ref_to_span(span.doc._.source, span.doc.user_data.get(_key("source_span", span)))


def set_source_span(span: Span, value: Optional[Span]) -> None:
    key = _key("source_span", span)
    if value is None:
        span.doc.user_data.pop(key, None)
    else:
        span.doc.user_data[key] = span_to_ref(value, span.doc._.source, "span._.source_span")


def get_unprojected(doc: Doc) -> Optional[List[Dict[str, Any]]]:
    """The source spans span_projector could not place: dicts with `span` (a Span of the source Doc) and
    the entry's other fields. A new list on each read: set the attribute to change it."""
    stored = doc.user_data.get(_key("unprojected"))
    if stored is None:
        return None
    source = doc._.source
    return [{**entry, "span": ref_to_span(source, entry.get("span"))} for entry in stored]


def set_unprojected(doc: Doc, value: Optional[List[Dict[str, Any]]]) -> None:
    key = _key("unprojected")
    if value is None:
        doc.user_data.pop(key, None)
        return
    source = doc._.source
    doc.user_data[key] = [
        {**entry, "span": None if entry.get("span") is None else span_to_ref(entry["span"], source, "doc._.unprojected span")}
        for entry in value
    ]
