"""Mention text -> ranked ICD codes: dense and/or BM25 candidates, then optional cross-encoder reranking.
The spaCy component and the evaluation both call this, so what is evaluated is what the pipeline does."""
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy

from .catalog import Catalog
from .bi_encoder import BiEncoder
from .cross_encoder import CrossEncoder
from .indexes import DenseIndex, Hit, LexicalIndex

CHANNELS = ("dense", "bm25", "hybrid")
# MultipleNegativesRankingLoss's scale (sentence-transformers' default, what train-bi-encoder uses): the
# bi-encoder's candidate distribution is softmax(20 * cosine)
RETRIEVAL_SCALE = 20.0


def rerank_probabilities(logits: Sequence[float], retrieval_scores: Sequence[float],
                         retrieval_weight: float = 0.0) -> numpy.ndarray:
    """One query's candidates: softmax((1 - w) * reranker logits + w * RETRIEVAL_SCALE * retrieval scores)."""
    mixed = (1.0 - retrieval_weight) * numpy.asarray(logits, dtype="float32")
    if retrieval_weight:
        mixed = mixed + retrieval_weight * RETRIEVAL_SCALE * numpy.asarray(retrieval_scores, dtype="float32")
    return softmax(mixed)


@dataclass
class Candidate:
    code: str
    score: float
    description: str
    retrieval_score: float

    def to_dict(self) -> Dict:
        return asdict(self)


def reciprocal_rank_fusion(lists: Sequence[List[Hit]], k: int, constant: int = 60) -> List[Hit]:
    """Fuse ranked lists by sum of 1 / (constant + rank); a code keeps the description row it first had."""
    scores: Dict[str, float] = {}
    rows: Dict[str, int] = {}
    for hits in lists:
        for rank, (code, _, row) in enumerate(hits, 1):
            scores[code] = scores.get(code, 0.0) + 1.0 / (constant + rank)
            rows.setdefault(code, row)
    best = sorted(scores, key=lambda c: -scores[c])[:k]
    return [(code, scores[code], rows[code]) for code in best]


def softmax(values: numpy.ndarray) -> numpy.ndarray:
    shifted = numpy.exp(values - values.max())
    return shifted / shifted.sum()


