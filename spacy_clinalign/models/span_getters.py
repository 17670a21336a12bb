"""Windows that respect sentences: the transformer encodes each sentence on its own (long ones in strided
windows), so a word's vector depends on its sentence only, as in sentence-level alignment.

With spacy-transformers' strided windows, a token near a sentence end attends to the next sentence, and
the same sentence gets different vectors inside a document than alone. On the awesome-align en-fr gold
sentences joined into 2,200-word documents, that context alone costs 2.5 AER points even with the
sentence band known (bench/long_documents.py)."""
from typing import Callable, Iterable, List

from spacy.tokens import Doc, Span
from spacy_transformers.util import registry

from ..alignment.document_prior import segments_of


def get_sentence_spans(docs: Iterable[Doc], window: int, stride: int) -> List[List[Span]]:
    spans: List[List[Span]] = []
    for doc in docs:
        spans.append([])
        for start, end in segments_of(doc):
            if end - start <= window:
                spans[-1].append(doc[start:end])
                continue
            at = start
            while True:
                spans[-1].append(doc[at:min(at + window, end)])
                if at + window >= end:
                    break
                at += stride
    return spans


@registry.span_getters("spacy-clinalign.sentence_spans.v1")
def configure_sentence_spans(window: int = 128, stride: int = 96) -> Callable[[List[Doc]], List[List[Span]]]:
    """One window per sentence (the Doc's own sentence boundaries, else sentence punctuation); sentences
    longer than `window` tokens are cut into strided windows, so any length still works."""
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(f"sentence_spans: need window >= 1 and 1 <= stride <= window, got {window} and {stride}")

    def get_spans(docs: Iterable[Doc]) -> List[List[Span]]:
        return get_sentence_spans(docs, window, stride)

    return get_spans
