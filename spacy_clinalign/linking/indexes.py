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


class DenseIndex:
    """Unit-length description embeddings in a faiss index (`exact`: IndexFlatIP; `hnsw`: IndexHNSWFlat
    over inner product). Pickles through faiss.serialize_index."""

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
        scores, rows = self.index.search(numpy.ascontiguousarray(queries, dtype="float32"), n)
        return [_collapse(r, s, codes, k) for r, s in zip(rows, scores)]

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
