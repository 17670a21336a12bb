"""Link extraction in row blocks: the links and probabilities of the dense functions in `matrix`
(`mutual_argmax`, `itermax_links`, `threshold_links`, `link_probabilities`) without their (n x m)
temporaries, so that a pair costs at most its float32 matrix (4 bytes a cell) when `store_matrix` is on,
and O(block x m) when it is off (the cosine rows are then computed from unit vectors block by block).

Row-wise steps run on each block exactly as the dense code runs on each row; column maxima and argmaxima
are merged across blocks (ties keep the first row, as numpy's argmax does) and column sums are added
row by row in the dense order, so the links are the dense ones. Numpy only (the aligner's scores are numpy).
"""
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import numpy

from .matrix import BLOCK_BYTES, EXTRACTION_METHODS, PairScores, row_blocks

BLOCK_TEMPORARIES = 5  # float32 row-block temporaries a pass holds at once
SINKHORN_BYTES_PER_CELL = 4  # the float32 log-kernel, balanced in place into the output

RowGetter = Callable[[int, int], numpy.ndarray]


def _blocks(n_rows: int, n_cols: int, block_rows: Optional[int]) -> Iterator[Tuple[int, int]]:
    return row_blocks(n_rows, n_cols, block_rows)


def estimate_pair_bytes(n_target: int, n_source: int, store_matrix: bool, sinkhorn_iterations: int = 0) -> int:
    """Bytes the alignment of one pair needs beyond its token vectors: the stored float32 matrix, the
    Sinkhorn log-kernel when balancing, and the block temporaries of extraction."""
    cells = n_target * n_source
    per_cell = (4 if store_matrix else 0) + (SINKHORN_BYTES_PER_CELL if sinkhorn_iterations > 0 else 0)
    temporaries = min(cells * 4, BLOCK_TEMPORARIES * max(BLOCK_BYTES, 4 * n_source))
    return cells * per_cell + temporaries


@dataclass
class SoftmaxStats:
    """Per-row and per-column max and sum of exp(logit - max) of the logits dot / temperature."""

    row_max: numpy.ndarray
    row_sum: numpy.ndarray
    col_max: numpy.ndarray
    col_sum: numpy.ndarray


def _logit_rows(pair: PairScores, start: int, stop: int, temperature: float) -> numpy.ndarray:
    # Same operation order as PairScores.dot() / temperature, so each cell is the dense value.
    return pair.cosine_rows(start, stop) * pair.target_norms[start:stop, None] * pair.source_norms[None, :] / temperature


def _logit_cells(pair: PairScores, rows: numpy.ndarray, cols: numpy.ndarray, temperature: float) -> numpy.ndarray:
    return pair.cosine_cells(rows, cols) * pair.target_norms[rows] * pair.source_norms[cols] / temperature


class _ColumnArgmax:
    """Running column max and argmax over row blocks; a tie keeps the earlier row, as numpy's argmax."""

    def __init__(self, n_cols: int):
        self.best = numpy.full(n_cols, -numpy.inf)
        self.arg = numpy.zeros(n_cols, dtype="int64")

    def add(self, block: numpy.ndarray, start: int) -> None:
        block_best = block.max(axis=0)
        better = block_best > self.best
        self.best = numpy.where(better, block_best, self.best)
        self.arg = numpy.where(better, block.argmax(axis=0) + start, self.arg)


