"""Strict and character-overlap span P/R/F1, per label and micro-averaged: the MultiClinAI shared task's
official metrics.

Strict: a predicted span counts only if a gold span has the same start character, end character and
label; one-to-one (duplicate predictions are dropped). P = matches / predicted spans, R = matches / gold
spans, summed over documents.

Character overlap (the official `char_*`): for each gold span, the best overlap F1 with any predicted span
of the same label in the same document (0 if none), where the overlap F1 of two spans is
2 * |shared characters| / (|gold| + |predicted|); R = the mean over gold spans. P = the same from each
predicted span's side, averaged over predicted spans. F1 = their harmonic mean. Every span weighs the same
whatever its length, and there is no one-to-one matching: two predictions may both take credit from one
gold span. Duplicate spans (same start, end and label) count once, as for strict.

`char_pooled_*` keeps our earlier measure for comparison only (never the headline): the characters
covered per label and document are pooled, P = shared / predicted characters, R = shared / gold
characters, so long spans weigh more.
"""
import warnings
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from spacy.tokens import Span
from spacy.training import Example
from spacy.util import registry

SpanKey = Tuple[int, int, str]


def overlap_f1(a: Tuple[int, int], b: Tuple[int, int]) -> float:
    """2 * shared characters / (len(a) + len(b)) for half-open character ranges."""
    shared = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    total = (a[1] - a[0]) + (b[1] - b[0])
    return 2 * shared / total if total else 0.0


def best_overlaps(spans: Sequence[SpanKey], others: Sequence[SpanKey]) -> List[float]:
    """For each span, its best overlap F1 with any span of `others` of the same label (0 if none)."""
    by_label: Dict[str, List[SpanKey]] = defaultdict(list)
    for other in others:
        by_label[other[2]].append(other)
    return [max((overlap_f1(s[:2], o[:2]) for o in by_label.get(s[2], ())), default=0.0) for s in spans]


class SpanCounts:
    def __init__(self):
        self.strict = defaultdict(lambda: [0, 0, 0])  # label -> [tp, n_pred, n_gold]
        self.char = defaultdict(lambda: [0.0, 0, 0.0, 0])  # label -> [sum best F1 of pred, n_pred, same of gold, n_gold]
        self.pooled = defaultdict(lambda: [0, 0, 0])  # label -> [overlap, pred chars, gold chars]

    def add(self, predicted: Iterable[SpanKey], gold: Iterable[SpanKey]) -> None:
        """Add one document's spans as (start_char, end_char, label)."""
        predicted, gold = sorted(set(predicted)), sorted(set(gold))
        for (_, _, label), score in zip(predicted, best_overlaps(predicted, gold)):
            self.char[label][0] += score
            self.char[label][1] += 1
        for (_, _, label), score in zip(gold, best_overlaps(gold, predicted)):
            self.char[label][2] += score
            self.char[label][3] += 1
        for label in {s[2] for s in predicted} | {s[2] for s in gold}:
            p = {s for s in predicted if s[2] == label}
            g = {s for s in gold if s[2] == label}
            st = self.strict[label]
            st[0] += len(p & g)
            st[1] += len(p)
            st[2] += len(g)
            pc, gc = _chars(p), _chars(g)
            ch = self.pooled[label]
            ch[0] += len(pc & gc)
            ch[1] += len(pc)
            ch[2] += len(gc)

    def scores(self, prefix: str) -> Dict[str, object]:
        """{prefix}strict_p/r/f, {prefix}char_p/r/f (official), {prefix}char_pooled_p/r/f and {prefix}per_type."""
        if not sum(n_gold for *_, n_gold in self.char.values()):
            warnings.warn("span scoring: the gold set has no spans, so recall and F1 are 0", stacklevel=2)
        out: Dict[str, object] = {}
        per_type: Dict[str, Dict[str, float]] = {}
        for kind, table in (("strict", self.strict), ("char_pooled", self.pooled)):
            total = [0, 0, 0]
            for label, (hit, n_pred, n_gold) in table.items():
                per_type.setdefault(label, {}).update(_prf(hit / n_pred if n_pred else 0.0,
                                                           hit / n_gold if n_gold else 0.0, f"{kind}_"))
                total = [t + v for t, v in zip(total, (hit, n_pred, n_gold))]
            hit, n_pred, n_gold = total
            out.update({f"{prefix}{k}": v for k, v in _prf(hit / n_pred if n_pred else 0.0,
                                                             hit / n_gold if n_gold else 0.0, f"{kind}_").items()})
        total_c = [0.0, 0, 0.0, 0]
        for label, (p_sum, n_pred, r_sum, n_gold) in self.char.items():
            per_type.setdefault(label, {}).update(_prf(p_sum / n_pred if n_pred else 0.0,
                                                       r_sum / n_gold if n_gold else 0.0, "char_"))
            total_c = [t + v for t, v in zip(total_c, (p_sum, n_pred, r_sum, n_gold))]
        p_sum, n_pred, r_sum, n_gold = total_c
        out.update({f"{prefix}{k}": v for k, v in _prf(p_sum / n_pred if n_pred else 0.0,
                                                         r_sum / n_gold if n_gold else 0.0, "char_").items()})
        out[f"{prefix}per_type"] = per_type
        return out