class CodeLinker:
    """Catalogue + channels + reranker. `channels`: "dense" (bi-encoder), "bm25" (lexical baseline) or
    "hybrid" (both, reciprocal rank fusion). Candidate scores: cosine (dense), BM25 score (bm25), RRF
    (hybrid); after reranking, the softmax of the cross-encoder logits over the candidates, so a low top
    score means the reranker found no clear winner (what the component's NIL threshold reads)."""

    def __init__(self, catalog: Catalog, bi_encoder: Optional[BiEncoder] = None,
                 cross_encoder: Optional[CrossEncoder] = None, channels: str = "dense",
                 index_kind: str = "exact") -> None:
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, not {channels!r}")
        if channels in ("dense", "hybrid") and bi_encoder is None:
            raise ValueError(f"channels={channels!r} needs a bi-encoder")
        if not len(catalog):
            raise ValueError("the code catalogue is empty")
        bare = [entry.code for entry in catalog if not entry.descriptions]
        if bare:
            raise ValueError(f"{len(bare)} catalogue codes have no description to index, e.g. {bare[:5]}; "
                             "give each code a description or leave it out")
        self.catalog = catalog
        self.bi_encoder = bi_encoder
        self.cross_encoder = cross_encoder
        self.channels = channels
        self.index_kind = index_kind
        self.texts, self.codes = catalog.flat_descriptions()
        self.dense: Optional[DenseIndex] = None
        self.lexical: Optional[LexicalIndex] = None

    def build(self, progress: bool = False) -> "CodeLinker":
        """Embed every description (dense) and index their words (BM25)."""
        if self.bi_encoder is not None and self.dense is None:
            vectors = self.bi_encoder.encode(self.texts, kind="passage", progress=progress)
            self.dense = DenseIndex(vectors, kind=self.index_kind)
        if self.lexical is None:
            self.lexical = LexicalIndex(self.texts)
        return self

    def describe(self, code: str, row: int) -> str:
        """Text the reranker reads for a candidate: its title, plus the description that retrieved it."""
        title = self.catalog[code].title
        matched = self.texts[row]
        return title if matched == title else f"{title} | {matched}"

    def retrieve(self, queries: Sequence[str], k: int, channels: Optional[str] = None) -> List[List[Hit]]:
        channels = channels or self.channels
        if self.lexical is None or (channels != "bm25" and self.dense is None):
            self.build()
        lists = []
        if channels in ("dense", "hybrid"):
            if self.bi_encoder is None or self.dense is None:
                raise ValueError(f"channels={channels!r} needs a bi-encoder")
            lists.append(self.dense.search(self.bi_encoder.encode(list(queries), kind="query"), self.codes, k))
        if channels in ("bm25", "hybrid"):
            lists.append(self.lexical.search(queries, self.codes, k))
        if len(lists) == 1:
            return lists[0]
        return [reciprocal_rank_fusion(per_query, k) for per_query in zip(*lists)]

    def configure(self, quantize: str = "none", rerank_max_length: Optional[int] = None) -> "CodeLinker":
        """Inference settings of both encoders: `quantize` ("none" | "int8": an int8 copy on CPU, see
        linking/inference.py) and the reranker's input cap in wordpieces (query + description)."""
        for encoder in (self.bi_encoder, self.cross_encoder):
            if encoder is not None:
                encoder.quantize = quantize
        if rerank_max_length is not None and self.cross_encoder is not None:
            if rerank_max_length < 8:
                raise ValueError(f"rerank_max_length must be >= 8 wordpieces, got {rerank_max_length}")
            self.cross_encoder.max_length = rerank_max_length
        return self

    def link(self, queries: Sequence[str], k: int = 10, rerank: bool = True,
             channels: Optional[str] = None, retrieval_weight: float = 0.0) -> List[List[Candidate]]:
        """Ranked candidates per query (best first); an empty list when a channel finds nothing.

        With the reranker, a candidate's score is its probability under softmax((1 - w) * reranker logit +
        w * RETRIEVAL_SCALE * retrieval score), w = `retrieval_weight`: 0 ranks by the reranker alone, 1 keeps
        the retrieval order; in between, a reranker trained on few steps is tempered by the bi-encoder's own
        evidence (a log-linear mix of the two distributions; the scale is the bi-encoder's training scale, so
        this is meant for the dense channel's cosines)."""
        if not 0.0 <= retrieval_weight <= 1.0:
            raise ValueError(f"retrieval_weight must be within [0, 1], got {retrieval_weight}")
        hits = self.retrieve(queries, k, channels)
        results = [[Candidate(code, score, self.describe(code, row), score) for code, score, row in per]
                   for per in hits]
        if rerank and self.cross_encoder is not None:
            pairs = [(q, c.description) for q, per in zip(queries, results) for c in per]
            logits = self.cross_encoder.score(pairs) if pairs else numpy.zeros(0, dtype="float32")
            offset = 0
            for per in results:
                if not per:
                    continue
                probs = rerank_probabilities(logits[offset:offset + len(per)],
                                             [c.retrieval_score for c in per], retrieval_weight)
                offset += len(per)
                for cand, prob in zip(per, probs):
                    cand.score = float(prob)
                per.sort(key=lambda c: -c.score)
        return results

    # --- serialisation: the engine owns its state, like spaCy's KnowledgeBase -------------------------
    PARTS = ("catalog", "bm25", "bi_encoder", "dense", "cross_encoder")

    def to_disk(self, path: Union[str, Path], exclude: Iterable[str] = ()) -> None:
        """Write catalogue, BM25 index, encoders and dense index into `path`; names in `exclude`
        (any of PARTS) are left out."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        exclude = set(exclude)
        self.build()
        if "catalog" not in exclude:
            self.catalog.to_jsonl(path / "catalog.jsonl")
        if "bm25" not in exclude:
            self.lexical.save(path / "bm25")
        if self.bi_encoder is not None:
            if "bi_encoder" not in exclude:
                self.bi_encoder.save(path / "bi_encoder")
            if "dense" not in exclude:
                (path / "dense.faiss").write_bytes(self.dense.to_bytes())
        if self.cross_encoder is not None and "cross_encoder" not in exclude:
            self.cross_encoder.save(path / "cross_encoder")

    @classmethod
    def from_disk(cls, path: Union[str, Path], channels: str = "dense", index_kind: str = "exact",
                  query_prefix: str = "query: ", passage_prefix: str = "passage: ", device: Optional[str] = None,
                  exclude: Iterable[str] = ()) -> "CodeLinker":
        """Load what `to_disk` wrote. An excluded encoder is not loaded (without the bi-encoder, linking
        falls back to BM25); an index missing from the folder is rebuilt from the catalogue on first use;
        an index that disagrees with the catalogue is an error."""
        path = Path(path)
        exclude = set(exclude)
        if not (path / "catalog.jsonl").exists():
            raise ValueError(f"{path} is not a saved icd_linker (no catalog.jsonl)")
        catalog = Catalog.from_jsonl(path / "catalog.jsonl")
        bi = cross = None
        if (path / "bi_encoder").exists() and "bi_encoder" not in exclude:
            bi = BiEncoder(path / "bi_encoder", query_prefix, passage_prefix, device=device)
        if (path / "cross_encoder").exists() and "cross_encoder" not in exclude:
            cross = CrossEncoder(path / "cross_encoder", device=device)
        if bi is None and channels != "bm25":
            if "bi_encoder" not in exclude:
                raise ValueError(f"{path}: channels={channels!r} needs a bi-encoder, but the folder has no bi_encoder/")
            channels = "bm25"  # the caller excluded the bi-encoder: only the lexical channel can link
        linker = cls(catalog, bi, cross, channels=channels, index_kind=index_kind)
        if (path / "bm25").exists() and "bm25" not in exclude:
            linker.lexical = LexicalIndex.load(path / "bm25")
        if bi is not None and (path / "dense.faiss").exists() and "dense" not in exclude:
            linker.dense = DenseIndex.from_bytes((path / "dense.faiss").read_bytes(), index_kind)
            if linker.dense.size != len(linker.texts):
                raise ValueError(f"{path}: dense index holds {linker.dense.size} rows but the catalogue "
                                 f"{len(linker.texts)} descriptions; the folder is inconsistent")
        return linker
