"""Encoder windows: by sentence (`sentence_spans.v1`, the aligner's default) or strided
(`wordpiece_strided_spans.v1`), and in both cases cut by wordpiece count, so that no window is truncated.

Sentences: the transformer encodes each sentence on its own (long ones in strided windows), so a word's
vector depends on its sentence only, as in sentence-level alignment. With spacy-transformers' strided
windows, a token near a sentence end attends to the next sentence, and the same sentence gets different
vectors inside a document than alone. On the awesome-align en-fr gold sentences joined into 2,200-word
documents, that context alone costs 2.5 AER points even with the sentence band known (bench/long_documents.py).

Wordpieces: a window cut by token count alone whose tokens need more wordpieces than the encoder accepts
(HGVS variants such as `c.1234_5678delACGTAC`, identifiers, a base64 blob) is truncated from its end by
spacy-transformers, and every token past the cut silently gets a zero vector and no links. Both getters
end each window before its wordpieces would exceed the encoder's limit, once bound to the encoder's
tokenizer (`spacy-clinalign.AlignerModel.v1` and `spacy-clinalign.TransformerModel.v1` bind it). A single
token with more wordpieces than the limit gets a window of its own, which the encoder truncates: its vector
comes from its first `model_max_length - 1` wordpieces (the closing special token is dropped).
"""
import copy
from functools import partial
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc, Span
from spacy_transformers.span_getters import get_strided_spans
from spacy_transformers.util import registry

from ..alignment.document_prior import segments_of
from ..token_arrays import token_texts


class WordpieceStridedSpans:
    """Span getter: strided windows of at most `window` tokens and at most `max_wordpieces` wordpieces,
    over the whole Doc or (`sentences=True`) inside each sentence.

    The wordpieces of each token are counted with the encoder's own tokenizer, which `bind` attaches (the
    aligner model does it); tokens are tokenized one at a time, which counts at least as many pieces as
    in context for WordPiece and SentencePiece, and `margin` pieces per window are kept free for the rest.
    Unbound, a getter with `require_tokenizer=False` cuts by token count only (spacy-transformers' way).
    """

    def __init__(self, window: int, stride: int, max_wordpieces: Optional[int] = None, margin: int = 2,
                 sentences: bool = False, require_tokenizer: bool = True, name: str = "wordpiece_strided_spans"):
        check_strided_windows(window, stride, name)
        if max_wordpieces is not None and (not isinstance(max_wordpieces, int) or max_wordpieces < 1):
            raise ValueError(f"wordpiece_strided_spans: max_wordpieces must be >= 1 or null, got {max_wordpieces!r}")
        if not isinstance(margin, int) or margin < 0:
            raise ValueError(f"wordpiece_strided_spans: margin must be >= 0, got {margin!r}")
        self.window = window
        self.stride = stride
        self.max_wordpieces = max_wordpieces
        self.margin = margin
        self.sentences = sentences
        self.require_tokenizer = require_tokenizer
        self.name = name
        self._owner: Any = None  # the TransformerModel whose tokenizer counts the wordpieces

    def bind(self, transformer: Any) -> "WordpieceStridedSpans":
        """A copy that reads the tokenizer of `transformer` (a spacy-transformers TransformerModel) when
        called; the tokenizer only exists once the model is initialized or loaded."""
        bound = copy.copy(self)
        bound._owner = transformer
        return bound

    def __deepcopy__(self, memo: dict) -> "WordpieceStridedSpans":
        # Model.copy() deep-copies attrs one node at a time: never copy the whole transformer into the getter.
        new = copy.copy(self)
        new._owner = memo.get(id(self._owner), self._owner)
        return new

    def _tokenizer(self):
        tokenizer = getattr(self._owner, "tokenizer", None) if self._owner is not None else None
        if tokenizer is None and self.require_tokenizer:
            raise ValueError(
                f"{self.name} needs the encoder's tokenizer: use it as the get_spans of "
                "spacy-clinalign.AlignerModel.v1 or spacy-clinalign.TransformerModel.v1 (which bind it), after "
                "the pipeline is initialized or loaded"
            )
        return tokenizer

    def budget(self, tokenizer) -> int:
        """Wordpieces a window may hold: the tokenizer's limit less its special tokens and the margin."""
        limit = self.max_wordpieces
        if limit is None:
            limit = int(tokenizer.model_max_length) - tokenizer.num_special_tokens_to_add(pair=False)
        return max(1, limit - self.margin)

    def wordpiece_counts(self, doc: Doc, tokenizer) -> numpy.ndarray:
        """Wordpieces of each token of `doc`, tokenized alone (whitespace tokens have none)."""
        texts = token_texts(doc)
        if not texts:
            return numpy.zeros(0, dtype="int64")
        ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return numpy.array([len(x) for x in ids], dtype="int64")

    def spans_of(self, doc: Doc, counts: Optional[numpy.ndarray], budget: Optional[int],
                 begin: int = 0, end_at: Optional[int] = None) -> List[Span]:
        """Windows over tokens [begin, end_at): they start every `stride` tokens (proportionally fewer when a
        window was cut by wordpieces, so windows still overlap and no token is skipped) and end at `window`
        tokens or at the wordpiece budget (none without counts)."""
        n = len(doc) if end_at is None else end_at
        spans: List[Span] = []
        start = begin
        if counts is None:
            counts, budget = numpy.zeros(len(doc), dtype="int64"), 1
        cumulative = numpy.concatenate([[0], numpy.cumsum(counts)])
        while start < n:
            limit = min(n, start + self.window)
            # tokens start..end-1 fit when cumulative[end] - cumulative[start] <= budget; at least one token
            end = int(numpy.searchsorted(cumulative[start + 1 : limit + 1] - cumulative[start], budget, side="right"))
            end = start + max(1, end)
            spans.append(doc[start:end])
            if end >= n:
                break
            step = self.stride if end - start == self.window else (end - start) * self.stride // self.window
            start += max(1, min(step, end - start))
        return spans

    def __call__(self, docs: Iterable[Doc]) -> List[List[Span]]:
        tokenizer = self._tokenizer()
        budget = self.budget(tokenizer) if tokenizer is not None else None
        result: List[List[Span]] = []
        for doc in docs:
            counts = self.wordpiece_counts(doc, tokenizer) if tokenizer is not None else None
            ranges: Sequence[Tuple[int, int]] = segments_of(doc) if self.sentences else [(0, len(doc))]
            result.append([span for begin, end in ranges for span in self.spans_of(doc, counts, budget, begin, end)])
        return result


