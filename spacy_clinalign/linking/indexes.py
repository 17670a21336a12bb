"""Candidate channels over the catalogue's descriptions: dense (faiss, exact inner product or HNSW) and
lexical (bm25s). Each returns, per query, codes with their best description and score; several
descriptions of one code collapse to the best."""
import re
import unicodedata
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy

from ..extras import require

Hit = Tuple[str, float, int]  # (code, score, description row)


def _collapse(rows: numpy.ndarray, scores: numpy.ndarray, codes: Sequence[str], k: int) -> List[Hit]:
    hits: List[Hit] = []
    seen = set()
    for row, score in zip(rows, scores):
        if row < 0:
            continue
        code = codes[row]
        if code in seen:
            continue
        seen.add(code)
        hits.append((code, float(score), int(row)))
        if len(hits) == k:
            break
    return hits


# Queries per matrix product in the exact search: a block's scores are QUERY_BLOCK x catalogue floats
# (64 x 125k = 32 MiB).
QUERY_BLOCK = 64
# Extra rows kept past the wanted ones before ties are ordered, so rows with equal scores at the cut are
# ordered by row rather than by the selection algorithm.
TIE_MARGIN = 8


def exact_top(vectors: numpy.ndarray, queries: numpy.ndarray, n: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The `n` rows of `vectors` with the largest inner product per query: (scores, rows), best first,
    equal scores by increasing row. One matrix product per block of queries (torch's BLAS) and a top-k.

    faiss's IndexFlatIP computes the same products but, on the 2-core CPU, at 7 GFLOP/s against torch's 80
    (bench/RESULTS.md): over the 125k-description catalogue it was half of link-only time. Scores agree with
    faiss's within 1e-6; faiss leaves the order of equal scores to its heap, here it is by row."""
    import torch

    n = min(n, len(vectors))
    matrix = torch.from_numpy(vectors)
    keep = min(len(vectors), n + TIE_MARGIN)
    all_scores = numpy.zeros((len(queries), n), dtype="float32")
    all_rows = numpy.zeros((len(queries), n), dtype="int64")
    with torch.inference_mode():
        for start in range(0, len(queries), QUERY_BLOCK):
            block = torch.from_numpy(queries[start:start + QUERY_BLOCK])
            scores, rows = torch.topk(block @ matrix.T, keep, dim=1)
            scores, rows = scores.numpy(), rows.numpy()
            for i in range(len(scores)):
                order = numpy.lexsort((rows[i], -scores[i]))[:n]
                all_scores[start + i], all_rows[start + i] = scores[i][order], rows[i][order]
    return all_scores, all_rows


class DenseIndex:
    """Unit-length description embeddings in a faiss index (`exact`: IndexFlatIP; `hnsw`: IndexHNSWFlat
    over inner product). Pickles through faiss.serialize_index. The exact kind is searched by
    `exact_top` over the index's own vectors (no copy); HNSW by faiss."""

    def __init__(self, vectors: numpy.ndarray, kind: str = "exact", hnsw_m: int = 32) -> None:
        faiss = require("faiss")

        if kind not in ("exact", "hnsw"):
            raise ValueError(f"dense index kind must be 'exact' or 'hnsw', not {kind!r}")
        vectors = numpy.ascontiguousarray(vectors, dtype="float32")
        if vectors.ndim != 2 or not len(vectors):
            raise ValueError(f"dense index needs a non-empty (n, dim) matrix, got shape {vectors.shape}")
        self.kind = kind
        if kind == "exact":
            self.index = faiss.IndexFlatIP(vectors.shape[1])
        else:
            self.index = faiss.IndexHNSWFlat(vectors.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efSearch = 128
        self.index.add(vectors)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: numpy.ndarray, codes: Sequence[str], k: int, oversample: int = 4) -> List[List[Hit]]:
        """Top `k` distinct codes per query (searching `k * oversample` descriptions)."""
        n = min(self.size, max(k * oversample, k))
        queries = numpy.ascontiguousarray(queries, dtype="float32")
        if self.kind == "exact":
            scores, rows = exact_top(self.vectors(), queries, n)
        else:
            scores, rows = self.index.search(queries, n)
        return [_collapse(r, s, codes, k) for r, s in zip(rows, scores)]

    def vectors(self) -> numpy.ndarray:
        """The exact index's (size, dim) float32 vectors: a view of faiss's own storage, valid while the
        index lives."""
        faiss = require("faiss")

        if self.kind != "exact":
            raise ValueError("only the exact dense index exposes its vectors")
        flat = faiss.rev_swig_ptr(self.index.get_xb(), self.size * self.index.d)
        return flat.reshape(self.size, self.index.d)

    def to_bytes(self) -> bytes:
        faiss = require("faiss")

        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, kind: str) -> "DenseIndex":
        faiss = require("faiss")

        self = cls.__new__(cls)
        self.kind = kind
        self.index = faiss.deserialize_index(numpy.frombuffer(data, dtype="uint8").copy())
        return self

    def __getstate__(self):
        return {"kind": self.kind, "index": self.to_bytes()}

    def __setstate__(self, state):
        restored = DenseIndex.from_bytes(state["index"], state["kind"])
        self.kind, self.index = restored.kind, restored.index


_WORD = re.compile(r"\w+", re.UNICODE)


def lexical_tokens(text: str) -> List[str]:
    """Lower-cased, accent-stripped words (so `neumonía` meets `neumonia`); one-letter words are dropped
    but digits kept (`tipo 1` and `tipo 2` differ)."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [w for w in _WORD.findall(folded) if len(w) > 1 or w.isdigit()]


class LexicalIndex:
    """BM25 (bm25s, Lucene variant) over description words. Queries with no word in the vocabulary get
    no candidate, as a lexical baseline should."""

    def __init__(self, texts: Sequence[str]) -> None:
        bm25s = require("bm25s")

        self.retriever = bm25s.BM25()
        self.retriever.index([lexical_tokens(t) for t in texts], show_progress=False)
        self.size = len(texts)

    def search(self, queries: Sequence[str], codes: Sequence[str], k: int, oversample: int = 4) -> List[List[Hit]]:
        n = min(self.size, max(k * oversample, k))
        vocab = self.retriever.vocab_dict
        tokenized = [[t for t in lexical_tokens(q) if t in vocab] for q in queries]
        asked = [i for i, tokens in enumerate(tokenized) if tokens]
        results: List[List[Hit]] = [[] for _ in queries]
        for i in asked:
            # bm25s scores; the top n is picked among the matching rows only. bm25s' own retrieve()
            # argpartitions all ~125k scores, mostly tied zeros, which made BM25 run at ~60 queries/s
            # instead of ~2,000 (bench/link.py).
            scores = self.retriever.get_scores(tokenized[i])
            matching = numpy.flatnonzero(scores > 0)
            top = matching[numpy.argsort(-scores[matching], kind="stable")[:n]]
            results[i] = _collapse(top, scores[top], codes, k)
        return results

    def save(self, path: Union[str, Path]) -> None:
        self.retriever.save(str(path), show_progress=False)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "LexicalIndex":
        bm25s = require("bm25s")

        self = cls.__new__(cls)
        self.retriever = bm25s.BM25.load(str(path), show_progress=False)
        self.size = int(self.retriever.scores["num_docs"])
        return self
