"""`span_projector`: carry annotated source spans onto the translation through `doc._.alignment`."""
import warnings
from typing import Callable, Dict, Iterable, List, Optional

import numpy
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import filter_spans

from ..alignment.projection import decode_span, project_membership, row_stochastic
from ..pairs import register_extensions, spans_of


@Language.factory(
    "span_projector",
    assigns=["doc.spans", "doc._.unprojected"],
    requires=["doc._.alignment", "doc._.source"],
    default_config={
        "source_spans_key": None,
        "output_key": "projected",
        "threshold": 0.1,
        "max_gap": 1,
        "temperature": 2.0,
        "support_spans_key": None,
        "support_same_label": True,
        "support_label_map": {},
        "support_mode": "bridge",
        "set_ents": False,
        "scorer": {"@scorers": "spacy-clinalign.projection_scorer.v1"},
    },
    default_score_weights={"proj_char_f": 1.0, "proj_strict_f": 0.0, "proj_char_p": None, "proj_char_r": None,
                           "proj_strict_p": None, "proj_strict_r": None, "proj_per_type": None},
)
def make_span_projector(
    nlp: Language, name: str, source_spans_key: Optional[str], output_key: str, threshold: float, max_gap: int,
    temperature: float, support_spans_key: Optional[str], support_same_label: bool, support_label_map: Dict[str, str],
    support_mode: str, set_ents: bool, scorer: Optional[Callable],
) -> "SpanProjector":
    return SpanProjector(
        nlp.vocab, name, source_spans_key=source_spans_key, output_key=output_key, threshold=threshold,
        max_gap=max_gap, temperature=temperature, support_spans_key=support_spans_key,
        support_same_label=support_same_label, support_label_map=support_label_map, support_mode=support_mode,
        set_ents=set_ents, scorer=scorer,
    )


