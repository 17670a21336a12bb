"""The frozen teacher matrix the aligner is distilled from (ClinicalAligner26AM, section 2), as array functions.

teacher = Sinkhorn( w_prior * prior + w_sent * sentence_view + w_phrase * phrase_view + w_token * token_view
                    + span_bias ),  with cells beyond the prior's reach given zero mass.
All matrices are (n_target, n_source) numpy float32.
"""
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy

from .matrix import cosine_matrix, sinkhorn

VIEW_NAMES = ("prior", "sentence", "phrase", "token")


def positional_prior(n_target: int, n_source: int, full: float = 50.0, zero: float = 100.0) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Diagonal prior over the document, scaled by both lengths: a cell's distance from the diagonal is
    |i / n_target - j / n_source| times the mean length, in tokens. Weight 1 within `full` tokens, linear
    decay to 0 at `zero`; returns (prior, allowed) where cells at or beyond `zero` are not allowed."""
    if not 0 <= full < zero:
        raise ValueError(f"positional_prior: need 0 <= full < zero, got full={full}, zero={zero}")
    i = (numpy.arange(n_target, dtype="float64")[:, None] + 0.5) / max(n_target, 1)
    j = (numpy.arange(n_source, dtype="float64")[None, :] + 0.5) / max(n_source, 1)
    distance = numpy.abs(i - j) * (n_target + n_source) / 2.0
    prior = numpy.clip((zero - distance) / (zero - full), 0.0, 1.0).astype("float32")
    return prior, distance < zero


def context_concat(vectors: numpy.ndarray, left: int = 2, right: int = 2, weight: float = 0.1) -> numpy.ndarray:
    """Each token's vector concatenated with its `left` and `right` neighbours' scaled by `weight`
    (zeros past the edges): a token stays the centre of its own representation, and short tokens that
    carry little meaning get disambiguated by their context."""
    n, width = vectors.shape
    padded = numpy.zeros((n + left + right, width), dtype=vectors.dtype)
    padded[left:left + n] = vectors
    parts = [vectors]
    for offset in list(range(-left, 0)) + list(range(1, right + 1)):
        parts.append(weight * padded[left + offset:left + offset + n])
    return numpy.concatenate(parts, axis=1)


def window_mean(vectors: numpy.ndarray, radius: int = 1) -> numpy.ndarray:
    """Mean of each token's window [i - radius, i + radius] (clipped at the edges): a short-phrase vector."""
    n = len(vectors)
    if n == 0:
        return vectors
    csum = numpy.concatenate([numpy.zeros((1, vectors.shape[1]), dtype="float64"), numpy.cumsum(vectors, axis=0, dtype="float64")])
    starts = numpy.clip(numpy.arange(n) - radius, 0, n)
    ends = numpy.clip(numpy.arange(n) + radius + 1, 0, n)
    return ((csum[ends] - csum[starts]) / (ends - starts)[:, None]).astype("float32")


def token_view(target: numpy.ndarray, source: numpy.ndarray, left: int = 2, right: int = 2, weight: float = 0.1) -> numpy.ndarray:
    return cosine_matrix(context_concat(target, left, right, weight), context_concat(source, left, right, weight))


def phrase_view(target: numpy.ndarray, source: numpy.ndarray, radius: int = 1) -> numpy.ndarray:
    return cosine_matrix(window_mean(target, radius), window_mean(source, radius))


def sentence_view(
    target: numpy.ndarray, source: numpy.ndarray, target_sent_ids: Sequence[int], source_sent_ids: Sequence[int]
) -> numpy.ndarray:
    """Each cell gets the cosine of the mean-pooled vectors of the two sentences holding its tokens."""
    t_ids, s_ids = numpy.asarray(target_sent_ids), numpy.asarray(source_sent_ids)

    def pooled(vectors, ids):
        n_sents = int(ids.max()) + 1 if len(ids) else 0
        sums = numpy.zeros((n_sents, vectors.shape[1]), dtype="float64")
        numpy.add.at(sums, ids, vectors)
        return (sums / numpy.maximum(numpy.bincount(ids, minlength=n_sents), 1)[:, None]).astype("float32")

    sent_sim = cosine_matrix(pooled(target, t_ids), pooled(source, s_ids))
    return sent_sim[t_ids][:, s_ids]


def span_bias(n_target: int, n_source: int, span_pairs: Iterable[Tuple[Tuple[int, int], Tuple[int, int]]], scale: float) -> numpy.ndarray:
    """+scale on cells whose target and source tokens lie in a manually mapped pair of spans
    ((target_start, target_end), (source_start, source_end)), ends exclusive."""
    bias = numpy.zeros((n_target, n_source), dtype="float32")
    for (ts, te), (ss, se) in span_pairs:
        if not (0 <= ts < te <= n_target and 0 <= ss < se <= n_source):
            raise ValueError(f"span_bias: span pair {(ts, te)} / {(ss, se)} is outside a {n_target} x {n_source} pair")
        bias[ts:te, ss:se] += scale
    return bias


def fuse_views(
    views: Dict[str, numpy.ndarray],
    weights: Dict[str, float],
    allowed: Optional[numpy.ndarray] = None,
    bias: Optional[numpy.ndarray] = None,
    n_iter: int = 100,
    temperature: float = 0.1,
) -> numpy.ndarray:
    """Weighted sum of the views (+ bias), sharpened by Sinkhorn-Knopp into the doubly stochastic target."""
    unknown = set(views) - set(VIEW_NAMES)
    if unknown:
        raise ValueError(f"fuse_views: unknown views {sorted(unknown)}; known: {VIEW_NAMES}")
    shape = next(iter(views.values())).shape
    total = numpy.zeros(shape, dtype="float32")
    for name, matrix in views.items():
        if matrix.shape != shape:
            raise ValueError(f"fuse_views: view {name!r} has shape {matrix.shape}, expected {shape}")
        total += numpy.float32(weights.get(name, 1.0)) * matrix
    if bias is not None:
        total += bias
    return sinkhorn(total, n_iter=n_iter, temperature=temperature, mask=allowed)