def _mutual(row_arg: numpy.ndarray, col_arg: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    rows = numpy.nonzero(col_arg[row_arg] == numpy.arange(len(row_arg)))[0]
    return rows, row_arg[rows]


def mutual_argmax_blockwise(
    get_rows: RowGetter, shape: Tuple[int, int], block_rows: Optional[int] = None
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(rows, cols) of the cells that are the maximum of both their row and their column."""
    n, m = shape
    if n == 0 or m == 0:
        return numpy.zeros(0, dtype="int64"), numpy.zeros(0, dtype="int64")
    row_arg = numpy.zeros(n, dtype="int64")
    cols = _ColumnArgmax(m)
    for start, stop in _blocks(n, m, block_rows):
        block = get_rows(start, stop)
        row_arg[start:stop] = block.argmax(axis=1)
        cols.add(block, start)
    return _mutual(row_arg, cols.arg)


def itermax_blockwise(
    get_rows: RowGetter, shape: Tuple[int, int], max_rounds: int = 2, alpha: float = 0.9,
    block_rows: Optional[int] = None,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """SimAlign's IterMax as `matrix.itermax_links`, one row block at a time; returns (rows, cols)."""
    n, m = shape

    def sim_rows(start: int, stop: int) -> numpy.ndarray:
        return (get_rows(start, stop) + 1.0) / 2.0

    rows, cols = mutual_argmax_blockwise(sim_rows, shape, block_rows)
    if min(shape) <= 2:
        return rows, cols
    for _ in range(max_rounds - 1):
        row_free = numpy.ones(n, dtype=bool)
        row_free[rows] = False
        col_free = numpy.ones(m, dtype=bool)
        col_free[cols] = False
        if not row_free.any() or not col_free.any():
            break
        col_weight = alpha * col_free[None, :]

        def weighted_rows(start: int, stop: int) -> numpy.ndarray:
            weight = numpy.clip(alpha * row_free[start:stop, None] + col_weight, 0.0, 1.0)
            return sim_rows(start, stop) * weight

        new_rows, new_cols = mutual_argmax_blockwise(weighted_rows, shape, block_rows)
        keep = row_free[new_rows] | col_free[new_cols]  # a cell with a free side is never a link yet
        new_rows, new_cols = new_rows[keep], new_cols[keep]
        if not len(new_rows):
            break
        rows, cols = numpy.concatenate([rows, new_rows]), numpy.concatenate([cols, new_cols])
    return rows, cols


def softmax_stats(
    pair: PairScores, temperature: float = 1.0, block_rows: Optional[int] = None
) -> SoftmaxStats:
    """Row and column softmax normalisers of dot / temperature, in two passes over row blocks."""
    n, m = pair.shape
    row_max = numpy.zeros(n, dtype="float32")
    row_sum = numpy.zeros(n, dtype="float32")
    col_max = numpy.full(m, -numpy.inf, dtype="float32")
    for start, stop in _blocks(n, m, block_rows):
        logits = _logit_rows(pair, start, stop, temperature)
        row_max[start:stop] = logits.max(axis=1)
        row_sum[start:stop] = numpy.exp(logits - row_max[start:stop, None]).sum(axis=1)
        numpy.maximum(col_max, logits.max(axis=0), out=col_max)
    col_sum = numpy.zeros(m, dtype="float32")
    for start, stop in _blocks(n, m, block_rows):
        e = numpy.exp(_logit_rows(pair, start, stop, temperature) - col_max[None, :])
        e[0] += col_sum  # numpy sums axis 0 row by row: this continues the dense summation exactly
        col_sum = e.sum(axis=0)
    return SoftmaxStats(row_max, row_sum, col_max, col_sum)


def threshold_blockwise(
    pair: PairScores, stats: SoftmaxStats, threshold: float, temperature: float = 1.0,
    block_rows: Optional[int] = None,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """awesome-align's rule as `matrix.threshold_links`: both softmaxes of dot / temperature above threshold."""
    n, m = pair.shape
    found_rows: List[numpy.ndarray] = []
    found_cols: List[numpy.ndarray] = []
    for start, stop in _blocks(n, m, block_rows):
        logits = _logit_rows(pair, start, stop, temperature)
        keep = numpy.exp(logits - stats.row_max[start:stop, None]) / stats.row_sum[start:stop, None] > threshold
        keep &= numpy.exp(logits - stats.col_max[None, :]) / stats.col_sum[None, :] > threshold
        r, c = numpy.nonzero(keep)
        found_rows.append(r + start)
        found_cols.append(c)
    if not found_rows:
        return numpy.zeros(0, dtype="int64"), numpy.zeros(0, dtype="int64")
    return numpy.concatenate(found_rows).astype("int64"), numpy.concatenate(found_cols).astype("int64")


def probabilities_at(
    pair: PairScores, stats: SoftmaxStats, rows: numpy.ndarray, cols: numpy.ndarray, temperature: float = 1.0
) -> numpy.ndarray:
    """`matrix.link_probabilities` at the given cells only: sqrt(row softmax x column softmax)."""
    logits = _logit_cells(pair, rows, cols, temperature)
    row_p = numpy.exp(logits - stats.row_max[rows]) / stats.row_sum[rows]
    col_p = numpy.exp(logits - stats.col_max[cols]) / stats.col_sum[cols]
    return numpy.sqrt(row_p * col_p).astype("float32", copy=False)


def balanced_matrix(pair: PairScores, n_iter: int, temperature: float = 1.0,
                    block_rows: Optional[int] = None) -> numpy.ndarray:
    """Sinkhorn-balanced exp(dot / temperature) as `matrix.sinkhorn`, built in one float32 (n x m) array
    that is balanced in place: log-sum-exps run over row blocks, so no other (n x m) array is made."""
    import torch

    n, m = pair.shape
    out = numpy.empty((n, m), dtype="float32")
    for start, stop in _blocks(n, m, block_rows):
        out[start:stop] = _logit_rows(pair, start, stop, temperature)
    logk = torch.from_numpy(out)  # shares memory with `out`
    if n == 0 or m == 0:
        return out
    with torch.no_grad():
        for start, stop in _blocks(n, m, block_rows):  # a row's shift is absorbed by its scaling factor
            block = logk[start:stop]
            row_max = block.max(dim=1, keepdim=True).values
            block -= torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
        log_r = torch.zeros(n)
        log_c = torch.full((m,), float(numpy.log(n / m)))
        u = torch.zeros(n)
        v = torch.zeros(m)
        for _ in range(n_iter):
            for start, stop in _blocks(n, m, block_rows):
                u[start:stop] = log_r[start:stop] - torch.logsumexp(logk[start:stop] + v[None, :], dim=1)
            u = torch.nan_to_num(u, neginf=-1e30)
            col_lse = torch.full((m,), float("-inf"))
            for start, stop in _blocks(n, m, block_rows):
                block_lse = torch.logsumexp(logk[start:stop] + u[start:stop, None], dim=0)
                col_lse = torch.logaddexp(col_lse, block_lse)
            v = torch.nan_to_num(log_c - col_lse, neginf=-1e30)
        for start, stop in _blocks(n, m, block_rows):
            block = logk[start:stop]
            block += u[start:stop, None]
            block += v[None, :]
            block.exp_()
    return out


def links_from_scores(
    pair: PairScores, method: str = "argmax", threshold: float = 0.001, temperature: float = 1.0,
    sinkhorn_iterations: int = 0, block_rows: Optional[int] = None,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Links ((k, 2) int64 rows of (target_i, source_j)) and their probabilities ((k,) float32), as
    clinical_aligner extracts them: from cosines (argmax, itermax) or softmaxed dot products (threshold);
    with Sinkhorn, from the balanced matrix (whose cells are then the probabilities)."""
    if method not in EXTRACTION_METHODS:
        raise ValueError(f"Unknown alignment extraction method {method!r}; choose one of {EXTRACTION_METHODS}")
    n, m = pair.shape
    if n == 0 or m == 0:
        return numpy.zeros((0, 2), dtype="int64"), numpy.zeros(0, dtype="float32")
    if sinkhorn_iterations > 0:
        balanced = balanced_matrix(pair, sinkhorn_iterations, temperature, block_rows)

        def balanced_rows(start: int, stop: int) -> numpy.ndarray:
            return balanced[start:stop]

        if method == "threshold":
            rows, cols = threshold_rows(balanced_rows, (n, m), threshold, block_rows)
        elif method == "itermax":
            rows, cols = itermax_blockwise(balanced_rows, (n, m), block_rows=block_rows)
        else:
            rows, cols = mutual_argmax_blockwise(balanced_rows, (n, m), block_rows)
        probs = balanced[rows, cols]
    else:
        stats = softmax_stats(pair, temperature, block_rows)
        if method == "threshold":
            rows, cols = threshold_blockwise(pair, stats, threshold, temperature, block_rows)
        elif method == "itermax":
            rows, cols = itermax_blockwise(pair.cosine_rows, (n, m), block_rows=block_rows)
        else:
            rows, cols = mutual_argmax_blockwise(pair.cosine_rows, (n, m), block_rows)
        probs = probabilities_at(pair, stats, rows, cols, temperature)
    return numpy.stack([rows, cols], axis=1).astype("int64"), numpy.asarray(probs, dtype="float32")


def threshold_rows(
    get_rows: RowGetter, shape: Tuple[int, int], threshold: float, block_rows: Optional[int] = None
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(rows, cols) of the cells above `threshold`, block by block."""
    n, m = shape
    found_rows: List[numpy.ndarray] = [numpy.zeros(0, dtype="int64")]
    found_cols: List[numpy.ndarray] = [numpy.zeros(0, dtype="int64")]
    for start, stop in _blocks(n, m, block_rows):
        r, c = numpy.nonzero(get_rows(start, stop) > threshold)
        found_rows.append(r + start)
        found_cols.append(c)
    return numpy.concatenate(found_rows).astype("int64"), numpy.concatenate(found_cols).astype("int64")