class SpanProjector(Pipe):
    """Project each source span (from `doc._.source.ents`, or `doc._.source.spans[source_spans_key]`).

    Each target token's row of the alignment becomes a distribution over source tokens (softmax of the
    dot products / `temperature`); its share inside the source span is its score. The longest run of
    tokens scoring >= `threshold`, or inside a `support_spans_key` span (e.g. from bio_ner_cnn, of the
    same label if `support_same_label`, after renaming NER labels with `support_label_map`, e.g.
    {"DISEASE": "DIS"}; with `support_mode` "bridge", the default, support only fills gaps between passing
    tokens, while "extend" also widens the span's edges), bridging up to `max_gap` tokens, becomes the projected span in
    `doc.spans[output_key]` with the label, kb_id and extension values of its source span, plus
    `_.source_span` and `_.score`. Source spans with no token above threshold go to `doc._.unprojected`
    as dicts (span, best_score, best_token). Nested and overlapping source spans project independently.
    Defaults (threshold 0.1, temperature 2.0, one gap token) are the best one-gap setting found by
    bench/projection_sweep.py on the MultiClinAI es-en dev pairs with the distilled e5 aligner.
    """

    def __init__(
        self, vocab, name: str = "span_projector", *, source_spans_key: Optional[str] = None,
        output_key: str = "projected", threshold: float = 0.1, max_gap: int = 1, temperature: float = 2.0,
        support_spans_key: Optional[str] = None, support_same_label: bool = True,
        support_label_map: Optional[Dict[str, str]] = None, support_mode: str = "bridge", set_ents: bool = False,
        scorer: Optional[Callable] = None,
    ):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"{name}: threshold must be in (0, 1], got {threshold}")
        if max_gap < 0:
            raise ValueError(f"{name}: max_gap must be >= 0, got {max_gap}")
        if temperature <= 0:
            raise ValueError(f"{name}: temperature must be > 0, got {temperature}")
        if support_mode not in ("bridge", "extend"):
            raise ValueError(f"{name}: support_mode must be 'bridge' or 'extend', got {support_mode!r}")
        register_extensions()
        self.vocab = vocab
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {
            "source_spans_key": source_spans_key, "output_key": output_key, "threshold": threshold,
            "max_gap": max_gap, "temperature": temperature, "support_spans_key": support_spans_key,
            "support_same_label": support_same_label, "support_label_map": dict(support_label_map or {}),
            "support_mode": support_mode, "set_ents": set_ents,
        }

    def source_spans(self, source: Doc) -> List[Span]:
        try:
            return spans_of(source, self.cfg["source_spans_key"], required=True)
        except ValueError as err:
            raise ValueError(f"{self.name}: source_spans_key: {err}") from None

    def _support(self, doc: Doc, label: str) -> Optional[numpy.ndarray]:
        key = self.cfg["support_spans_key"]
        if key is None:
            return None
        spans = spans_of(doc, None if key == "ents" else key)  # "ents": NER support from doc.ents
        mask = numpy.zeros(len(doc), dtype=bool)
        label_map = self.cfg["support_label_map"]
        for span in spans:
            if not self.cfg["support_same_label"] or label_map.get(span.label_, span.label_) == label:
                mask[span.start:span.end] = True
        return mask

    def __call__(self, doc: Doc) -> Doc:
        source = doc._.source
        alignment = doc._.alignment
        if source is None or alignment is None:
            raise ValueError(
                f"{self.name}: the Doc has no `_.source` or `_.alignment`; put clinical_aligner before "
                "span_projector and build pairs with spacy_clinalign.make_pair"
            )
        if (alignment.n_target, alignment.n_source) != (len(doc), len(source)):
            raise ValueError(
                f"{self.name}: the alignment is {alignment.n_target} x {alignment.n_source} but the pair has "
                f"{len(doc)} target and {len(source)} source tokens"
            )
        rows = row_stochastic(alignment.scores().dot(), self.cfg["temperature"]) if len(doc) and len(source) else None
        skip = numpy.array([t.is_space for t in doc], dtype=bool)
        projected: List[Span] = []
        unprojected: List[Dict] = []
        for src_span in self.source_spans(source):
            if rows is None:
                unprojected.append({"span": src_span, "best_score": 0.0, "best_token": None})
                continue
            scores = project_membership(rows, src_span.start, src_span.end)
            decoded = decode_span(scores, self.cfg["threshold"], self.cfg["max_gap"],
                                  self._support(doc, src_span.label_), skip, self.cfg["support_mode"])
            if decoded is None:
                best = int(scores.argmax())
                unprojected.append({"span": src_span, "best_score": float(scores[best]), "best_token": best})
                continue
            span = Span(doc, decoded.start, decoded.end, label=src_span.label_, kb_id=src_span.kb_id_)
            _copy_span_extensions(src_span, span)
            span._.source_span = src_span
            span._.score = decoded.score
            projected.append(span)
        doc.spans[self.cfg["output_key"]] = projected
        doc._.unprojected = unprojected
        if self.cfg["set_ents"]:
            kept = filter_spans(projected)
            if len(kept) < len(projected):
                warnings.warn(
                    f"{self.name}: {len(projected) - len(kept)} overlapping projected spans are not in doc.ents "
                    f"(they stay in doc.spans[{self.cfg['output_key']!r}])", UserWarning,
                )
            doc.ents = kept
        return doc

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, float]:
        kwargs.setdefault("spans_key", self.cfg["output_key"])
        return super().score(examples, **kwargs)


def _copy_span_extensions(source_span: Span, target_span: Span) -> None:
    """Copy values of Span extensions set on the source span (stored in its Doc's user_data) to the target."""
    skip = {"source_span", "score"}
    for key, value in list(source_span.doc.user_data.items()):
        if (
            isinstance(key, tuple) and len(key) == 4 and key[0] == "._." and key[1] not in skip
            and key[2] == source_span.start_char and key[3] == source_span.end_char
        ):
            target_span.doc.user_data[("._.", key[1], target_span.start_char, target_span.end_char)] = value