def get_sentence_spans(docs: Iterable[Doc], window: int, stride: int) -> List[List[Span]]:
    """Sentence windows cut by token count only (no tokenizer)."""
    return WordpieceStridedSpans(window, stride, sentences=True, require_tokenizer=False, name="sentence_spans")(docs)


@registry.span_getters("spacy-clinalign.sentence_spans.v1")
def configure_sentence_spans(window: int = 128, stride: int = 96, max_wordpieces: Optional[int] = None,
                             margin: int = 2) -> WordpieceStridedSpans:
    """One window per sentence (the Doc's own sentence boundaries, else sentence punctuation); sentences
    longer than `window` tokens, or than the encoder's wordpiece limit, are cut into strided windows, so any
    length still works. Cut by token count only when no tokenizer is bound (outside our architectures)."""
    return WordpieceStridedSpans(window, stride, max_wordpieces, margin, sentences=True, require_tokenizer=False,
                                 name="sentence_spans")


@registry.span_getters("spacy-clinalign.wordpiece_strided_spans.v1")
def configure_wordpiece_strided_spans(
    window: int = 128, stride: int = 96, max_wordpieces: Optional[int] = None, margin: int = 2
) -> WordpieceStridedSpans:
    """Strided windows of `window` tokens every `stride` tokens, each cut so that its wordpieces stay within
    `max_wordpieces` (default: the tokenizer's model_max_length less its special tokens) minus `margin`."""
    return WordpieceStridedSpans(window, stride, max_wordpieces, margin)


def check_strided_windows(window: Any, stride: Any, where: str) -> None:
    """window >= 1 and 1 <= stride <= window, or tokens would get no window (and so a zero vector)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"{where}: window must be an integer >= 1 (tokens), got {window!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= window:
        raise ValueError(
            f"{where}: stride must be an integer with 1 <= stride <= window ({window}), got {stride!r}; "
            "a stride above the window would skip tokens"
        )


def bind_span_getter(transformer: Any) -> Any:
    """Check a TransformerModel's window getter and give a wordpiece window getter access to the model's
    tokenizer. spacy-transformers' strided getter is checked too: window 0 gives every token a zero vector."""
    get_spans = transformer.attrs.get("get_spans")
    if isinstance(get_spans, partial) and get_spans.func is get_strided_spans:
        check_strided_windows(get_spans.keywords.get("window"), get_spans.keywords.get("stride"),
                              "spacy-transformers.strided_spans.v1")
    if isinstance(get_spans, WordpieceStridedSpans):
        transformer.attrs["get_spans"] = get_spans.bind(transformer)
    return transformer
