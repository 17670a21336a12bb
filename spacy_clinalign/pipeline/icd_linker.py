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
from spacy.util import ensure_path, registry

from ..linking.catalog import Catalog, load_catalog
from ..linking.codes import normalize_code
from ..linking.encoders import BiEncoder, CrossEncoder
from ..linking.evaluation import evaluate_rankings, flatten
from ..linking.indexes import DenseIndex, LexicalIndex
from ..linking.linker import CHANNELS, CodeLinker
from ..linking.mentions import context_of, format_query, mention_pairs, read_mentions

NIL = "NIL"


def span_key(span: Span) -> str:
    return f"{span.start_char}:{span.end_char}:{span.label_}"


def _candidates_of(span: Span) -> Optional[List[Dict]]:
    links = span.doc._.icd_links
    return None if links is None else links.get(span_key(span))


def register_linker_extensions() -> None:
    if not Doc.has_extension("icd_links"):
        Doc.set_extension("icd_links", default=None)
    if not Span.has_extension("icd_candidates"):
        # A getter over a Doc-level dict: a Span's own extension storage is keyed by its kb_id, which
        # linking changes, and a dict on the Doc travels with DocBin(store_user_data=True).
        Span.set_extension("icd_candidates", getter=_candidates_of)


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
        "scorer": {"@scorers": "spacy-clinalign.linking_scorer.v1"},
    },
    default_score_weights={"link_exact_f": 1.0, "link_category_f": 0.0, "link_chapter_f": 0.0,
                           "link_exact_map@10": 0.0},
)
def make_icd_linker(nlp: Language, name: str, spans_key: Optional[str], labels: List[str], top_k: int,
                    channels: str, rerank: bool, threshold: float, context_window: int, batch_size: int,
                    index_kind: str, query_prefix: str, passage_prefix: str, device: Optional[str],
                    scorer: Optional[Callable]) -> "IcdLinker":
    return IcdLinker(nlp.vocab, name, spans_key=spans_key, labels=labels, top_k=top_k, channels=channels,
                     rerank=rerank, threshold=threshold, context_window=context_window, batch_size=batch_size,
                     index_kind=index_kind, query_prefix=query_prefix, passage_prefix=passage_prefix,
                     device=device, scorer=scorer)


class IcdLinker(Pipe):
    def __init__(self, vocab, name: str = "icd_linker", *, spans_key: Optional[str] = None,
                 labels: Sequence[str] = (), top_k: int = 10, channels: str = "dense", rerank: bool = True,
                 threshold: float = 0.0, context_window: int = 0, batch_size: int = 256,
                 index_kind: str = "exact", query_prefix: str = "query: ", passage_prefix: str = "passage: ",
                 device: Optional[str] = None, scorer: Optional[Callable] = None) -> None:
        if channels not in CHANNELS:
            raise ValueError(f"icd_linker: channels must be one of {CHANNELS}, not {channels!r}")
        if top_k < 1:
            raise ValueError(f"icd_linker: top_k must be >= 1, not {top_k}")
        register_linker_extensions()
        self.vocab = vocab
        self.name = name
        self.linker: Optional[CodeLinker] = None
        self.cfg = {"spans_key": spans_key, "labels": list(labels), "top_k": top_k, "channels": channels,
                    "rerank": rerank, "threshold": threshold, "context_window": context_window,
                    "batch_size": batch_size, "index_kind": index_kind, "query_prefix": query_prefix,
                    "passage_prefix": passage_prefix, "device": device}
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
        key = self.cfg["spans_key"]
        spans = list(doc.spans[key]) if key is not None and key in doc.spans else (list(doc.ents) if key is None else [])
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
        linker = self._require()
        flat = []
        step = self.cfg["batch_size"]
        for start in range(0, len(queries), step):
            flat.extend(linker.link(queries[start:start + step], k=self.cfg["top_k"], rerank=self.cfg["rerank"]))
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
        return score_linking(examples, spans_key=self.cfg["spans_key"])

    # --- serialisation --------------------------------------------------------------------------------
    def to_disk(self, path, *, exclude: Iterable[str] = ()) -> None:
        path = ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", self.cfg)
        linker = self._require()
        linker.catalog.to_jsonl(path / "catalog.jsonl")
        linker.lexical.save(path / "bm25")
        if linker.bi_encoder is not None:
            linker.bi_encoder.save(path / "bi_encoder")
            (path / "dense.faiss").write_bytes(linker.dense.to_bytes())
        if linker.cross_encoder is not None:
            linker.cross_encoder.save(path / "cross_encoder")

    def from_disk(self, path, *, exclude: Iterable[str] = ()) -> "IcdLinker":
        path = ensure_path(path)
        if not (path / "catalog.jsonl").exists():
            raise ValueError(f"{path} is not a saved icd_linker (no catalog.jsonl)")
        self.cfg.update(srsly.read_json(path / "cfg"))
        catalog = Catalog.from_jsonl(path / "catalog.jsonl")
        bi = cross = None
        if (path / "bi_encoder").exists():
            bi = BiEncoder(path / "bi_encoder", self.cfg["query_prefix"], self.cfg["passage_prefix"],
                           device=self.cfg["device"])
        if (path / "cross_encoder").exists():
            cross = CrossEncoder(path / "cross_encoder", device=self.cfg["device"])
        linker = CodeLinker(catalog, bi, cross, channels=self.cfg["channels"], index_kind=self.cfg["index_kind"])
        linker.lexical = LexicalIndex.load(path / "bm25")
        if bi is not None:
            linker.dense = DenseIndex.from_bytes((path / "dense.faiss").read_bytes(), self.cfg["index_kind"])
            if linker.dense.size != len(linker.texts):
                raise ValueError(f"{path}: dense index holds {linker.dense.size} rows but the catalogue "
                                 f"{len(linker.texts)} descriptions; the folder is inconsistent")
        self.linker = linker
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


def _reference_mentions(doc: Doc, spans_key: Optional[str]) -> List[Span]:
    if spans_key is None:
        return list(doc.ents)
    return list(doc.spans[spans_key]) if spans_key in doc.spans else []


def score_linking(examples: Iterable[Example], spans_key: Optional[str] = None) -> Dict[str, float]:
    """Gold = reference mentions with a kb_id (codes joined by `+` allowed); predictions = the predicted
    doc's candidates for the span at the same characters (none found = no prediction)."""
    golds, rankings, predictions = [], [], []
    for eg in examples:
        links = eg.predicted._.icd_links or {}
        predicted_ids = {(s.start_char, s.end_char, s.label_): s.kb_id_ for s in _reference_mentions(eg.predicted, spans_key)}
        for span in _reference_mentions(eg.reference, spans_key):
            if not span.kb_id_ or span.kb_id_ == NIL:
                continue
            gold = tuple(normalize_code(c) for c in span.kb_id_.split("+"))
            candidates = links.get(span_key(span)) or []
            kb_id = predicted_ids.get((span.start_char, span.end_char, span.label_))
            golds.append(gold)
            rankings.append([c["code"] for c in candidates])
            predictions.append(kb_id if kb_id and kb_id != NIL else None)
    if not golds:
        return {}
    return flatten(evaluate_rankings(golds, rankings, predictions))


@registry.scorers("spacy-clinalign.linking_scorer.v1")
def make_linking_scorer() -> Callable:
    return score_linking
