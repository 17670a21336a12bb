"""Alignment matrix math on plain arrays, independent of spaCy so it can be tested and benchmarked alone.

Every matrix here is oriented (rows = target tokens, columns = source tokens), as `Doc._.alignment` is.
Functions accept numpy or cupy arrays (through thinc's `get_array_module`) unless they say torch.
"""
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy
from thinc.api import get_array_module

EXTRACTION_METHODS = ("threshold", "argmax", "itermax")
OUTSIDE_BAND = -1.0  # the cosine given to cells a document prior rules out
BLOCK_BYTES = 32 * 2**20  # bytes of one float32 row-block temporary in blockwise code


def row_blocks(n_rows: int, n_cols: int, block_rows: Optional[int] = None) -> Iterator[Tuple[int, int]]:
    """[start, stop) row ranges whose float32 (rows x n_cols) block stays within BLOCK_BYTES (or of
    `block_rows` rows): how every whole-matrix pass here avoids (n x m) temporaries."""
    size = block_rows or max(1, BLOCK_BYTES // max(1, 4 * n_cols))
    for start in range(0, n_rows, size):
        yield start, min(n_rows, start + size)


def cosine_matrix(target: "numpy.ndarray", source: "numpy.ndarray", eps: float = 1e-8) -> "numpy.ndarray":
    """Cosine similarity of every target row with every source row: (n_target, n_source).

    Rows with zero norm (whitespace tokens, which get no subwords) give similarity 0, not NaN.
    """
    xp = get_array_module(target)
    t = target / xp.maximum(xp.linalg.norm(target, axis=1, keepdims=True), eps)
    s = source / xp.maximum(xp.linalg.norm(source, axis=1, keepdims=True), eps)
    return t @ s.T


def rectangles_mask(rectangles: "numpy.ndarray", start: int, stop: int, n_cols: int) -> "numpy.ndarray":
    """(stop - start, n_cols) bool: rows [start, stop) of the union of (t0, t1, s0, s1) rectangles."""
    allowed = numpy.zeros((stop - start, n_cols), dtype=bool)
    for t0, t1, s0, s1 in rectangles[(rectangles[:, 0] < stop) & (rectangles[:, 1] > start)]:
        allowed[max(t0, start) - start:min(t1, stop) - start, s0:s1] = True
    return allowed


@dataclass
class PairScores:
    """Cosine matrix of a pair plus each token's vector norm, from which the raw dot products follow.

    Cosine drives argmax/itermax (as SimAlign); the softmax-based `threshold` method and link
    probabilities use dot products, whose scale makes the softmax sharp (as awesome-align does).
    `cosine` may be None when the matrix is not kept (`store_matrix = false`): the unit vectors are
    kept instead and `cosine_rows` computes row blocks on demand, so no (n x m) array is ever built.
    """

    cosine: Optional["numpy.ndarray"]
    target_norms: "numpy.ndarray"
    source_norms: "numpy.ndarray"
    target_unit: Optional["numpy.ndarray"] = None
    source_unit: Optional["numpy.ndarray"] = None
    band: Optional["numpy.ndarray"] = None  # (k, 4) allowed (t0, t1, s0, s1) rectangles, when not stored

    @property
    def shape(self) -> Tuple[int, int]:
        return (len(self.target_norms), len(self.source_norms))

    def cosine_rows(self, start: int, stop: int) -> "numpy.ndarray":
        """Rows [start, stop) of the cosine matrix (a view when stored, else computed)."""
        if self.cosine is not None:
            return self.cosine[start:stop]
        rows = self.target_unit[start:stop] @ self.source_unit.T
        if self.band is not None:
            rows[~rectangles_mask(self.band, start, stop, rows.shape[1])] = OUTSIDE_BAND
        return rows

    def cosine_cells(self, rows: "numpy.ndarray", cols: "numpy.ndarray") -> "numpy.ndarray":
        """Cosine of the given (row, col) cells only."""
        if self.cosine is not None:
            return self.cosine[rows, cols]
        values = numpy.einsum("ij,ij->i", self.target_unit[rows], self.source_unit[cols]).astype("float32", copy=False)
        if self.band is not None:
            inside = numpy.zeros(len(values), dtype=bool)
            for t0, t1, s0, s1 in self.band:
                inside |= (rows >= t0) & (rows < t1) & (cols >= s0) & (cols < s1)
            values[~inside] = OUTSIDE_BAND
        return values

    def restrict_to_band(self, rectangles: "numpy.ndarray") -> None:
        """Rule out every cell outside the union of (t0, t1, s0, s1) `rectangles` (cosine OUTSIDE_BAND):
        in place on a stored matrix, row block by row block, or on the fly when the matrix is not stored.
        No (n x m) temporary."""
        rectangles = numpy.asarray(rectangles, dtype="int64").reshape(-1, 4)
        if self.cosine is None:
            self.band = rectangles
            return
        n, m = self.cosine.shape
        for start, stop in row_blocks(n, m):
            self.cosine[start:stop][~rectangles_mask(rectangles, start, stop, m)] = OUTSIDE_BAND

    def full_cosine(self) -> "numpy.ndarray":
        return self.cosine if self.cosine is not None else self.cosine_rows(0, self.shape[0])

    def dot(self) -> "numpy.ndarray":
        return self.full_cosine() * self.target_norms[:, None] * self.source_norms[None, :]

    @classmethod
    def zeros(cls, n_target: int, n_source: int) -> "PairScores":
        return cls(numpy.zeros((n_target, n_source), dtype="float32"), numpy.zeros(n_target, dtype="float32"),
                   numpy.zeros(n_source, dtype="float32"))


def pair_scores(target: "numpy.ndarray", source: "numpy.ndarray", store: bool = True, eps: float = 1e-8) -> PairScores:
    """PairScores of two (n, width) token-vector arrays, returned as numpy. With `store=False` only the
    unit vectors are kept (O((n + m) x width) memory); the matrix is then computed in row blocks."""
    xp = get_array_module(target)
    to_np = (lambda a: a.get()) if xp is not numpy else (lambda a: a)
    t_norms = to_np(xp.linalg.norm(target, axis=1)).astype("float32", copy=False)
    s_norms = to_np(xp.linalg.norm(source, axis=1)).astype("float32", copy=False)
    if store:
        return PairScores(to_np(cosine_matrix(target, source, eps)).astype("float32", copy=False), t_norms, s_norms)
    t = target / xp.maximum(xp.linalg.norm(target, axis=1, keepdims=True), eps)
    s = source / xp.maximum(xp.linalg.norm(source, axis=1, keepdims=True), eps)
    return PairScores(None, t_norms, s_norms, to_np(t).astype("float32", copy=False),
                      to_np(s).astype("float32", copy=False))


def softmax(x: "numpy.ndarray", axis: int) -> "numpy.ndarray":
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    e = xp.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def mutual_argmax(scores: "numpy.ndarray") -> "numpy.ndarray":
    """Boolean mask of the cells that are the maximum of both their row and their column."""
    xp = get_array_module(scores)
    mask = xp.zeros(scores.shape, dtype=bool)
    if scores.size == 0:
        return mask
    rows = xp.arange(scores.shape[0])
    row_best = xp.zeros(scores.shape, dtype=bool)
    row_best[rows, scores.argmax(axis=1)] = True
    cols = xp.arange(scores.shape[1])
    col_best = xp.zeros(scores.shape, dtype=bool)
    col_best[scores.argmax(axis=0), cols] = True
    return row_best & col_best


def threshold_links(scores: "numpy.ndarray", threshold: float = 0.001, temperature: float = 1.0) -> "numpy.ndarray":
    """awesome-align's extraction: softmax over each row and over each column, keep cells above threshold in both.

    Pass raw dot products, as awesome-align does: on cosine scores (bounded by 1) the softmax is
    almost flat and nearly every cell passes 0.001, unless `temperature` is made very small.
    """
    if scores.size == 0:
        return get_array_module(scores).zeros(scores.shape, dtype=bool)
    logits = scores / temperature
    return (softmax(logits, axis=1) > threshold) & (softmax(logits, axis=0) > threshold)


def itermax_links(scores: "numpy.ndarray", max_rounds: int = 2, alpha: float = 0.9) -> "numpy.ndarray":
    """SimAlign's IterMax: mutual argmax, then further rounds that may only add links touching a token
    still unaligned on at least one side (cells whose row and column are both aligned are excluded;
    cells with one aligned side are discounted by `alpha`). Scores are mapped to [0, 1] first."""
    xp = get_array_module(scores)
    sim = (scores + 1.0) / 2.0
    links = mutual_argmax(sim)
    if min(sim.shape, default=0) <= 2:
        return links
    for _ in range(max_rounds - 1):
        row_free = ~links.any(axis=1, keepdims=True)
        col_free = ~links.any(axis=0, keepdims=True)
        if not row_free.any() or not col_free.any():
            break
        either_free = row_free | col_free
        weight = xp.clip(alpha * row_free + alpha * col_free, 0.0, 1.0)
        candidates = mutual_argmax(sim * weight) & either_free
        new = candidates & ~links
        if not new.any():
            break
        links = links | new
    return links


def extract_links(
    scores: "numpy.ndarray", method: str = "argmax", threshold: float = 0.001, temperature: float = 1.0
) -> "numpy.ndarray":
    """Dispatch to one extraction method; returns a boolean (n_target, n_source) mask."""
    if method == "argmax":
        return mutual_argmax(scores)
    if method == "itermax":
        return itermax_links(scores)
    if method == "threshold":
        return threshold_links(scores, threshold=threshold, temperature=temperature)
    raise ValueError(f"Unknown alignment extraction method {method!r}; choose one of {EXTRACTION_METHODS}")


def link_probabilities(scores: "numpy.ndarray", temperature: float = 1.0) -> "numpy.ndarray":
    """A probability per cell: the geometric mean of the row-softmax and the column-softmax."""
    xp = get_array_module(scores)
    if scores.size == 0:
        return xp.zeros(scores.shape, dtype="float32")
    logits = scores / temperature
    return xp.sqrt(softmax(logits, axis=1) * softmax(logits, axis=0))


def sinkhorn(
    scores,
    n_iter: int = 100,
    temperature: float = 1.0,
    mask: Optional["numpy.ndarray"] = None,
    return_log: bool = False,
):
    """Log-domain Sinkhorn-Knopp balancing of exp(scores / temperature), in torch (CPU or GPU).

    Rows are scaled to sum to 1 and columns to n_rows / n_cols, so a square matrix becomes doubly
    stochastic; a rectangular one has uniform marginals. Cells where `mask` is False get zero mass.
    Working with log-sum-exp keeps it stable for large magnitudes and large (8k x 8k) matrices.
    Accepts numpy, cupy or torch; returns the same kind of array it was given.
    """
    import torch

    given_numpy = isinstance(scores, numpy.ndarray)
    given_torch = isinstance(scores, torch.Tensor)
    if given_torch:
        logk = scores.to(torch.float32)
    elif given_numpy:
        logk = torch.from_numpy(numpy.ascontiguousarray(scores, dtype="float32"))
    else:  # cupy
        logk = torch.as_tensor(scores, device="cuda", dtype=torch.float32)
    n, m = logk.shape
    if n == 0 or m == 0:
        result = logk
    else:
        logk = logk / temperature
        if mask is not None:
            mask_t = torch.as_tensor(numpy.asarray(mask) if not hasattr(mask, "device") else mask, device=logk.device)
            logk = logk.masked_fill(~mask_t.bool(), float("-inf"))
        # Shifting a row's logits is absorbed by its scaling factor, so subtracting the row max costs
        # nothing and keeps float32 exact for large offsets (1e4 + small differences).
        row_max = logk.max(dim=1, keepdim=True).values
        logk = logk - torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
        log_r = torch.zeros(n, device=logk.device)  # log row marginal: 1 per row
        log_c = torch.full((m,), float(numpy.log(n / m)), device=logk.device)
        u = torch.zeros(n, device=logk.device)
        v = torch.zeros(m, device=logk.device)
        for _ in range(n_iter):
            u = log_r - torch.logsumexp(logk + v[None, :], dim=1)
            u = torch.nan_to_num(u, neginf=-1e30)
            v = log_c - torch.logsumexp(logk + u[:, None], dim=0)
            v = torch.nan_to_num(v, neginf=-1e30)
        log_p = logk + u[:, None] + v[None, :]
        result = log_p if return_log else log_p.exp()
    if given_torch:
        return result
    if given_numpy:
        return result.cpu().numpy()
    import cupy

    return cupy.asarray(result)


def drop_rows_cols(mask: "numpy.ndarray", rows: "numpy.ndarray", cols: "numpy.ndarray") -> "numpy.ndarray":
    """Clear the given rows and columns of a link mask (used for whitespace tokens, which carry no meaning)."""
    mask = mask.copy()
    mask[rows, :] = False
    mask[:, cols] = False
    return mask

