"""Build the aligner's training corpus: pairs of Docs carrying their frozen teacher matrix (`doc._.teacher`).

Each view reads token vectors from its own encoder (any local Hugging Face folder and layer); views that
name the same encoder share one encoding pass. Output is a DocBin of target Docs with `_.source` and
`_.teacher` (float16), which the `spacy-clinalign.ParallelCorpus.v1` reader turns into training Examples.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy
import srsly
from spacy.language import Language
from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..alignment.teacher import VIEW_NAMES, fuse_views, phrase_view, positional_prior, sentence_view, span_bias, token_view

SpanPair = Tuple[Tuple[int, int], Tuple[int, int]]


@dataclass
class TeacherSettings:
    encoder: str
    layer: int = 8
    view_encoders: Dict[str, Tuple[str, int]] = field(default_factory=dict)  # view -> (folder, layer)
    weights: Dict[str, float] = field(default_factory=lambda: {name: 1.0 for name in VIEW_NAMES})
    prior_full: float = 50.0
    prior_zero: float = 100.0
    context: int = 2
    context_weight: float = 0.1
    phrase_radius: int = 1
    sinkhorn_iterations: int = 100
    temperature: float = 0.1
    span_bias: float = 0.0
    batch_size: int = 8

    def __post_init__(self) -> None:
        """Settings that would write a useless teacher (all-inf at temperature 0) are errors up front."""
        if not self.temperature > 0:
            raise ValueError(f"teacher: temperature must be > 0, got {self.temperature}")
        if self.sinkhorn_iterations < 0:
            raise ValueError(f"teacher: sinkhorn_iterations must be >= 0, got {self.sinkhorn_iterations}")
        if self.batch_size < 1:
            raise ValueError(f"teacher: batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.prior_full <= self.prior_zero:
            raise ValueError(f"teacher: need 0 <= prior_full <= prior_zero, got {self.prior_full} and {self.prior_zero}")

    def encoder_of(self, view: str) -> Tuple[str, int]:
        return self.view_encoders.get(view, (self.encoder, self.layer))


class TokenEncoder:
    """Token vectors from a local encoder folder, through the same layers the aligner uses (strided windows)."""

    def __init__(self, name: str, layer: int, vocab: Vocab):
        from ..encoders import check_encoder_folder, quiet_transformers
        from ..models.aligner_model import build_aligner_model
        from ..models.span_getters import configure_wordpiece_strided_spans

        folder = check_encoder_folder(name, "build-teacher")
        n_layers = srsly.read_json(folder / "config.json").get("num_hidden_layers")
        if n_layers is not None and not 1 <= layer <= n_layers:
            raise ValueError(f"build-teacher: layer {layer} requested but {folder} has only {n_layers} layers "
                             "(a higher layer would add randomly initialised layers)")
        self.model = build_aligner_model(str(folder), configure_wordpiece_strided_spans(128, 96), layer=layer)
        with quiet_transformers():
            self.model.initialize(X=[Doc(vocab, words=["initialize"])])

    def encode(self, docs: Sequence[Doc]) -> List[numpy.ndarray]:
        out = self.model.predict(list(docs))
        return [self.model.ops.to_numpy(v).astype("float32") for v in out]


def sentence_ids(doc: Doc) -> numpy.ndarray:
    """Sentence index of every token (one sentence if the Doc has no boundaries)."""
    ids = numpy.zeros(len(doc), dtype="int64")
    if doc.has_annotation("SENT_START"):
        for k, sent in enumerate(doc.sents):
            ids[sent.start:sent.end] = k
    return ids


def teacher_matrix(
    target: Doc, source: Doc, vectors: Dict[str, Tuple[numpy.ndarray, numpy.ndarray]], settings: TeacherSettings,
    span_pairs: Sequence[SpanPair] = (),
) -> numpy.ndarray:
    """The teacher for one pair, from each semantic view's (target, source) token vectors."""
    n_t, n_s = len(target), len(source)
    prior, allowed = positional_prior(n_t, n_s, settings.prior_full, settings.prior_zero)
    views = {"prior": prior}
    w = settings.weights
    if w.get("sentence", 0):
        t, s = vectors["sentence"]
        views["sentence"] = sentence_view(t, s, sentence_ids(target), sentence_ids(source))
    if w.get("phrase", 0):
        t, s = vectors["phrase"]
        views["phrase"] = phrase_view(t, s, settings.phrase_radius)
    if w.get("token", 0):
        t, s = vectors["token"]
        views["token"] = token_view(t, s, settings.context, settings.context, settings.context_weight)
    bias = span_bias(n_t, n_s, span_pairs, settings.span_bias) if span_pairs and settings.span_bias else None
    return fuse_views(views, w, allowed=allowed, bias=bias, n_iter=settings.sinkhorn_iterations,
                      temperature=settings.temperature)


