"""Per-token facts read as arrays, without building a Python `Token` per token.

Iterating a Doc (or reading `doc.text`, which joins every token's text) creates one Token object per
token. On short sentence pairs that cost more than link extraction: 110,000 Tokens, 8 % of aligning 100
en-fr gold pairs (bench/RESULTS.md). These helpers read spaCy's token arrays instead and look each
distinct string up once."""
from typing import Callable, List

import numpy
from spacy.attrs import IDX, IS_SPACE, ORTH
from spacy.tokens import Doc


def char_length(doc: Doc) -> int:
    """len(doc.text), from the last token's offset."""
    if not len(doc):
        return 0
    last = doc[len(doc) - 1]
    return last.idx + len(last.text_with_ws)


def is_space_token(doc: Doc) -> numpy.ndarray:
    """One bool per token: is it whitespace (`token.is_space`)."""
    return doc.to_array(IS_SPACE).astype(bool) if len(doc) else numpy.zeros(0, dtype=bool)


def has_text(doc: Doc) -> bool:
    """Whether some token is not whitespace."""
    return bool(len(doc)) and not bool(is_space_token(doc).all())


def token_texts(doc: Doc) -> List[str]:
    """[t.text for t in doc], read from the string store."""
    strings = doc.vocab.strings
    return [strings[int(h)] for h in doc.to_array(ORTH)] if len(doc) else []


def token_flags(doc: Doc, predicate: Callable[[str], bool]) -> numpy.ndarray:
    """predicate(token.text) per token, computed once per distinct string of the Doc. `predicate` should be
    cached by the caller (e.g. functools.lru_cache) when it is called for many Docs."""
    if not len(doc):
        return numpy.zeros(0, dtype=bool)
    unique, inverse = numpy.unique(doc.to_array(ORTH), return_inverse=True)
    strings = doc.vocab.strings
    flags = numpy.fromiter((predicate(strings[int(h)]) for h in unique), dtype=bool, count=len(unique))
    return flags[inverse.reshape(-1)]


def token_offsets(doc: Doc) -> numpy.ndarray:
    """Character offset of each token (`token.idx`)."""
    return doc.to_array(IDX).astype(numpy.int64) if len(doc) else numpy.zeros(0, dtype=numpy.int64)

