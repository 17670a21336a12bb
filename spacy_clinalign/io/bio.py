"""BIO tag sequences <-> token spans."""
from typing import List, Sequence, Tuple

TokenSpan = Tuple[int, int, str]  # start token, end token (exclusive), label


def bio_to_spans(tags: Sequence[str]) -> List[TokenSpan]:
    """Spans of a BIO (or IOB2) sequence. An I- tag that does not continue a span of the same label
    starts a new span (the usual repair), so no annotated token is lost."""
    spans: List[TokenSpan] = []
    start, label = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, tag_label = tag.partition("-")
        if prefix not in ("B", "I", "O", "S", "E") or (prefix != "O" and not tag_label):
            raise ValueError(f"invalid BIO tag {tag!r} at position {i}")
        continues = prefix in ("I", "E") and label == tag_label and start is not None
        if start is not None and not continues:
            spans.append((start, i, label))
            start, label = None, None
        if prefix in ("B", "S") or (prefix in ("I", "E") and not continues):
            start, label = i, tag_label
    return spans


def spans_to_bio(n_tokens: int, spans: Sequence[TokenSpan]) -> List[str]:
    tags = ["O"] * n_tokens
    for start, end, label in spans:
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags
