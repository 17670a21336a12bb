"""`bio_ner_cnn`: transformer + CNN BIO tagger (MultiClinNER, Appendix B).

Each label gets its own O/B/I distribution per token, so mentions of different labels may overlap
(SPACCC's diseases, procedures and symptoms do); constrained Viterbi decoding per label never emits an
I that does not continue a span. Spans go to `doc.ents` (overlaps across labels resolved, longest
first) or, with `spans_key`, to `doc.spans[spans_key]` with overlaps kept. `doc._.bio_probs` holds
each label's (n_tokens, 3) probabilities for O, B and I, which span_projector can use as support.
"""
from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import filter_spans
from spacy.vocab import Vocab
from spacy_transformers.layers.transformer_model import TransformerModel
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ..models.safe_shim import has_wordpieces
from ..pairs import register_extensions, spans_of
from .bio_decoding import B, I, tags_to_spans, viterbi_bio

# closing bracket / quote -> its opener: kept at a span's end when the opener is inside the span
CLOSERS = {")": "(", "]": "[", "}": "{", "»": "«", "”": "“", "’": "‘", '"': '"', "'": "'"}
DEFAULT_CNN_MODEL = Config().from_str(
    """
[model]
@architectures = "spacy-clinalign.CNNTagger.v1"
width = 1024
window_size = 2
depth = 2
maxout_pieces = 2
dropout = 0.1
nO = null

[model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "*"

[model.tok2vec.pooling]
@layers = "reduce_mean.v1"
"""
)["model"]


@Language.factory(
    "bio_ner_cnn",
    assigns=["doc.ents", "doc.spans", "doc._.bio_probs"],
    default_config={
        "model": DEFAULT_CNN_MODEL,
        "spans_key": None,
        "trim_end_words": [],
        "trim_end_punct": False,
        "scorer": {"@scorers": "spacy-clinalign.ner_scorer.v1"},
    },
    default_score_weights={"ner_char_f": 0.5, "ner_strict_f": 0.5, "ner_char_p": None, "ner_char_r": None,
                           "ner_strict_p": None, "ner_strict_r": None, "ner_per_type": None},
)
def make_bio_ner_cnn(nlp: Language, name: str, model: Model, spans_key: Optional[str], scorer: Optional[Callable],
                     trim_end_words: List[str], trim_end_punct: bool) -> "BioNerCnn":
    return BioNerCnn(nlp.vocab, model, name, spans_key=spans_key, scorer=scorer, trim_end_words=trim_end_words,
                     trim_end_punct=trim_end_punct)