def _chars(spans: Set[SpanKey]) -> Set[int]:
    covered: Set[int] = set()
    for start, end, _ in spans:
        covered.update(range(start, end))
    return covered


def _prf(p: float, r: float, prefix: str) -> Dict[str, float]:
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {f"{prefix}p": p, f"{prefix}r": r, f"{prefix}f": f}


def span_keys(spans: Iterable[Span]) -> List[SpanKey]:
    return [(s.start_char, s.end_char, s.label_) for s in spans]


def score_spans(examples: Iterable[Example], spans_key: Optional[str] = "projected", prefix: str = "proj_",
                **kwargs) -> Dict[str, object]:
    """Predicted `doc.spans[spans_key]` against the reference's `spans[spans_key]` (or its ents if it has
    no such group); with spans_key None, predicted ents against gold ents.
    Keys: {prefix}strict_p/r/f, {prefix}char_p/r/f (official character overlap),
    {prefix}char_pooled_p/r/f (old pooled measure) and {prefix}per_type."""
    counts = SpanCounts()
    for eg in examples:
        if spans_key is None:
            gold, pred = eg.reference.ents, eg.predicted.ents
        else:
            gold = eg.reference.spans[spans_key] if spans_key in eg.reference.spans else eg.reference.ents
            pred = eg.predicted.spans[spans_key] if spans_key in eg.predicted.spans else []
        counts.add(span_keys(pred), span_keys(gold))
    return counts.scores(prefix)


@registry.scorers("spacy-clinalign.projection_scorer.v1")
def make_projection_scorer():
    return score_spans


def score_ner(examples: Iterable[Example], spans_key: Optional[str] = None, **kwargs) -> Dict[str, object]:
    """bio_ner_cnn's scorer: `score_spans` with the `ner_` prefix (module level, so pipelines pickle)."""
    return score_spans(examples, spans_key=spans_key, prefix="ner_")


@registry.scorers("spacy-clinalign.ner_scorer.v1")
def make_ner_scorer():
    return score_ner


def format_span_scores(scores: Dict, prefix: str = "proj_") -> str:
    """A per-label table of char and strict P/R/F1 from spaCy-style scores with keys `{prefix}...`."""
    lines = [f"{'label':<10} {'char P':>7} {'char R':>7} {'char F':>7} {'strict P':>9} {'strict R':>9} {'strict F':>9}"]
    rows = dict(sorted((scores.get(f"{prefix}per_type") or {}).items()))
    rows["micro"] = {k[len(prefix):]: v for k, v in scores.items() if k.startswith((f"{prefix}char", f"{prefix}strict"))}
    for label, r in rows.items():
        lines.append(f"{label:<10} {r['char_p']:>7.3f} {r['char_r']:>7.3f} {r['char_f']:>7.3f} "
                     f"{r['strict_p']:>9.3f} {r['strict_r']:>9.3f} {r['strict_f']:>9.3f}")
    return "\n".join(lines)


def evaluate_in_place(nlp, examples: List[Example], batch_size: int = 8,
                      keep_matrices: bool = True) -> Dict[str, object]:
    """`nlp.evaluate` without its copies: each example's predicted Doc is replaced by the processed one, so
    the predictions can be written out (`--pred-tsv`) after scoring. Same scores as `nlp.evaluate`.
    `keep_matrices=False` drops each pair's stored alignment matrix once the pipeline is done with it
    (span_projector reads it; links, spans and scores do not): on the 297 MultiClinAI dev pairs the
    matrices are 85 MiB that a projection run would otherwise hold to the end."""
    from spacy.scorer import Scorer

    for eg, doc in zip(examples, nlp.pipe([eg.predicted for eg in examples], batch_size=batch_size)):
        alignment = doc._.alignment if not keep_matrices and doc.has_extension("alignment") else None
        if alignment is not None:
            alignment.matrix = alignment.norms = None
        eg.predicted = doc
    return Scorer(nlp).score(examples)
