"""Span projection through an alignment matrix (ClinicalAligner26AM, section 3 and Figure 2), on arrays.

A source span becomes a membership vector (1 on its tokens, 0 elsewhere); the row-stochastic alignment
(each target token's distribution over source tokens) times that vector gives each target token the
share of its alignment mass that falls inside the span. Decoding picks the longest run of target tokens
that pass `threshold` or are backed by an NER prediction, bridging at most `max_gap` other tokens.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy

from .matrix import softmax


def row_stochastic(logits: numpy.ndarray, temperature: float = 1.0) -> numpy.ndarray:
    """Each target row as a distribution over source tokens (softmax of logits / temperature)."""
    if logits.size == 0:
        return numpy.zeros(logits.shape, dtype="float32")
    return softmax(logits / temperature, axis=1).astype("float32")


def project_membership(alignment: numpy.ndarray, start: int, end: int) -> numpy.ndarray:
    """Target-token scores for the source span [start, end): alignment (n_target, n_source) @ membership."""
    membership = numpy.zeros(alignment.shape[1], dtype="float32")
    membership[start:end] = 1.0
    return alignment @ membership


@dataclass
class DecodedSpan:
    start: int
    end: int  # exclusive
    score: float  # mean projection score over the span's tokens


def decode_span(
    scores: numpy.ndarray,
    threshold: float,
    max_gap: int = 1,
    support: Optional[numpy.ndarray] = None,
    skip: Optional[numpy.ndarray] = None,
    support_mode: str = "bridge",
) -> Optional[DecodedSpan]:
    """The longest run of target tokens that each pass `threshold` or are in `support` (NER says
    "inside a span"), where runs of up to `max_gap` other tokens between two such tokens are bridged.

    A run must hold at least one token that passes the threshold itself: NER support extends and joins
    projected evidence, it never creates a span alone. `skip` marks tokens (whitespace) that can neither
    start nor end a span. Ties in length go to the higher mean score. Returns None when no token passes.
    support_mode "bridge" (the paper's use: NER fills gaps between salient tokens) trims each run to its
    first and last passing token, so support joins evidence but never moves a boundary; "extend" lets
    supported tokens at the edges widen the span too.
    """
    if support_mode not in ("bridge", "extend"):
        raise ValueError(f"decode_span: support_mode must be 'bridge' or 'extend', got {support_mode!r}")
    n = len(scores)
    passing = scores >= threshold
    if skip is not None:
        passing = passing & ~skip
    if not passing.any():
        return None
    ok = passing.copy()
    if support is not None:
        ok |= support & ~(skip if skip is not None else numpy.zeros(n, dtype=bool))
    best: Optional[Tuple[int, float, int, int]] = None
    i = 0
    while i < n:
        if not ok[i]:
            i += 1
            continue
        start = end = i  # end: last ok token of the run
        j = i + 1
        while j < n:
            if ok[j]:
                end = j
                j += 1
                continue
            gap_end = j
            while gap_end < n and not ok[gap_end] and gap_end - j < max_gap:
                gap_end += 1
            if gap_end < n and ok[gap_end] and gap_end - j <= max_gap:
                j = gap_end
                continue
            break
        if passing[start:end + 1].any():
            if support_mode == "bridge":
                inside = numpy.flatnonzero(passing[start:end + 1])
                start, end = start + int(inside[0]), start + int(inside[-1])
            length = end + 1 - start
            mean = float(scores[start:end + 1].mean())
            if best is None or (length, mean) > (best[0], best[1]):
                best = (length, mean, start, end + 1)
        i = end + 1
    if best is None:
        return None
    return DecodedSpan(best[2], best[3], best[1])