class BioNerCnn(TrainablePipe):
    """BIO tagger with one O/B/I head per label; see the module docstring."""

    def __init__(self, vocab: Vocab, model: Model, name: str = "bio_ner_cnn", *, spans_key: Optional[str] = None,
                 scorer: Optional[Callable] = None, trim_end_words: Iterable[str] = (),
                 trim_end_punct: bool = False):
        """trim_end_words / trim_end_punct: a decoded span loses trailing tokens that are one of these words
        (compared lower-cased) or punctuation (a closing bracket or quote whose opener is inside the span is
        kept). Mentions almost never end in a preposition, conjunction or article, but a tagger whose I run
        stops one word short of a mention's head leaves one there ("estudio inmunohistoquímico de"). A
        decoding setting, read from the config; the probabilities in `doc._.bio_probs` are not changed."""
        register_extensions()
        self.trim_end_words = frozenset(word.lower() for word in trim_end_words)
        self.trim_end_punct = bool(trim_end_punct)
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {"labels": [], "spans_key": spans_key}

    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    def add_label(self, label: str) -> int:
        if label in self.cfg["labels"]:
            return 0
        if self.model.has_dim("nO") and self.model.get_dim("nO"):
            raise ValueError(f"{self.name}: cannot add label {label!r} after the model is initialized")
        self.cfg["labels"].append(label)
        return 1

    def _gold_spans(self, doc: Doc) -> List[Span]:
        return spans_of(doc, self.cfg["spans_key"])

    def _write(self, doc: Doc, spans: List[Span]) -> None:
        key = self.cfg["spans_key"]
        if key is None:
            doc.ents = filter_spans(spans)
        else:
            doc.spans[key] = spans

    # -- inference -------------------------------------------------------------------------------
    def _probs(self, scores: numpy.ndarray) -> numpy.ndarray:
        """(n_tokens, n_labels, 3) softmax per label."""
        s = self.model.ops.to_numpy(scores).reshape(len(scores), len(self.labels), 3)
        s = s - s.max(axis=2, keepdims=True)
        e = numpy.exp(s)
        return e / e.sum(axis=2, keepdims=True)

    def _outside(self, n_tokens: int) -> numpy.ndarray:
        """(n_tokens, n_labels, 3) certainty of O: the result for tokens the encoder cannot see."""
        probs = numpy.zeros((n_tokens, len(self.labels), 3), dtype="float32")
        probs[:, :, 0] = 1.0
        return probs

    def _has_wordpieces(self, doc: Doc) -> bool:
        """False for Docs the transformer gets no wordpiece from (whitespace, zero-width or combining
        characters only): spacy-transformers fails on them, and they hold no mention."""
        for node in self.model.walk():  # an inline transformer: ask its tokenizer
            if isinstance(node, TransformerModel) and node.attrs.get("has_transformer"):
                return has_wordpieces(node.tokenizer, doc.text)
        # a listener: the upstream transformer component has encoded the Doc already
        trf_data = doc._.get("trf_data") if Doc.has_extension("trf_data") else None
        if trf_data is not None:
            return bool(trf_data.align.data.size)
        return any(not token.is_space for token in doc)

    def predict(self, docs: Iterable[Doc]) -> List[numpy.ndarray]:
        """Per Doc, (n_tokens, n_labels, 3) O/B/I probabilities. Docs without wordpieces and whitespace
        tokens are O with certainty, so they never start or join a span."""
        docs = list(docs)
        probs = [self._outside(len(doc)) for doc in docs]
        todo = [i for i, doc in enumerate(docs) if len(doc) and self._has_wordpieces(doc)]
        if todo:
            for i, scores in zip(todo, self.model.predict([docs[i] for i in todo])):
                probs[i] = self._probs(scores)
                spaces = [token.i for token in docs[i] if token.is_space]
                probs[i][spaces] = self._outside(len(spaces))
        return probs

    def set_annotations(self, docs: Iterable[Doc], probs: List[numpy.ndarray]) -> None:
        for doc, p in zip(docs, probs):
            spans = []
            bio_probs = {}
            for k, label in enumerate(self.labels):
                bio_probs[label] = p[:, k, :].astype("float32")
                for start, end in tags_to_spans(viterbi_bio(p[:, k, :])):
                    end = self._trimmed_end(doc, start, end)
                    if end > start:
                        spans.append(Span(doc, start, end, label=label))
            doc._.bio_probs = bio_probs
            self._write(doc, spans)

    def _trimmed_end(self, doc: Doc, start: int, end: int) -> int:
        """The span's end after dropping trailing `trim_end_words` and (with `trim_end_punct`) punctuation."""
        while end > start:
            token = doc[end - 1]
            if token.lower_ in self.trim_end_words:
                end -= 1
            elif self.trim_end_punct and token.is_punct and not self._closes_inside(doc, start, end):
                end -= 1
            else:
                break
        return end

    @staticmethod
    def _closes_inside(doc: Doc, start: int, end: int) -> bool:
        opener = CLOSERS.get(doc[end - 1].text)
        return opener is not None and any(t.text == opener for t in doc[start:end - 1])

    # -- training --------------------------------------------------------------------------------
    def _gold_tags(self, eg: Example) -> numpy.ndarray:
        """(n_predicted_tokens, n_labels) tag ids, gold spans mapped onto the predicted tokenization.
        One BIO sequence per label cannot hold two overlapping spans of that label (SPACCC nests some, e.g. a
        test inside a longer procedure): the longest of them is tagged, as `filter_spans` keeps it, instead of
        a nested span's B cutting the outer span in two."""
        tags = numpy.zeros((len(eg.predicted), len(self.labels)), dtype="int64")
        index = {label: k for k, label in enumerate(self.labels)}
        gold = [s for s in self._gold_spans(eg.reference) if s.label_ in index]
        aligned = eg.get_aligned_spans_y2x(gold, allow_overlap=True)
        for label, k in index.items():
            for span in filter_spans([s for s in aligned if s.label_ == label]):
                tags[span.start, k] = B
                tags[span.start + 1:span.end, k] = I
        return tags

    def get_loss(self, examples: Iterable[Example], scores: List) -> Tuple[float, List]:
        """Cross-entropy of each label's O/B/I softmax against the gold tags; gradient per Doc."""
        examples = list(examples)
        validate_examples(examples, "BioNerCnn.get_loss")
        n_tokens = max(sum(len(eg.predicted) for eg in examples), 1)
        loss, grads = 0.0, []
        for eg, s in zip(examples, scores):
            p = self._probs(s)
            gold = self._gold_tags(eg)
            onehot = numpy.eye(3, dtype="float32")[gold]  # (n, L, 3)
            loss -= float(numpy.log(numpy.clip((p * onehot).sum(axis=2), 1e-12, 1.0)).sum())
            d = ((p - onehot) / n_tokens).reshape(len(p), -1).astype("float32")
            grads.append(self.model.ops.asarray2f(d))
        return loss / n_tokens, grads

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd: Optional[Optimizer] = None,
               losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = [eg for eg in examples if len(eg.predicted)]
        if not examples:
            return losses
        validate_examples(examples, "BioNerCnn.update")
        set_dropout_rate(self.model, drop)
        scores, backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_scores = self.get_loss(examples, scores)
        backprop(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
                   labels: Optional[List[str]] = None) -> None:
        """Labels come from the gold spans of the examples unless given."""
        validate_get_examples(get_examples, "BioNerCnn.initialize")
        if labels is None:
            found = sorted({s.label_ for eg in get_examples() for s in self._gold_spans(eg.reference)})
        else:
            found = list(labels)
        for label in found:
            self.add_label(label)
        if not self.labels:
            where = "doc.ents" if self.cfg["spans_key"] is None else f"doc.spans[{self.cfg['spans_key']!r}]"
            raise ValueError(f"{self.name}: no entity labels found in the training data ({where} is empty everywhere)")
        self.model.get_ref("output_layer").set_dim("nO", 3 * len(self.labels))
        sample = [eg.predicted for eg in islice(get_examples(), 10) if len(eg.predicted)]
        if not sample:
            sample = [Doc(self.vocab, words=["initialize"])]
        self.model.initialize(X=sample)

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, object]:
        kwargs.setdefault("spans_key", self.cfg["spans_key"])
        return super().score(examples, **kwargs)

