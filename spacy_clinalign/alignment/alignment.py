"""The `Alignment` object that `Doc._.alignment` holds: a word-level matrix plus extracted links."""
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy

from .matrix import PairScores


def _as_array(values, dtype, default: numpy.ndarray) -> numpy.ndarray:
    if values is None:
        return default.astype(dtype)
    if not isinstance(values, numpy.ndarray):
        values = list(values)
    return numpy.asarray(values, dtype=dtype)


class Alignment:
    """Word alignment between a target Doc (rows) and its source Doc (columns).

    matrix: (n_target, n_source) float32 similarity scores, or None when not stored (it can be large).
    links: (k, 2) int64 array of (target_i, source_j), sorted.
    probs: (k,) float32, one probability per link.
    sure: (k,) bool; gold alignments mark possible-only links False, predictions are all sure.
    norms: optional (target_norms, source_norms), the token vectors' norms, kept with the matrix so the
        links can be re-extracted later with any method (see `scores`).
    """

    def __init__(
        self,
        n_target: int,
        n_source: int,
        links: Optional[Iterable[Tuple[int, int]]] = None,
        probs: Optional[Iterable[float]] = None,
        sure: Optional[Iterable[bool]] = None,
        matrix: Optional[numpy.ndarray] = None,
        method: str = "",
        norms: Optional[Tuple[numpy.ndarray, numpy.ndarray]] = None,
    ):
        self.n_target = int(n_target)
        self.n_source = int(n_source)
        arr = _as_array(links, "int64", numpy.zeros((0, 2))).reshape(-1, 2)
        if arr.size and ((arr < 0).any() or arr[:, 0].max() >= self.n_target or arr[:, 1].max() >= self.n_source):
            bad = arr[(arr[:, 0] >= self.n_target) | (arr[:, 1] >= self.n_source) | (arr < 0).any(axis=1)][0]
            raise ValueError(
                f"Alignment link (target {bad[0]}, source {bad[1]}) is outside a {self.n_target} x {self.n_source} pair"
            )
        k = len(arr)
        prob_arr = _as_array(probs, "float32", numpy.ones(k))
        sure_arr = _as_array(sure, bool, numpy.ones(k))
        if len(prob_arr) != k or len(sure_arr) != k:
            raise ValueError(f"Alignment got {k} links but {len(prob_arr)} probabilities and {len(sure_arr)} sure flags")
        order = numpy.lexsort((arr[:, 1], arr[:, 0])) if k else numpy.zeros(0, dtype="int64")
        self.links = arr[order]
        self.probs = prob_arr[order]
        self.sure = sure_arr[order]
        if matrix is not None:
            matrix = numpy.asarray(matrix, dtype="float32")
            if matrix.shape != (self.n_target, self.n_source):
                raise ValueError(f"Alignment matrix has shape {matrix.shape}, expected {(self.n_target, self.n_source)}")
        self.matrix = matrix
        self.method = method
        if norms is not None:
            norms = (numpy.asarray(norms[0], dtype="float32"), numpy.asarray(norms[1], dtype="float32"))
            if norms[0].shape != (self.n_target,) or norms[1].shape != (self.n_source,):
                raise ValueError("Alignment norms must have one value per target and per source token")
        self.norms = norms

    def scores(self) -> PairScores:
        """The stored cosine matrix and norms as PairScores, to re-extract links with another method."""
        if self.matrix is None or self.norms is None:
            raise ValueError("This Alignment was made with store_matrix=False; it has no scores to re-extract from")
        return PairScores(self.matrix, self.norms[0], self.norms[1])

    @classmethod
    def from_mask(
        cls, mask: numpy.ndarray, probs: Optional[numpy.ndarray] = None, scores: Optional[PairScores] = None,
        method: str = "",
    ) -> "Alignment":
        """Build from a boolean (n_target, n_source) link mask, an optional per-cell probability matrix,
        and the PairScores to keep (matrix and norms)."""
        rows, cols = numpy.nonzero(mask)
        p = probs[rows, cols] if probs is not None else None
        return cls(
            mask.shape[0], mask.shape[1], numpy.stack([rows, cols], axis=1), probs=p, method=method,
            matrix=None if scores is None else scores.cosine,
            norms=None if scores is None else (scores.target_norms, scores.source_norms),
        )

    def __len__(self) -> int:
        return len(self.links)

    def __repr__(self) -> str:
        return f"<Alignment {self.n_target}x{self.n_source} links={len(self)} method={self.method!r}>"

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Alignment):
            return NotImplemented
        same_matrix = (self.matrix is None and other.matrix is None) or (
            self.matrix is not None and other.matrix is not None and numpy.array_equal(self.matrix, other.matrix)
        )
        return (
            (self.n_target, self.n_source) == (other.n_target, other.n_source)
            and numpy.array_equal(self.links, other.links)
            and numpy.allclose(self.probs, other.probs)
            and numpy.array_equal(self.sure, other.sure)
            and same_matrix
        )

    def sources_of(self, target_i: int) -> List[int]:
        """Source token indices aligned to target token `target_i`."""
        return self.links[self.links[:, 0] == target_i, 1].tolist()

    def targets_of(self, source_j: int) -> List[int]:
        """Target token indices aligned to source token `source_j`."""
        return self.links[self.links[:, 1] == source_j, 0].tolist()

    def pairs(self, sure_only: bool = False) -> List[Tuple[int, int]]:
        """Links as (source_j, target_i) tuples, Pharaoh's order."""
        rows = self.links[self.sure] if sure_only else self.links
        return [(int(j), int(i)) for i, j in rows]

    def to_pharaoh(self, probs: bool = False, one_based: bool = False) -> str:
        """Pharaoh line `j-i ...` (source-target), 0-based unless asked; possible links get a `p` separator."""
        off = 1 if one_based else 0
        items = []
        for (i, j), p, s in zip(self.links, self.probs, self.sure):
            sep = "-" if s else "p"
            item = f"{j + off}{sep}{i + off}"
            if probs:
                item += f":{p:.4f}"
            items.append(item)
        return " ".join(items)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "n_target": self.n_target,
            "n_source": self.n_source,
            "links": self.links,
            "probs": self.probs,
            "sure": self.sure,
            "matrix": self.matrix,
            "method": self.method,
            "norms": None if self.norms is None else list(self.norms),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Alignment":
        return cls(
            data["n_target"],
            data["n_source"],
            links=numpy.asarray(data["links"]),
            probs=numpy.asarray(data["probs"]),
            sure=numpy.asarray(data["sure"]),
            matrix=data.get("matrix"),
            method=data.get("method", ""),
            norms=data.get("norms"),
        )
