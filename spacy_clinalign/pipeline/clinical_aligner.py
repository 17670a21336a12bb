"""`clinical_aligner`: word alignment between a target Doc and its source Doc (`doc._.source`).

Both Docs are encoded independently by the component's own transformer (it must encode the source
too, so it cannot listen to a shared `transformer` pipe); the cosine similarity of their pooled token
vectors is the alignment matrix, from which links are extracted.
"""
import warnings
from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy
import srsly
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example
from spacy.vocab import Vocab
from spacy.training import validate_examples
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ..alignment.blockwise import estimate_pair_bytes
from ..alignment.matrix import EXTRACTION_METHODS, PairScores, pair_scores
from ..alignment.document_prior import document_band_rectangles
from ..models import span_getters as _span_getters  # noqa: F401  (registers sentence_spans.v1)
from ..models.heap import release_free_heap
from ..models.length_buckets import predict_by_length
from ..models.quantize import check_quantize, set_quantization
from ..alignment.relink import alignment_from_scores
from ..alignment.losses import gold_link_nll, row_column_cosine_loss, student_cosine
from ..encoders import check_encoder_folder, quiet_transformers
from ..pairs import register_extensions
from ..scoring.alignment import score_alignment
from ..token_arrays import has_text

DEFAULT_ALIGNER_MODEL = Config().from_str(
    """
[model]
@architectures = "spacy-clinalign.AlignerModel.v1"
name = "clinalign-e5-small"
layer = 8
tokenizer_config = {"use_fast": true}
transformer_config = {}
mixed_precision = false
grad_scaler_config = {}

[model.get_spans]
@span_getters = "spacy-clinalign.sentence_spans.v1"
window = 128
stride = 96
max_wordpieces = null
"""
)["model"]

MISSING_SOURCE_POLICIES = ("error", "warn", "ignore")


def unique_docs(docs: List[Doc]) -> Tuple[List[Doc], List[int]]:
    """Each Doc object once (spacy-transformers indexes a batch by token and fails on a repeated Doc: one
    source shared by two translations, or the same pair twice), and where each input went."""
    position: Dict[int, int] = {}
    unique: List[Doc] = []
    index = []
    for doc in docs:
        if id(doc) not in position:
            position[id(doc)] = len(unique)
            unique.append(doc)
        index.append(position[id(doc)])
    return unique, index


def _has_text(doc: Doc) -> bool:
    """Empty and whitespace-only Docs are not encoded (they have no wordpieces): they get zero matrices."""
    return has_text(doc)


@Language.factory(
    "clinical_aligner",
    assigns=["doc._.alignment"],
    requires=["doc._.source"],
    default_config={
        "model": DEFAULT_ALIGNER_MODEL,
        "method": "argmax",
        "threshold": 0.001,
        "temperature": 1.0,
        "sinkhorn_iterations": 0,
        "store_matrix": True,
        "max_matrix_gib": 4.0,
        "on_missing_source": "warn",
        "document_prior": True,
        "prior_margin": 0,
        "prior_skip_z": 1.0,
        "distill_weight": 1.0,
        "supervised_weight": 1.0,
        "supervised_temperature": 0.05,
        "quantize": "none",
        "scorer": {"@scorers": "spacy-clinalign.alignment_scorer.v1"},
    },
    default_score_weights={"align_aer": None, "align_p": None, "align_r": None, "align_f": 1.0},
)
def make_clinical_aligner(
    nlp: Language,
    name: str,
    model: Model,
    method: str,
    threshold: float,
    temperature: float,
    sinkhorn_iterations: int,
    store_matrix: bool,
    max_matrix_gib: Optional[float],
    on_missing_source: str,
    document_prior: bool,
    prior_margin: int,
    prior_skip_z: float,
    distill_weight: float,
    supervised_weight: float,
    supervised_temperature: float,
    quantize: str,
    scorer: Optional[Callable],
) -> "ClinicalAligner":
    return ClinicalAligner(
        nlp.vocab,
        model,
        name,
        method=method,
        threshold=threshold,
        temperature=temperature,
        sinkhorn_iterations=sinkhorn_iterations,
        store_matrix=store_matrix,
        max_matrix_gib=max_matrix_gib,
        on_missing_source=on_missing_source,
        document_prior=document_prior,
        prior_margin=prior_margin,
        prior_skip_z=prior_skip_z,
        distill_weight=distill_weight,
        supervised_weight=supervised_weight,
        supervised_temperature=supervised_temperature,
        quantize=quantize,
        scorer=scorer,
    )


