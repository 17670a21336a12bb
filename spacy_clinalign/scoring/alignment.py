"""Alignment error rate (Och & Ney 2003) with sure/possible gold links, plus precision, recall and F1.

Corpus-level figures sum the counts over all sentence pairs before dividing (as awesome-align's and
SimAlign's evaluation scripts do):
    precision = |A & P| / |A|      recall = |A & S| / |S|      AER = 1 - (|A & S| + |A & P|) / (|A| + |S|)
where A = predicted links, S = sure gold links and P = sure + possible gold links.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Set, Tuple

from spacy.training import Example
from spacy.util import registry

Pair = Tuple[int, int]


@dataclass
class AlignmentCounts:
    predicted: int = 0
    sure: int = 0
    pred_and_sure: int = 0
    pred_and_possible: int = 0
    pairs: int = 0

    def add(self, predicted: Set[Pair], sure: Set[Pair], possible: Set[Pair]) -> None:
        """Add one sentence pair; `possible` may omit the sure links (they are always possible)."""
        possible = possible | sure
        self.pairs += 1
        self.predicted += len(predicted)
        self.sure += len(sure)
        self.pred_and_sure += len(predicted & sure)
        self.pred_and_possible += len(predicted & possible)

    def add_gold(self, predicted: Set[Pair], gold: Any) -> None:
        """Add one pair against a gold `Alignment` (its `sure` flags split sure from possible links)."""
        pairs = gold.pairs()
        self.add(predicted, {p for p, s in zip(pairs, gold.sure) if s}, set(pairs))

    def scores(self, prefix: str = "align_") -> Dict[str, float]:
        """P, R, F1 and AER. With no sentence pair, or no link predicted or gold, AER is 0/0: an error,
        never a perfect 0.0."""
        if not self.pairs:
            raise ValueError("alignment scores: no sentence pairs with a gold alignment to score (AER of empty data is undefined)")
        if not self.predicted + self.sure:
            raise ValueError(
                f"alignment scores: the {self.pairs} pairs have no predicted and no sure gold links, so AER is undefined"
            )
        p = self.pred_and_possible / self.predicted if self.predicted else 0.0
        r = self.pred_and_sure / self.sure if self.sure else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        denom = self.predicted + self.sure
        aer = 1.0 - (self.pred_and_sure + self.pred_and_possible) / denom
        return {f"{prefix}aer": aer, f"{prefix}p": p, f"{prefix}r": r, f"{prefix}f": f}


def score_link_sets(
    predictions: Iterable[Iterable[Pair]], golds: Iterable[Iterable[Tuple[int, int, bool]]], prefix: str = "align_"
) -> Dict[str, float]:
    """Score predicted (j, i) links against gold (j, i, sure) links, one list per sentence pair."""
    predictions, golds = list(predictions), list(golds)
    if len(predictions) != len(golds):
        raise ValueError(f"score_link_sets: {len(predictions)} predicted link lists but {len(golds)} gold ones")
    counts = AlignmentCounts()
    for pred, gold in zip(predictions, golds):
        gold = list(gold)
        counts.add(
            {tuple(x) for x in pred},
            {(j, i) for j, i, s in gold if s},
            {(j, i) for j, i, _ in gold},
        )
    return counts.scores(prefix)


def _predicted_links_in_reference(eg: Example) -> Set[Pair]:
    """Predicted (source_j, target_i) links, target indices mapped onto the reference tokenization."""
    alignment = eg.predicted._.alignment
    if alignment is None:
        return set()
    links = alignment.pairs()
    if len(eg.predicted) == len(eg.reference) and all(
        a.text == b.text for a, b in zip(eg.predicted, eg.reference)
    ):
        return set(links)
    x2y = eg.alignment.x2y
    mapped = set()
    for j, i in links:
        for ref_i in x2y[i].dataXd.tolist():
            mapped.add((j, int(ref_i)))
    return mapped


def score_alignment(examples: Iterable[Example], **kwargs: Any) -> Dict[str, Optional[float]]:
    """spaCy scorer: `predicted._.alignment` against the gold `reference._.alignment`.

    Examples whose reference has no gold alignment are skipped. Source tokenization must be shared
    (the reference's source Doc is the predicted one's), as readers and `make_pair` ensure. With no gold
    alignment at all (e.g. `spacy evaluate` on projection data) the scores are None, as spaCy's own
    scorers give for undefined scores, never 0.0.
    """
    counts = AlignmentCounts()
    for eg in examples:
        gold = eg.reference._.alignment
        if gold is None:
            continue
        counts.add_gold(_predicted_links_in_reference(eg), gold)
    if not counts.pairs or not counts.predicted + counts.sure:
        return {f"align_{k}": None for k in ("aer", "p", "r", "f")}
    return counts.scores("align_")


@registry.scorers("spacy-clinalign.alignment_scorer.v1")
def make_alignment_scorer() -> Callable[..., Dict[str, float]]:
    return score_alignment
