"""The pair contract: a target Doc (the translation) carries its source Doc in `Doc._.source`.

A spaCy pipeline runs one Doc in one language at a time; putting the source on the target keeps
everything a user needs (source, alignment, projected spans) reachable from the Doc the pipeline returns.
"""
from typing import Dict, List, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc, Span

from . import span_refs

# Every custom attribute the package sets, in one place: name -> what it holds.
DOC_EXTENSIONS = {
    "source": "the source Doc of a translation pair",
    "alignment": "the Alignment written by clinical_aligner",
    "teacher": "the frozen teacher matrix of a training pair",
    "unprojected": "source spans span_projector could not place, with the reason",
    "bio_probs": "bio_ner_cnn's per-label (tokens x 3) O/B/I probabilities",
    "icd_links": "icd_linker's candidates per mention, keyed by span_key(span)",
}
SPAN_EXTENSIONS = {
    "source_span": "the source span a projected span came from",
    "score": "the projection score of a projected span",
}


def span_key(span: Span) -> str:
    """A mention's key in `doc._.icd_links`: its characters and label (stable across DocBin and pickling)."""
    return f"{span.start_char}:{span.end_char}:{span.label_}"


def _icd_candidates_of(span: Span) -> Optional[List[Dict]]:
    links = span.doc._.icd_links
    return None if links is None else links.get(span_key(span))


# Attributes that refer to source spans store references, not Spans, so Docs serialize (see span_refs).
_ACCESSORS = {
    "source": {"getter": span_refs.get_source, "setter": span_refs.set_source},
    "unprojected": {"getter": span_refs.get_unprojected, "setter": span_refs.set_unprojected},
    "source_span": {"getter": span_refs.get_source_span, "setter": span_refs.set_source_span},
}


def register_extensions() -> None:
    """Register every Doc and Span extension the package uses (idempotent). `span._.icd_candidates` is a
    getter over a Doc-level dict: a Span's own extension storage is keyed by its kb_id, which linking
    changes, and a dict on the Doc travels with DocBin(store_user_data=True)."""
    for name in DOC_EXTENSIONS:
        if not Doc.has_extension(name):
            Doc.set_extension(name, **_ACCESSORS.get(name, {"default": None}))
    for name in SPAN_EXTENSIONS:
        if not Span.has_extension(name):
            Span.set_extension(name, **_ACCESSORS.get(name, {"default": None}))
    if not Span.has_extension("icd_candidates"):
        Span.set_extension("icd_candidates", getter=_icd_candidates_of)


def spans_of(doc: Doc, key: Optional[str], required: bool = False) -> List[Span]:
    """The spans a component reads or writes: `doc.ents` when `key` is None, else `doc.spans[key]`.
    A missing group is empty, or an error naming the groups the Doc has when `required`."""
    if key is None:
        return list(doc.ents)
    if key not in doc.spans:
        if required:
            raise ValueError(f"the Doc has no span group {key!r} (it has {sorted(doc.spans)}); "
                             "use null to read doc.ents")
        return []
    return list(doc.spans[key])


def make_pair(source: Doc, target: Union[str, Doc], nlp: Language) -> Doc:
    """Return the target Doc with `_.source` set; `target` may be text (tokenized with `nlp.make_doc`)."""
    if not isinstance(source, Doc):
        raise TypeError(f"make_pair: the source must be a spaCy Doc, got {type(source).__name__}")
    if isinstance(target, str):
        target_doc = nlp.make_doc(target)
    elif isinstance(target, Doc):
        target_doc = target
    else:
        raise TypeError(f"make_pair: the target must be a str or a spaCy Doc, got {type(target).__name__}")
    register_extensions()
    target_doc._.source = source
    return target_doc



def pair_from_words(vocab, source_words, target_words) -> Doc:
    """A target Doc carrying its source Doc, from pre-tokenized words (gold alignment files are tokenized)."""
    register_extensions()
    target = Doc(vocab, words=list(target_words))
    target._.source = Doc(vocab, words=list(source_words))
    return target


register_extensions()
