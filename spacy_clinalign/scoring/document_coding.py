"""Document coding metrics in the CodiEsp shared task's two styles.

CodiEsp-D (document level): each document's predicted codes are ranked by their best score over the
document's mentions. MAP: per document, AP = sum over ranks r holding a gold code of precision@r, divided
by the number of gold codes (all of them, ranked or not); the mean over every gold document (one with no
prediction scores 0). P/R/F1: micro over (document, code) pairs, of the codes kept (not NIL; a mention
under the NIL threshold proposes no code).

CodiEsp-X style (mention level): a predicted (document, code, evidence span) is correct when the span
overlaps (shares at least one character with) a gold mention of the same document carrying that code.
Matching is one-to-one, predictions in document order, each taking the first overlapping unmatched gold
mention with its code, so a gold mention is credited once and duplicates lower precision.
P = correct / predictions, R = matched gold mentions / gold mentions.

Both are computed at the exact-code and 3-character category levels (`linking.codes.at_level`)."""
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ..linking.codes import at_level

LEVELS = ("exact", "category")


@dataclass(frozen=True)
class CodedSpan:
    """A mention (gold or predicted) with its code; `offsets` are (start, end) character fragments."""
    doc_id: str
    code: str
    offsets: Tuple[Tuple[int, int], ...]
    score: float = 1.0


def rank_document_codes(spans: Iterable[CodedSpan]) -> Dict[str, List[Tuple[str, float]]]:
    """Per document: its distinct codes with their best score, best first (ties in first-seen order)."""
    best: Dict[str, Dict[str, float]] = {}
    for span in spans:
        codes = best.setdefault(span.doc_id, {})
        if span.code not in codes or span.score > codes[span.code]:
            codes[span.code] = span.score
    return {doc: sorted(codes.items(), key=lambda kv: -kv[1]) for doc, codes in best.items()}


def _prf(correct_pred: int, n_pred: int, correct_gold: int, n_gold: int) -> Dict[str, float]:
    p = correct_pred / n_pred if n_pred else 0.0
    r = correct_gold / n_gold if n_gold else 0.0
    return {"p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0}


def average_precision(ranking: Sequence[str], gold: Set[str]) -> float:
    if not gold:
        return 0.0
    hits, total, seen = 0, 0.0, set()
    for rank, code in enumerate(ranking, 1):
        if code in gold and code not in seen:
            seen.add(code)
            hits += 1
            total += hits / rank
    return total / len(gold)


def _collapse(codes: Iterable[str], level: str) -> List[str]:
    return list(dict.fromkeys(at_level(c, level) for c in codes))


def score_document_codes(gold: Mapping[str, Iterable[str]], ranked: Mapping[str, Sequence[Tuple[str, float]]],
                         kept: Mapping[str, Iterable[str]]) -> Dict[str, Dict[str, float]]:
    """CodiEsp-D. `gold`: doc -> gold codes (normalised); `ranked`: doc -> (code, score) best first (every
    candidate considered); `kept`: doc -> the codes the system asserts (above the NIL threshold).
    Documents outside `gold` are an error: they would silently add false positives or be dropped."""
    unknown = sorted((set(ranked) | set(kept)) - set(gold))
    if unknown:
        raise ValueError(f"document coding: {len(unknown)} predicted documents have no gold entry, e.g. {unknown[:3]}")
    out = {}
    for level in LEVELS:
        ap_sum, tp, n_pred, n_gold = 0.0, 0, 0, 0
        for doc, codes in gold.items():
            gold_set = set(_collapse(codes, level))
            ranking = _collapse((c for c, _ in ranked.get(doc, ())), level)
            ap_sum += average_precision(ranking, gold_set)
            asserted = set(_collapse(kept.get(doc, ()), level))
            tp += len(asserted & gold_set)
            n_pred += len(asserted)
            n_gold += len(gold_set)
        out[level] = {"map": ap_sum / len(gold) if gold else 0.0, **_prf(tp, n_pred, tp, n_gold),
                      "documents": len(gold), "predicted": n_pred, "gold": n_gold}
    return out


def _overlaps(a: Tuple[Tuple[int, int], ...], b: Tuple[Tuple[int, int], ...]) -> bool:
    return any(min(e1, e2) > max(s1, s2) for s1, e1 in a for s2, e2 in b)


def score_mention_codes(gold: Sequence[CodedSpan], predicted: Sequence[CodedSpan],
                        documents: Optional[Iterable[str]] = None) -> Dict[str, Dict[str, float]]:
    """CodiEsp-X style, one-to-one (see the module docstring); `predicted` holds only asserted codes.
    `documents`: the scored documents (default: those with gold mentions); a prediction outside them is an error."""
    scored = set(documents) if documents is not None else {g.doc_id for g in gold}
    unknown = sorted({p.doc_id for p in predicted} - scored)
    if unknown:
        raise ValueError(f"mention coding: {len(unknown)} predicted documents are not in the scored set, e.g. {unknown[:3]}")
    out = {}
    for level in LEVELS:
        by_doc: Dict[str, List[Tuple[int, CodedSpan]]] = {}
        for i, g in enumerate(gold):
            by_doc.setdefault(g.doc_id, []).append((i, g))
        matched: Set[int] = set()
        correct = 0
        for p in sorted(predicted, key=lambda s: (s.doc_id, s.offsets)):
            code = at_level(p.code, level)
            for i, g in by_doc.get(p.doc_id, ()):
                if i not in matched and at_level(g.code, level) == code and _overlaps(p.offsets, g.offsets):
                    matched.add(i)
                    correct += 1
                    break
        out[level] = {**_prf(correct, len(predicted), len(matched), len(gold)),
                      "predicted": len(predicted), "gold": len(gold)}
    return out


def format_coding_table(rows: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]) -> str:
    """Markdown: one line per (system, level) with CodiEsp-D MAP / P / R / F1 and mention-level P / R / F1.
    `rows[system]` = {"document": score_document_codes(...), "mention": score_mention_codes(...)}."""
    head = ["system", "level", "doc MAP", "doc P", "doc R", "doc F1", "mention P", "mention R", "mention F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, result in rows.items():
        for level in LEVELS:
            d, m = result["document"][level], result["mention"][level]
            cells = [system, level, *(f"{d[k]:.3f}" for k in ("map", "p", "r", "f")),
                     *(f"{m[k]:.3f}" for k in ("p", "r", "f"))]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
