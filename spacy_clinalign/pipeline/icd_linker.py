"""`icd_linker`: link entity mentions to ICD-10 / CIE-10-ES codes inside a spaCy pipeline.

Each mention (an entity, or a span of `doc.spans[spans_key]`) becomes a query; the bi-encoder and/or
BM25 propose candidates from the catalogue, the cross-encoder reranks the top `top_k`, and the best code
goes to `kb_id_` ("NIL" when its score is under `threshold`). Every candidate, with its score and the
description it was matched on, is in `span._.icd_candidates`. Catalogue, indexes and both encoders are
saved inside the pipeline folder and load offline; the component pickles."""
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example
from spacy.util import ensure_path

from ..io.linking_mentions import mention_pairs, read_mentions
from ..linking.bi_encoder import BiEncoder
from ..linking.catalog import Catalog, load_catalog
from ..linking.cross_encoder import CrossEncoder
from ..linking.linker import CHANNELS, CodeLinker
from ..models.quantize import QUANTIZE_MODES
from ..linking.queries import context_of, format_query
from ..pairs import register_extensions, span_key, spans_of
from ..scoring.linking import NIL, score_linking


@Language.factory(
    "icd_linker",
    assigns=["token.ent_kb_id", "doc._.icd_links", "span._.icd_candidates"],
    default_config={
        "spans_key": None,
        "labels": [],
        "top_k": 10,
        "channels": "dense",
        "rerank": True,
        "threshold": 0.0,
        "context_window": 0,
        "batch_size": 256,
        "index_kind": "exact",
        "query_prefix": "query: ",
        "passage_prefix": "passage: ",
        "device": None,
        "quantize": "none",
        "rerank_max_length": 96,
        "rerank_retrieval_weight": 0.0,
        "scorer": {"@scorers": "spacy-clinalign.linking_scorer.v1"},
    },
    default_score_weights={"link_exact_f": 1.0, "link_category_f": 0.0, "link_chapter_f": 0.0,
                           "link_exact_map@10": 0.0},
)
def make_icd_linker(nlp: Language, name: str, spans_key: Optional[str], labels: List[str], top_k: int,
                    channels: str, rerank: bool, threshold: float, context_window: int, batch_size: int,
                    index_kind: str, query_prefix: str, passage_prefix: str, device: Optional[str],
                    quantize: str, rerank_max_length: int, rerank_retrieval_weight: float,
                    scorer: Optional[Callable]) -> "IcdLinker":
    return IcdLinker(nlp.vocab, name, spans_key=spans_key, labels=labels, top_k=top_k, channels=channels,
                     rerank=rerank, threshold=threshold, context_window=context_window, batch_size=batch_size,
                     index_kind=index_kind, query_prefix=query_prefix, passage_prefix=passage_prefix,
                     device=device, quantize=quantize, rerank_max_length=rerank_max_length,
                     rerank_retrieval_weight=rerank_retrieval_weight, scorer=scorer)


