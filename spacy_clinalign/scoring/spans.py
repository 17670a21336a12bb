"""Strict and character-level span P/R/F1, per label and micro-averaged (the MultiClinAI metrics).

Strict: a predicted span counts only if a gold span has the same start character, end character and
label. P = matches / predicted spans, R = matches / gold spans, summed over documents.

Character level: for each document and label, the set of character offsets covered by predicted spans
and the set covered by gold spans (overlapping or nested spans of one label are merged: a character is
counted once per label). Overlap = size of the intersection. P = sum of overlaps / sum of predicted
characters, R = sum of overlaps / sum of gold characters, over documents (and labels, for the micro
average). Every character in [start, end) counts, inner spaces included. A near-miss boundary thus
earns partial credit in proportion to the characters it gets right.
"""
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Set, Tuple

from spacy.tokens import Span
from spacy.training import Example
from spacy.util import registry

SpanKey = Tuple[int, int, str]


class SpanCounts:
    def __init__(self):
        self.strict = defaultdict(lambda: [0, 0, 0])  # label -> [tp, n_pred, n_gold]
        self.chars = defaultdict(lambda: [0, 0, 0])  # label -> [overlap, pred chars, gold chars]

    def add(self, predicted: Iterable[SpanKey], gold: Iterable[SpanKey]) -> None:
        """Add one document's spans as (start_char, end_char, label)."""
        predicted, gold = set(predicted), set(gold)
        for label in {s[2] for s in predicted | gold}:
            p = {s for s in predicted if s[2] == label}
            g = {s for s in gold if s[2] == label}
            st = self.strict[label]
            st[0] += len(p & g)
            st[1] += len(p)
            st[2] += len(g)
            pc, gc = _chars(p), _chars(g)
            ch = self.chars[label]
            ch[0] += len(pc & gc)
            ch[1] += len(pc)
            ch[2] += len(gc)

    def scores(self, prefix: str) -> Dict[str, object]:
        out: Dict[str, object] = {}
        per_type: Dict[str, Dict[str, float]] = {}
        totals = {"strict": [0, 0, 0], "char": [0, 0, 0]}
        for kind, table in (("strict", self.strict), ("char", self.chars)):
            for label, (hit, n_pred, n_gold) in table.items():
                per_type.setdefault(label, {}).update(_prf(hit, n_pred, n_gold, f"{kind}_"))
                for k, v in enumerate((hit, n_pred, n_gold)):
                    totals[kind][k] += v
            out.update({f"{prefix}{k}": v for k, v in _prf(*totals[kind], f"{kind}_").items()})
        out[f"{prefix}per_type"] = per_type
        return out


def _chars(spans: Set[SpanKey]) -> Set[int]:
    covered: Set[int] = set()
    for start, end, _ in spans:
        covered.update(range(start, end))
    return covered


def _prf(hit: int, n_pred: int, n_gold: int, prefix: str) -> Dict[str, float]:
    p = hit / n_pred if n_pred else 0.0
    r = hit / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {f"{prefix}p": p, f"{prefix}r": r, f"{prefix}f": f}


def span_keys(spans: Iterable[Span]) -> List[SpanKey]:
    return [(s.start_char, s.end_char, s.label_) for s in spans]


def score_spans(examples: Iterable[Example], spans_key: Optional[str] = "projected", prefix: str = "proj_",
                **kwargs) -> Dict[str, object]:
    """Predicted `doc.spans[spans_key]` against the reference's `spans[spans_key]` (or its ents if it has
    no such group); with spans_key None, predicted ents against gold ents.
    Keys: {prefix}strict_p/r/f, {prefix}char_p/r/f and {prefix}per_type."""
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
