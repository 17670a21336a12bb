"""The pair contract: a target Doc (the translation) carries its source Doc in `Doc._.source`.

A spaCy pipeline runs one Doc in one language at a time; putting the source on the target keeps
everything a user needs (source, alignment, projected spans) reachable from the Doc the pipeline returns.
"""
from typing import Union

from spacy.language import Language
from spacy.tokens import Doc


def register_extensions() -> None:
    """Register the Doc extensions used across the package (idempotent): `source` (the source Doc),
    `alignment` (an Alignment) and `teacher` (the frozen teacher matrix of a training pair)."""
    for name in ("source", "alignment", "teacher"):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)


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