class IcdLinker(Pipe):
    def __init__(self, vocab, name: str = "icd_linker", *, spans_key: Optional[str] = None,
                 labels: Sequence[str] = (), top_k: int = 10, channels: str = "dense", rerank: bool = True,
                 threshold: float = 0.0, context_window: int = 0, batch_size: int = 256,
                 index_kind: str = "exact", query_prefix: str = "query: ", passage_prefix: str = "passage: ",
                 device: Optional[str] = None, quantize: str = "none", rerank_max_length: int = 96,
                 rerank_retrieval_weight: float = 0.0, scorer: Optional[Callable] = None) -> None:
        if channels not in CHANNELS:
            raise ValueError(f"icd_linker: channels must be one of {CHANNELS}, not {channels!r}")
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"icd_linker: quantize must be one of {QUANTIZE_MODES}, not {quantize!r}")
        if top_k < 1:
            raise ValueError(f"icd_linker: top_k must be >= 1, not {top_k}")
        if not 0.0 <= rerank_retrieval_weight <= 1.0:
            raise ValueError(f"icd_linker: rerank_retrieval_weight must be within [0, 1], not {rerank_retrieval_weight}")
        register_extensions()
        self.vocab = vocab
        self.name = name
        self.linker: Optional[CodeLinker] = None
        self.cfg = {"spans_key": spans_key, "labels": list(labels), "top_k": top_k, "channels": channels,
                    "rerank": rerank, "threshold": threshold, "context_window": context_window,
                    "batch_size": batch_size, "index_kind": index_kind, "query_prefix": query_prefix,
                    "passage_prefix": passage_prefix, "device": device, "quantize": quantize,
                    "rerank_max_length": rerank_max_length, "rerank_retrieval_weight": rerank_retrieval_weight}
        self.scorer = scorer

    # --- set-up ---------------------------------------------------------------------------------------
    def initialize(self, get_examples: Optional[Callable[[], Iterable[Example]]] = None, *,
                   nlp: Optional[Language] = None, catalog: Union[str, Path, Catalog, None] = None,
                   bi_encoder: Optional[str] = None, cross_encoder: Optional[str] = None,
                   synonyms: Sequence[str] = (), add_unknown_codes: bool = True, progress: bool = False) -> None:
        """Load the catalogue (a path, `icd10cm`, `cie10`, `icd10cm+cie10`, or a Catalog), add synonyms
        from mention files (CodiEsp X.tsv, DisTEMIST) and from the examples' gold kb_ids, load both
        encoders from local folders and build the indexes."""
        if catalog is None:
            raise ValueError("icd_linker.initialize needs a catalogue: a JSONL/TSV path, 'icd10cm', 'cie10' "
                             "or 'icd10cm+cie10'")
        cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
        for path in synonyms:
            cat.add_synonyms(mention_pairs(read_mentions(path)), add_unknown=add_unknown_codes)
        if get_examples is not None:
            pairs = [(span.text, span.kb_id_) for eg in get_examples() for span in self._mentions(eg.reference)
                     if span.kb_id_ and span.kb_id_ != NIL]
            cat.add_synonyms(pairs, add_unknown=add_unknown_codes)
        if self.cfg["channels"] != "bm25" and not bi_encoder:
            raise ValueError(f"icd_linker: channels={self.cfg['channels']!r} needs bi_encoder (a local model folder)")
        bi = BiEncoder(bi_encoder, self.cfg["query_prefix"], self.cfg["passage_prefix"],
                       device=self.cfg["device"]) if bi_encoder else None
        cross = CrossEncoder(cross_encoder, device=self.cfg["device"]) if cross_encoder else None
        self.linker = CodeLinker(cat, bi, cross, channels=self.cfg["channels"],
                                 index_kind=self.cfg["index_kind"]).build(progress=progress)

    def _require(self) -> CodeLinker:
        if self.linker is None:
            raise ValueError(f"{self.name} is not initialized: call nlp.initialize() or "
                             f"{self.name}.initialize(catalog=..., bi_encoder=...) before linking")
        return self.linker

    # --- linking --------------------------------------------------------------------------------------
    def _mentions(self, doc: Doc) -> List[Span]:
        spans = spans_of(doc, self.cfg["spans_key"])
        labels = set(self.cfg["labels"])
        return [s for s in spans if not labels or s.label_ in labels]

    def query_of(self, span: Span) -> str:
        window = self.cfg["context_window"]
        context = context_of(span.doc.text, span.start_char, span.end_char, window) if window > 0 else ""
        return format_query(span.text, context)

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterable[Doc]:
        from spacy.util import minibatch

        for docs in minibatch(stream, size=batch_size):
            self.set_annotations(docs, self.predict(docs))
            yield from docs

    def predict(self, docs: Iterable[Doc]) -> List[List[List[Dict]]]:
        """Per doc, per mention: candidate dicts (code, score, description, retrieval_score), best first."""
        docs = list(docs)
        mentions = [self._mentions(doc) for doc in docs]
        queries = [self.query_of(span) for spans in mentions for span in spans]
        if not queries:
            return [[] for _ in docs]
        if self.cfg["channels"] not in CHANNELS:
            raise ValueError(f"icd_linker: channels must be one of {CHANNELS}, not {self.cfg['channels']!r}")
        linker = self._require().configure(self.cfg.get("quantize", "none"), self.cfg.get("rerank_max_length"))
        flat = []
        step = self.cfg["batch_size"]
        for start in range(0, len(queries), step):
            # cfg["channels"] is read on each call, so a loaded pipeline can switch (both indexes are built)
            flat.extend(linker.link(queries[start:start + step], k=self.cfg["top_k"], rerank=self.cfg["rerank"],
                                    channels=self.cfg["channels"],
                                    retrieval_weight=self.cfg.get("rerank_retrieval_weight", 0.0)))
        out, offset = [], 0
        for spans in mentions:
            out.append([[c.to_dict() for c in per] for per in flat[offset:offset + len(spans)]])
            offset += len(spans)
        return out

    def decide(self, candidates: List[Dict]) -> str:
        if not candidates or candidates[0]["score"] < self.cfg["threshold"]:
            return NIL
        return candidates[0]["code"]

    def set_annotations(self, docs: Iterable[Doc], batch_candidates: List[List[List[Dict]]]) -> None:
        key = self.cfg["spans_key"]
        for doc, per_doc in zip(docs, batch_candidates):
            spans = self._mentions(doc)
            links = dict(doc._.icd_links or {})
            codes = {}
            for span, candidates in zip(spans, per_doc):
                links[span_key(span)] = candidates
                codes[(span.start, span.end, span.label)] = self.decide(candidates)
            doc._.icd_links = links
            if key is None:
                for span in spans:
                    for token in span:  # as spaCy's entity_linker does: ents carry kb_id on their tokens
                        token.ent_kb_id_ = codes[(span.start, span.end, span.label)]
            elif key in doc.spans:
                group = doc.spans[key]
                doc.spans[key] = SpanGroup(doc, name=key, attrs=dict(group.attrs), spans=[
                    Span(doc, s.start, s.end, label=s.label, span_id=s.id,
                         kb_id=codes.get((s.start, s.end, s.label), s.kb_id)) for s in group])

    # --- scoring --------------------------------------------------------------------------------------
    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, float]:
        kwargs.setdefault("spans_key", self.cfg["spans_key"])
        return self.scorer(examples, **kwargs) if self.scorer is not None else score_linking(examples, **kwargs)

    # --- serialisation: the engine writes its own state (catalogue, indexes, encoders) -------------
    def to_disk(self, path, *, exclude: Iterable[str] = ()) -> None:
        """`exclude` takes "cfg", "linker" (the whole engine) or any of CodeLinker.PARTS."""
        path = ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        if "cfg" not in exclude:
            srsly.write_json(path / "cfg", self.cfg)
        if "linker" not in exclude:
            self._require().to_disk(path, exclude=exclude)

    def from_disk(self, path, *, exclude: Iterable[str] = ()) -> "IcdLinker":
        path = ensure_path(path)
        if "cfg" not in exclude and (path / "cfg").exists():
            self.cfg.update(srsly.read_json(path / "cfg"))
        if "linker" not in exclude:
            cfg = self.cfg
            self.linker = CodeLinker.from_disk(path, channels=cfg["channels"], index_kind=cfg["index_kind"],
                                               query_prefix=cfg["query_prefix"], passage_prefix=cfg["passage_prefix"],
                                               device=cfg["device"], exclude=exclude)
            # the engine may fall back to BM25 (bi-encoder excluded); predict links by cfg["channels"]
            self.cfg["channels"] = self.linker.channels
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        """The to_disk folder packed as {relative path: bytes} (for nlp.to_bytes and deepcopy)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.to_disk(tmp, exclude=exclude)
            root = Path(tmp)
            files = {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}
        return srsly.msgpack_dumps(files)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> "IcdLinker":
        files = srsly.msgpack_loads(bytes_data)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for name, data in files.items():
                target = (root / name).resolve()
                if root.resolve() not in target.parents:
                    raise ValueError(f"icd_linker bytes hold a path outside the component: {name!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            return self.from_disk(root, exclude=exclude)
