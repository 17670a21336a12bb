"""Constrained BIO decoding: the most probable tag sequence in which I never follows O or starts a Doc."""
from typing import List, Tuple

import numpy

O, B, I = 0, 1, 2
# allowed[prev, cur]: everything except O -> I
_ALLOWED = numpy.array([[True, True, False], [True, True, True], [True, True, True]])


def viterbi_bio(probs: numpy.ndarray) -> numpy.ndarray:
    """Best valid tag sequence (0 = O, 1 = B, 2 = I) for (n_tokens, 3) per-token probabilities."""
    n = len(probs)
    if n == 0:
        return numpy.zeros(0, dtype="int64")
    logp = numpy.log(numpy.clip(probs, 1e-12, 1.0))
    trans = numpy.where(_ALLOWED, 0.0, -numpy.inf)
    score = logp[0] + numpy.array([0.0, 0.0, -numpy.inf])
    back = numpy.zeros((n, 3), dtype="int64")
    for t in range(1, n):
        cand = score[:, None] + trans  # (prev, cur)
        back[t] = cand.argmax(axis=0)
        score = cand.max(axis=0) + logp[t]
    tags = numpy.zeros(n, dtype="int64")
    tags[-1] = int(score.argmax())
    for t in range(n - 1, 0, -1):
        tags[t - 1] = back[t, tags[t]]
    return tags


def tags_to_spans(tags: numpy.ndarray) -> List[Tuple[int, int]]:
    """Token spans [start, end) of a valid BIO sequence."""
    spans, start = [], None
    for i, tag in enumerate(list(tags) + [O]):
        if start is not None and tag != I:
            spans.append((start, i))
            start = None
        if tag == B:
            start = i
    return spans