def build_teacher_corpus(
    pairs: Iterable[Tuple[Doc, Doc]], settings: TeacherSettings, vocab: Vocab,
    span_pairs: Optional[Dict[int, Sequence[SpanPair]]] = None,
) -> Iterator[Doc]:
    """Yield target Docs with `_.source` and `_.teacher` for (source, target) Doc pairs, in batches."""
    encoders: Dict[Tuple[str, int], TokenEncoder] = {}
    views_needed = [v for v in ("sentence", "phrase", "token") if settings.weights.get(v, 0)]
    for view in views_needed:
        key = settings.encoder_of(view)
        if key not in encoders:
            encoders[key] = TokenEncoder(key[0], key[1], vocab)
    batch: List[Tuple[int, Doc, Doc]] = []
    for index, (source, target) in enumerate(pairs):
        batch.append((index, source, target))
        if len(batch) == settings.batch_size:
            yield from _teacher_batch(batch, settings, encoders, views_needed, span_pairs or {})
            batch = []
    if batch:
        yield from _teacher_batch(batch, settings, encoders, views_needed, span_pairs or {})


def _teacher_batch(batch, settings, encoders, views_needed, span_pairs) -> Iterator[Doc]:
    targets = [t for _, _, t in batch]
    sources = [s for _, s, _ in batch]
    encoded = {key: enc.encode(targets + sources) for key, enc in encoders.items()}
    n = len(batch)
    for k, (index, source, target) in enumerate(batch):
        if not len(target) or not len(source):
            raise ValueError(f"build-teacher: pair {index} has an empty side ({len(source)} source, {len(target)} target tokens)")
        vectors = {}
        for view in views_needed:
            vecs = encoded[settings.encoder_of(view)]
            vectors[view] = (vecs[k], vecs[n + k])
        teacher = teacher_matrix(target, source, vectors, settings, span_pairs.get(index, ()))
        target._.source = source
        target._.teacher = teacher.astype("float16")
        yield target


def read_document_pairs(source_dir: Path, target_dir: Path, pattern: str = "*.txt") -> List[Tuple[str, str, str]]:
    """(name, source text, target text) for same-named files; a file present on one side only is an error."""
    source_dir, target_dir = Path(source_dir), Path(target_dir)
    for folder in (source_dir, target_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"build-teacher: {folder} is not a folder")
    src = {p.name: p for p in source_dir.glob(pattern)}
    tgt = {p.name: p for p in target_dir.glob(pattern)}
    only_src, only_tgt = sorted(set(src) - set(tgt)), sorted(set(tgt) - set(src))
    if only_src or only_tgt:
        raise ValueError(
            f"build-teacher: unmatched documents: {len(only_src)} only in {source_dir} (e.g. {only_src[:3]}), "
            f"{len(only_tgt)} only in {target_dir} (e.g. {only_tgt[:3]})"
        )
    if not src:
        raise ValueError(f"build-teacher: no {pattern} files in {source_dir}")
    return [
        (name, src[name].read_text(encoding="utf8").strip(), tgt[name].read_text(encoding="utf8").strip())
        for name in sorted(src)
    ]


def read_span_pairs(path: Path, names: Sequence[str], sources: Sequence[Doc], targets: Sequence[Doc]) -> Dict[int, List[SpanPair]]:
    """Manually mapped spans, jsonl lines {"doc": name, "source": [start, end], "target": [start, end]}
    in character offsets, as token ranges per pair index (spans are expanded to whole tokens)."""
    index = {name: i for i, name in enumerate(names)}
    index.update({Path(name).stem: i for i, name in enumerate(names)})  # "case1" or "case1.txt"
    result: Dict[int, List[SpanPair]] = {}
    for n, row in enumerate(srsly.read_jsonl(path), start=1):
        try:
            i = index[row["doc"]]
            s = sources[i].char_span(*row["source"], alignment_mode="expand")
            t = targets[i].char_span(*row["target"], alignment_mode="expand")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{n}: bad span mapping ({err!r})") from None
        if s is None or t is None:
            raise ValueError(f"{path}:{n}: span offsets do not fall on the document text")
        result.setdefault(i, []).append(((t.start, t.end), (s.start, s.end)))
    return result


def make_tokenizers(source_lang: str, target_lang: str) -> Tuple[Language, Language]:
    """Blank pipelines with a sentencizer, for raw documents (the sentence view needs boundaries)."""
    import spacy

    nlps = []
    for lang in (source_lang, target_lang):
        nlp = spacy.blank(lang)
        nlp.add_pipe("sentencizer")
        nlps.append(nlp)
    return nlps[0], nlps[1]
