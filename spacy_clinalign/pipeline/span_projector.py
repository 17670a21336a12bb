"""`span_projector`: carry annotated source spans onto the translation through `doc._.alignment`."""
import warnings
from typing import Callable, Dict, Iterable, List, Optional

import numpy
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import filter_spans

from ..alignment.candidates import (SpanEvidence, blocked_edges, decode_candidates, is_punct_text, span_evidence,
                                    stop_words)
from ..alignment.noun_phrases import modifier_ends
from ..alignment.matrix import softmax
from ..alignment.projection import DecodedSpan, decode_span, row_stochastic
from ..alignment.symmetrize import SYMMETRIZATIONS, directional_links, symmetrize
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
        "decoder": "candidates",
        "symmetrize": None,
        "max_length": 30,
        "beta": 1.0,
        "length_prior": 0.25,
        "max_spans": 1,
        "directions": "both",
        "exclusive": True,
        "min_score": 0.4,
        "length_unit": "chars",
        "source_lang": None,
        "target_lang": None,
        "keep_head_nouns": True,
        "scorer": {"@scorers": "spacy-clinalign.projection_scorer.v1"},
    },
    default_score_weights={"proj_char_f": 1.0, "proj_strict_f": 0.0, "proj_char_p": None, "proj_char_r": None,
                           "proj_strict_p": None, "proj_strict_r": None, "proj_per_type": None},
)
def make_span_projector(
    nlp: Language, name: str, source_spans_key: Optional[str], output_key: str, threshold: float, max_gap: int,
    temperature: float, support_spans_key: Optional[str], support_same_label: bool, support_label_map: Dict[str, str],
    support_mode: str, set_ents: bool, decoder: str, symmetrize: Optional[str], max_length: int, beta: float,
    length_prior: float, max_spans: int, directions: str, exclusive: bool, min_score: float, length_unit: str,
    source_lang: Optional[str], target_lang: Optional[str], keep_head_nouns: bool, scorer: Optional[Callable],
) -> "SpanProjector":
    return SpanProjector(
        nlp.vocab, name, source_spans_key=source_spans_key, output_key=output_key, threshold=threshold,
        max_gap=max_gap, temperature=temperature, support_spans_key=support_spans_key,
        support_same_label=support_same_label, support_label_map=support_label_map, support_mode=support_mode,
        set_ents=set_ents, decoder=decoder, symmetrize=symmetrize, max_length=max_length, beta=beta,
        length_prior=length_prior, max_spans=max_spans, directions=directions, exclusive=exclusive,
        min_score=min_score, length_unit=length_unit, source_lang=source_lang, target_lang=target_lang,
        keep_head_nouns=keep_head_nouns, scorer=scorer,
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
    as dicts (span, best_score, best_token, reason). Nested and overlapping source spans project independently.

    `decoder` "candidates" (alignment/candidates.py) instead scores target n-grams of up to `max_length`
    (or twice the source span's length, if more)
    tokens (and support spans, and noun chunks when the target is parsed) by an F-measure (`beta`) of the
    two alignment directions times a length-ratio prior (`length_prior`, on character lengths with
    `length_unit` "chars", else token counts), and keeps the best `max_spans` non-overlapping ones scoring at
    least `min_score` (else the source span goes to `doc._.unprojected` with reason "low_score"). With
    `directions` "both" it reads the mean of the target-to-source rows and the source-to-target columns;
    with `exclusive`, source spans of one label that do not overlap never share a target token (the loser
    re-decodes without it, or is unprojected with reason "target_taken"). Neither decoder lets a span start
    or end on punctuation (the candidate decoder: nor on a function word of `target_lang`, default the Doc's
    `is_stop`) unless the source span does (its edges are judged with `source_lang`). With `keep_head_nouns`
    and a `target_lang` that puts adjectives before the noun (English), a candidate does not end on such a
    modifier when a word follows it (alignment/noun_phrases.py). `symmetrize` (None: the
    soft rows; or "intersection", "union", "grow_diag_final") first turns both directions' argmax links into
    one link set.
    Defaults: the candidate decoder with threshold 0.1, temperature 2.0, beta 1, directions "both",
    exclusive, length_unit "chars", length_prior 0.25, min_score 0.4: the best setting of
    bench/projection_sweep.py on the `tune` half of the MultiClinAI es-en dev pairs with both the untrained
    e5 and the distilled aligner (untrained: strict F 0.830 / char F 0.921 vs 0.789 / 0.913 for the previous
    candidate defaults; bench/RESULTS.md). max_length 30 (was 10): with 10, a span of 11 or more target
    tokens could not be found and lost its first or last words; on the tune half 30, 45 and 60 give the same
    spans, untrained strict F 0.846 -> 0.865. The longest-run settings (threshold 0.1, temperature 2.0, one
    gap) were tuned with the distilled aligner; that decoder always reads the target-to-source rows.
    """

    def __init__(
        self, vocab, name: str = "span_projector", *, source_spans_key: Optional[str] = None,
        output_key: str = "projected", threshold: float = 0.1, max_gap: int = 1, temperature: float = 2.0,
        support_spans_key: Optional[str] = None, support_same_label: bool = True,
        support_label_map: Optional[Dict[str, str]] = None, support_mode: str = "bridge", set_ents: bool = False,
        decoder: str = "candidates", symmetrize: Optional[str] = None, max_length: int = 30, beta: float = 1.0,
        length_prior: float = 0.25, max_spans: int = 1, directions: str = "both", exclusive: bool = True,
        min_score: float = 0.4, length_unit: str = "chars", source_lang: Optional[str] = None, target_lang: Optional[str] = None,
        keep_head_nouns: bool = True, scorer: Optional[Callable] = None,
    ):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"{name}: threshold must be in (0, 1], got {threshold}")
        if max_gap < 0:
            raise ValueError(f"{name}: max_gap must be >= 0, got {max_gap}")
        if temperature <= 0:
            raise ValueError(f"{name}: temperature must be > 0, got {temperature}")
        if support_mode not in ("bridge", "extend"):
            raise ValueError(f"{name}: support_mode must be 'bridge' or 'extend', got {support_mode!r}")
        if decoder not in DECODERS:
            raise ValueError(f"{name}: decoder must be one of {DECODERS}, got {decoder!r}")
        if symmetrize is not None and symmetrize not in SYMMETRIZATIONS:
            raise ValueError(f"{name}: symmetrize must be None or one of {SYMMETRIZATIONS}, got {symmetrize!r}")
        if max_length < 1 or max_spans < 1:
            raise ValueError(f"{name}: max_length and max_spans must be >= 1, got {max_length} and {max_spans}")
        if beta <= 0 or length_prior < 0:
            raise ValueError(f"{name}: beta must be > 0 and length_prior >= 0, got {beta} and {length_prior}")
        if directions not in DIRECTIONS:
            raise ValueError(f"{name}: directions must be one of {DIRECTIONS}, got {directions!r}")
        if length_unit not in LENGTH_UNITS:
            raise ValueError(f"{name}: length_unit must be one of {LENGTH_UNITS}, got {length_unit!r}")
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"{name}: min_score must be in [0, 1], got {min_score}")
        register_extensions()
        self.vocab = vocab
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {
            "source_spans_key": source_spans_key, "output_key": output_key, "threshold": threshold,
            "max_gap": max_gap, "temperature": temperature, "support_spans_key": support_spans_key,
            "support_same_label": support_same_label, "support_label_map": dict(support_label_map or {}),
            "support_mode": support_mode, "set_ents": set_ents, "decoder": decoder, "symmetrize": symmetrize,
            "max_length": max_length, "beta": beta, "length_prior": length_prior, "max_spans": max_spans,
            "directions": directions, "exclusive": exclusive, "min_score": min_score, "length_unit": length_unit, "source_lang": source_lang, "target_lang": target_lang,
            "keep_head_nouns": keep_head_nouns,
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
        skip = numpy.array([t.is_space for t in doc], dtype=bool)
        weights = self._weights(doc, source, alignment, skip) if len(doc) and len(source) else None
        candidates = self.cfg["decoder"] == "candidates"
        src_spans = self.source_spans(source)
        decoded: Dict[int, List[DecodedSpan]] = {}
        evidence: Dict[int, SpanEvidence] = {}
        reasons: Dict[int, str] = {}
        if weights is not None:
            blocked = blocked_edges(doc, self.cfg["target_lang"])
            # a candidate may not end on a prenominal modifier a word follows ("bilateral pleural [effusion]")
            modifiers = (modifier_ends(doc, self.cfg["target_lang"], stop_words(self.cfg["target_lang"]))
                         if candidates and self.cfg["keep_head_nouns"] else numpy.zeros(len(doc), dtype=bool))
            colons = numpy.array([_ends_clause(t.text) for t in doc], dtype=bool)
            src_colons = numpy.array([_ends_clause(t.text) for t in source], dtype=bool)
            punct = numpy.array([t.is_punct or is_punct_text(t.text) for t in doc], dtype=bool)
            src_blocked = blocked_edges(source, self.cfg["source_lang"])
            src_punct = [t.is_punct or is_punct_text(t.text) for t in source]
            chunks = _noun_chunks(doc) if candidates else []
            chars = self.cfg["length_unit"] == "chars"
            offsets = numpy.array([(t.idx, t.idx + len(t)) for t in doc], dtype="int64").reshape(-1, 2) if chars else None

            def decode(k: int, taken: Optional[numpy.ndarray] = None, min_score: Optional[float] = None) -> List[DecodedSpan]:
                src_span = src_spans[k]
                ev = evidence[k]
                support = self._support(doc, src_span.label_)
                if candidates:
                    return decode_candidates(
                        ev, len(src_span), self.cfg["threshold"],
                        max(self.cfg["max_length"], 2 * len(src_span)),  # a long span is never cut by the limit
                        self.cfg["beta"],
                        self.cfg["length_prior"],
                        blocked_start=None if src_blocked[src_span.start] else blocked,
                        blocked_end=modifiers if src_blocked[src_span.end - 1] else blocked | modifiers,
                        skip=skip, extra=chunks + ([] if support is None else _runs(support)),
                        max_spans=self.cfg["max_spans"], taken=taken, min_score=self.cfg["min_score"] if min_score is None else min_score,
                        char_offsets=offsets, source_chars=len(src_span.text) if chars else None,
                        # a span does not run past a header's colon ("Chest X-ray: [decubitus study]") unless
                        # the source span does ("Intervenciones quirúrgicas: cataratas")
                        barriers=None if src_colons[src_span.start:src_span.end - 1].any() else colons,
                    )
                found = decode_span(ev.share, self.cfg["threshold"], self.cfg["max_gap"], support, skip,
                                    self.cfg["support_mode"])
                found = _trim(found, punct, src_punct[src_span.start], src_punct[src_span.end - 1]) if found else None
                return [found] if found is not None else []

            for k, src_span in enumerate(src_spans):
                evidence[k] = span_evidence(weights, weights, src_span.start, src_span.end)
                decoded[k] = decode(k)
                if not decoded[k] and candidates and self.cfg["min_score"] > 0 and decode(k, min_score=0.0):
                    reasons[k] = "low_score"
            if candidates and self.cfg["exclusive"]:
                reasons.update(self._make_exclusive(src_spans, decoded, decode, len(doc)))
        projected: List[Span] = []
        unprojected: List[Dict] = []
        for k, src_span in enumerate(src_spans):
            if weights is None:
                unprojected.append({"span": src_span, "best_score": 0.0, "best_token": None, "reason": "empty_pair"})
                continue
            if not decoded[k]:
                share = evidence[k].share
                best = int(share.argmax())
                unprojected.append({"span": src_span, "best_score": float(share[best]), "best_token": best,
                                    "reason": reasons.get(k, "no_aligned_target")})
                continue
            for found in decoded[k]:
                span = Span(doc, found.start, found.end, label=src_span.label_, kb_id=src_span.kb_id_)
                _copy_span_extensions(src_span, span)
                span._.source_span = src_span
                span._.score = found.score
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

    def _weights(self, doc: Doc, source: Doc, alignment, skip: numpy.ndarray) -> numpy.ndarray:
        """The (n_target, n_source) weights the decoders read: the soft target-to-source rows, or the
        symmetrised argmax links of both directions (whitespace tokens never linked). With `directions`
        "both" (soft rows, candidate decoder) the mean of the rows and the source-to-target columns (each
        source token's softmax over the target tokens): a soft symmetrisation, like averaging the two
        directions' posteriors (Liang et al. 2006). A target word whose row goes to another copy of its
        translation (a second "cardiaca" in the paragraph) is still chosen by the source word's column.
        The longest-run decoder keeps the rows: its threshold was tuned on them, and on the tune half the
        mean lowered its strict F (bench/RESULTS.md)."""
        logits = alignment.scores().dot()
        if self.cfg["symmetrize"] is not None:
            t2s, s2t = directional_links(logits, self.cfg["temperature"])
            links = symmetrize(t2s, s2t, self.cfg["symmetrize"])
            links[skip] = False
            links[:, [t.i for t in source if t.is_space]] = False
            return links.astype("float32")
        rows = row_stochastic(logits, self.cfg["temperature"])
        if self.cfg["directions"] == "target_to_source" or self.cfg["decoder"] != "candidates":
            return rows
        masked = numpy.where(skip[:, None], -numpy.inf, logits / self.cfg["temperature"])
        return (rows + softmax(masked, axis=0).astype("float32")) / 2

    def _make_exclusive(self, src_spans: List[Span], decoded: Dict[int, List[DecodedSpan]], decode,
                        n: int) -> Dict[int, str]:
        """`exclusive`: two source spans of one label that do not overlap each other never take the same
        target token. In the gold, same-label spans never overlap, but a repeated term (two mentions of
        "insuficiencia mitral") or an abbreviation after its long form ("bloqueo de rama izquierda (BRIHH)")
        otherwise sends both source spans to one target phrase. The most confident projections keep their
        tokens; a later one that collides re-decodes without them. Returns {index: "target_taken"} for the
        source spans left with no candidate."""
        order = sorted(decoded, key=lambda k: -max((d.score for d in decoded[k]), default=0.0))
        kept: List[int] = []
        reasons: Dict[int, str] = {}
        for k in order:
            if not decoded[k]:
                continue
            taken = numpy.zeros(n, dtype=bool)
            src = src_spans[k]
            for j in kept:
                other = src_spans[j]
                if other.label_ == src.label_ and (other.end <= src.start or other.start >= src.end):
                    for d in decoded[j]:
                        taken[d.start:d.end] = True
            if any(taken[d.start:d.end].any() for d in decoded[k]):
                decoded[k] = decode(k, taken)
                if not decoded[k]:
                    reasons[k] = "target_taken"
                    continue
            kept.append(k)
        return reasons

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


DECODERS = ("longest_run", "candidates")
DIRECTIONS = ("target_to_source", "both")
LENGTH_UNITS = ("tokens", "chars")


def _trim(found: DecodedSpan, punct: numpy.ndarray, keep_left: bool, keep_right: bool) -> Optional[DecodedSpan]:
    """Drop punctuation tokens at the span's edges unless the source span has punctuation on that edge."""
    start, end = found.start, found.end
    while not keep_left and start < end and punct[start]:
        start += 1
    while not keep_right and end > start and punct[end - 1]:
        end -= 1
    return DecodedSpan(start, end, found.score) if end > start else None


def _runs(mask: numpy.ndarray) -> List:
    """[start, end) of each run of True in mask."""
    out, start = [], None
    for i, flag in enumerate(list(mask) + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append((start, i))
            start = None
    return out


def _ends_clause(text: str) -> bool:
    """A token that closes a header or clause: "X-ray:", ":", "tests;"."""
    return text.endswith((":", ";"))


def _noun_chunks(doc: Doc) -> List:
    """Noun chunks as extra candidates, when the target Doc is parsed (no parser is ever run here)."""
    if not doc.has_annotation("DEP"):
        return []
    try:
        return [(c.start, c.end) for c in doc.noun_chunks]
    except (NotImplementedError, ValueError):  # a language without noun chunk rules
        return []