class ClinicalAligner(TrainablePipe):
    """Align each target Doc with `doc._.source`; writes an `Alignment` to `doc._.alignment`.

    method: link extraction, `argmax` (mutual argmax of cosines), `itermax` (SimAlign's, on cosines) or
        `threshold` (awesome-align's: cells whose row- and column-softmax of dot/temperature both exceed
        `threshold`). Link probabilities are that softmax pair's geometric mean.
    sinkhorn_iterations: > 0 balances exp(dot/temperature) with Sinkhorn-Knopp; links are then extracted
        from the balanced matrix (`threshold` compares it with `threshold` directly).
    document_prior: for pairs whose both sides hold more than one sentence, align sentences first (a
        monotone programme allowing 1-2 / 2-1 merges and skips) and keep word links inside the aligned
        sentence blocks, widened by `prior_margin` tokens; `prior_skip_z` is how many standard deviations
        above the average sentence pair a pair must be to be aligned rather than skipped.
    distill_weight, supervised_weight, supervised_temperature: training. A pair whose reference has a
        teacher matrix (`_.teacher`, from build-teacher) adds distill_weight x the row/column cosine
        distillation loss; a pair whose reference has gold links (`_.alignment`, from a gold reader) adds
        supervised_weight x the row/column log-likelihood of its gold cells (softmax of cosine /
        supervised_temperature). Mixed corpora train both at once.
    quantize: `int8` runs inference through an int8 copy of the encoder (dynamically quantized nn.Linear,
        CPU only; models/quantize.py). The float32 weights are what is saved and trained; a training step
        with `int8` is refused.
    store_matrix: keep the float32 cosine matrix (4 bytes a cell) on the Alignment. Off, links are
        extracted from cosine rows computed block by block, and no (target x source) array is made.
    max_matrix_gib: warn before aligning a pair whose matrix work would need more than this many GiB
        (None: never warn).
    on_missing_source: a Doc without `_.source` raises (`error`), or gets `_.alignment = None` with a
        warning (`warn`, the default, so `spacy evaluate` can run: see `score`) or silently (`ignore`).
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "clinical_aligner",
        *,
        method: str = "argmax",
        threshold: float = 0.001,
        temperature: float = 1.0,
        sinkhorn_iterations: int = 0,
        store_matrix: bool = True,
        max_matrix_gib: Optional[float] = 4.0,
        on_missing_source: str = "warn",
        document_prior: bool = True,
        prior_margin: int = 0,
        prior_skip_z: float = 1.0,
        distill_weight: float = 1.0,
        supervised_weight: float = 1.0,
        supervised_temperature: float = 0.05,
        quantize: str = "none",
        scorer: Optional[Callable] = score_alignment,
    ):
        if method not in EXTRACTION_METHODS:
            raise ValueError(f"clinical_aligner: unknown method {method!r}; choose one of {EXTRACTION_METHODS}")
        if on_missing_source not in MISSING_SOURCE_POLICIES:
            raise ValueError(
                f"clinical_aligner: on_missing_source must be one of {MISSING_SOURCE_POLICIES}, got {on_missing_source!r}"
            )
        if temperature <= 0:
            raise ValueError(f"clinical_aligner: temperature must be > 0, got {temperature}")
        if isinstance(sinkhorn_iterations, bool) or not isinstance(sinkhorn_iterations, int) or sinkhorn_iterations < 0:
            raise ValueError(
                f"clinical_aligner: sinkhorn_iterations must be an integer >= 0 (0 = no balancing), got {sinkhorn_iterations!r}"
            )
        if max_matrix_gib is not None and not max_matrix_gib > 0:
            raise ValueError(f"clinical_aligner: max_matrix_gib must be > 0 (or null for no limit), got {max_matrix_gib!r}")
        if distill_weight < 0 or supervised_weight < 0 or distill_weight + supervised_weight == 0:
            raise ValueError("clinical_aligner: distill_weight and supervised_weight must be >= 0, not both 0; "
                             f"got {distill_weight} and {supervised_weight}")
        if supervised_temperature <= 0:
            raise ValueError(f"clinical_aligner: supervised_temperature must be > 0, got {supervised_temperature}")
        if prior_margin < 0:
            raise ValueError(f"clinical_aligner: prior_margin must be >= 0, got {prior_margin}")
        check_quantize(quantize, "clinical_aligner")
        register_extensions()
        self.vocab = vocab
        self.model = model
        set_quantization(model, quantize)
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {
            "method": method,
            "threshold": threshold,
            "temperature": temperature,
            "sinkhorn_iterations": sinkhorn_iterations,
            "store_matrix": store_matrix,
            "max_matrix_gib": max_matrix_gib,
            "on_missing_source": on_missing_source,
            "document_prior": document_prior,
            "prior_margin": prior_margin,
            "prior_skip_z": prior_skip_z,
            "distill_weight": distill_weight,
            "supervised_weight": supervised_weight,
            "supervised_temperature": supervised_temperature,
            "quantize": quantize,
        }

    # -- inference -------------------------------------------------------------------------------
    def _source_of(self, doc: Doc) -> Optional[Doc]:
        source = doc._.source
        if source is None:
            policy = self.cfg["on_missing_source"]
            problem = (
                f"{self.name}: the Doc {doc.text[:40]!r} has no `_.source`, so it cannot be aligned. "
                "Build pairs with spacy_clinalign.make_pair(source_doc, target_text, nlp)."
            )
            if policy == "error":
                raise ValueError(problem)
            if policy == "warn":  # one message for all Docs, so Python shows it once rather than per Doc
                warnings.warn(
                    f"{self.name}: a Doc has no `_.source`, so its `_.alignment` is set to None. Build pairs "
                    "with spacy_clinalign.make_pair(source_doc, target_text, nlp).", UserWarning,
                )
        elif not isinstance(source, Doc):
            raise TypeError(f"{self.name}: `doc._.source` must be a spaCy Doc, got {type(source).__name__}")
        return source

    def predict(self, docs: Iterable[Doc]) -> List[Optional[PairScores]]:
        """PairScores (cosine matrix target x source, plus vector norms) per Doc; None where it has no source."""
        docs = list(docs)
        sources = [self._source_of(doc) for doc in docs]
        todo = [i for i, (d, s) in enumerate(zip(docs, sources)) if s is not None and _has_text(d) and _has_text(s)]
        scores: List[Optional[PairScores]] = [
            None if s is None else PairScores.zeros(len(d), len(s)) for d, s in zip(docs, sources)
        ]
        if not todo:
            return scores
        for i in todo:
            self._check_memory(docs[i], sources[i])
        batch, index = unique_docs([docs[i] for i in todo] + [sources[i] for i in todo])
        cfg = self.cfg
        set_quantization(self.model, cfg.get("quantize", "none"))  # cfg may change after construction
        vectors = predict_by_length(self.model.predict, batch)
        for k, i in enumerate(todo):
            # The cosine matrix is only built when it is kept; otherwise links come from cosine row blocks.
            pair = pair_scores(vectors[index[k]], vectors[index[len(todo) + k]], store=bool(cfg["store_matrix"]))
            if cfg.get("document_prior", False):
                # A union of rectangles; cells outside get OUTSIDE_BAND, in place (or on the fly when not stored).
                band = document_band_rectangles(pair, docs[i], sources[i], margin=cfg.get("prior_margin", 0),
                                                skip_z=cfg.get("prior_skip_z", 1.0))
                if band is not None:
                    pair.restrict_to_band(band)
            scores[i] = pair
        return scores

    def _check_memory(self, doc: Doc, source: Doc) -> None:
        """Warn, before any work, when a pair's matrix would exceed `max_matrix_gib`."""
        limit = self.cfg.get("max_matrix_gib")
        if limit is None:
            return
        needed = estimate_pair_bytes(len(doc), len(source), self.cfg["store_matrix"], self.cfg["sinkhorn_iterations"])
        if needed > limit * 2**30:
            warnings.warn(
                f"{self.name}: the pair of {len(doc):,} target x {len(source):,} source tokens needs about "
                f"{needed / 2**30:.1f} GiB for its alignment matrix (store_matrix={self.cfg['store_matrix']}, "
                f"sinkhorn_iterations={self.cfg['sinkhorn_iterations']}), above max_matrix_gib={limit}. "
                "Set store_matrix = false (links are then extracted block by block, without the matrix) and "
                "sinkhorn_iterations = 0, split the document, or raise max_matrix_gib.",
                UserWarning,
            )

    def set_annotations(self, docs: Iterable[Doc], scores: List[Optional[PairScores]]) -> None:
        cfg = self.cfg
        for doc, pair in zip(docs, scores):
            if pair is None:
                doc._.alignment = None
                continue
            # `predict` has ruled out the cells outside the document prior's band (OUTSIDE_BAND), so links
            # and a stored matrix keep it, and so do links re-extracted later from the stored matrix.
            doc._.alignment = alignment_from_scores(
                pair, cfg["method"], cfg["threshold"], cfg["temperature"], cfg["sinkhorn_iterations"],
                store_matrix=cfg["store_matrix"], target=doc, source=doc._.source,
            )

    # -- set-up and evaluation --------------------------------------------------------------------
    def initialize(self, get_examples: Optional[Callable[[], Iterable[Example]]] = None, *, nlp=None) -> None:
        """Load the encoder from its local folder (never the hub) and check the configured layer exists."""
        transformer = self.model.layers[0]
        folder = check_encoder_folder(self.model.attrs["encoder_name"], self.name)
        layer = self.model.attrs.get("layer")
        if layer is not None:
            n_layers = srsly.read_json(folder / "config.json").get("num_hidden_layers")
            if n_layers is not None and layer > n_layers:
                raise ValueError(f"{self.name}: layer {layer} requested but {folder} has only {n_layers} layers")
        sample: List[Doc] = []
        if get_examples is not None:
            for eg in islice(get_examples(), 10):
                sample.append(eg.predicted)
        sample = [d for d in sample if len(d)] or [Doc(self.vocab, words=["initialize"])]
        transformer.attrs["name"] = str(folder)
        with quiet_transformers():
            self.model.initialize(X=sample)

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, float]:
        """Score alignments; examples built by `spacy evaluate` (which re-creates predicted Docs from the
        reference text, dropping `_.source`) are aligned here from the reference's source first."""
        examples = list(examples)
        missing = [eg for eg in examples if eg.predicted._.alignment is None and eg.reference._.source is not None]
        for eg in missing:
            eg.predicted._.source = eg.reference._.source
        if missing:
            docs = [eg.predicted for eg in missing]
            self.set_annotations(docs, self.predict(docs))
        return super().score(examples, **kwargs)

    # -- training: distillation of the frozen teacher ----------------------------------------------
    def _targets_of(self, eg: Example) -> Tuple[Optional[numpy.ndarray], Optional[numpy.ndarray]]:
        """(teacher matrix, gold link mask) of a training pair; at least one must be there."""
        teacher = eg.reference._.teacher
        source = eg.predicted._.source
        if source is None:
            raise ValueError(f"{self.name}: a training example's predicted Doc has no `_.source`")
        shape = (len(eg.predicted), len(source))
        gold_alignment = eg.reference._.alignment
        gold = None
        if gold_alignment is not None and gold_alignment.method == "gold":
            if (gold_alignment.n_target, gold_alignment.n_source) != shape:
                raise ValueError(f"{self.name}: gold links for a {gold_alignment.n_target} x {gold_alignment.n_source} "
                                 f"pair do not fit the example ({shape[0]} target x {shape[1]} source tokens)")
            gold = numpy.zeros(shape, dtype=bool)
            sure = gold_alignment.links[gold_alignment.sure]
            gold[sure[:, 0], sure[:, 1]] = True
        if teacher is None and gold is None:
            raise ValueError(
                f"{self.name}: a training example has no teacher matrix (`reference._.teacher`; build the corpus "
                "with `python -m spacy_clinalign build-teacher`) and no gold links (`reference._.alignment`, from "
                "a gold reader such as spacy-clinalign.ParallelCorpus.v1 on a binaryalign .jsonl or talp file)"
            )
        if teacher is not None and teacher.shape != shape:
            raise ValueError(
                f"{self.name}: teacher matrix {teacher.shape} does not fit the pair "
                f"({shape[0]} target x {shape[1]} source tokens)"
            )
        return teacher, gold

    def get_loss(self, examples: Iterable[Example], vectors: List) -> Tuple[float, List]:
        """Loss and gradient for the model's output: token vectors of the targets, then of the sources.

        Per pair: distill_weight x [(1 - row-wise cosine) + (1 - column-wise cosine)] between the
        student's cosine matrix and the teacher, plus supervised_weight x the gold-link log-likelihood
        loss; each part only where the pair has that target. Averaged over pairs.
        """
        import torch
        from thinc.api import torch2xp, xp2torch

        examples = list(examples)
        n = len(examples)
        if len(vectors) != 2 * n:
            raise ValueError(f"{self.name}: get_loss expects {2 * n} vector arrays (targets then sources), got {len(vectors)}")
        tensors = [xp2torch(v, requires_grad=True) for v in vectors]
        total = tensors[0].sum() * 0.0
        cfg = self.cfg
        for k, eg in enumerate(examples):
            teacher, gold = self._targets_of(eg)
            student = student_cosine(tensors[k], tensors[n + k])
            device = tensors[k].device
            if teacher is not None and cfg["distill_weight"] > 0:
                target = torch.as_tensor(numpy.asarray(teacher, dtype="float32"), device=device)
                total = total + cfg["distill_weight"] * row_column_cosine_loss(student, target)
            if gold is not None and cfg["supervised_weight"] > 0:
                mask = torch.as_tensor(gold, device=device)
                total = total + cfg["supervised_weight"] * gold_link_nll(student, mask, cfg["supervised_temperature"])
        total = total / max(n, 1)
        total.backward()
        grads = [
            torch2xp(t.grad) if t.grad is not None else self.model.ops.alloc2f(*t.shape) for t in tensors
        ]
        return float(total.detach()), grads

    def update(
        self, examples: Iterable[Example], *, drop: float = 0.0, sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One distillation step over the inline transformer (both sides of each pair pass through it)."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = [
            eg for eg in examples
            if eg.predicted._.source is not None and _has_text(eg.predicted) and _has_text(eg.predicted._.source)
        ]
        if not examples:
            return losses
        validate_examples(examples, "ClinicalAligner.update")
        set_quantization(self.model, self.cfg.get("quantize", "none"))  # int8 refuses training (models/quantize.py)
        set_dropout_rate(self.model, drop)
        batch, index = unique_docs([eg.predicted for eg in examples] + [eg.predicted._.source for eg in examples])
        vectors, backprop = self.model.begin_update(batch)
        loss, d_vectors = self.get_loss(examples, [vectors[k] for k in index])
        d_unique = [self.model.ops.alloc2f(*v.shape) for v in vectors]
        for k, d in zip(index, d_vectors):
            d_unique[k] += d
        backprop(d_unique)
        if sgd is not None:
            self.finish_update(sgd)
        del vectors, backprop, d_vectors, d_unique
        release_free_heap()  # the step's activations and gradients are freed: hand their pages back (models/heap.py)
        losses[self.name] += loss
        return losses

    def add_label(self, label: str) -> int:
        raise NotImplementedError(f"{self.name} has no labels")
