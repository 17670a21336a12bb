"""Per-mention linking metrics as the ICD retrieval paper reports them, at exact-code, category and
chapter level: top-1 precision / recall / F1 (a mention with no prediction, e.g. BM25 finding nothing or
NIL, lowers recall only), P@k (hits in the top k / k), R@k (gold within the top k) and MAP@10
(AP@K = sum of Precision@k at each hit / min(|gold|, K)). At category and chapter level a ranked list is
first collapsed to distinct categories (chapters), so one family counted five times cannot inflate P@k
or push AP above 1."""
from typing import Dict, List, Optional, Sequence, Tuple

from .codes import LEVELS, at_level, matches

KS = (1, 3, 5, 10)


def _collapse(ranking: Sequence[str], level: str) -> List[str]:
    if level == "exact":
        return list(dict.fromkeys(ranking))
    seen, out = set(), []
    for code in ranking:
        key = at_level(code, level)
        if key not in seen:
            seen.add(key)
            out.append(code)
    return out


def _gold_keys(gold: Sequence[str], level: str) -> int:
    return len({at_level(g, level) if "-" not in g else g for g in gold})


def evaluate_rankings(golds: Sequence[Sequence[str]], rankings: Sequence[Sequence[str]],
                      predictions: Optional[Sequence[Optional[str]]] = None, ks: Sequence[int] = KS,
                      map_k: int = 10) -> Dict[str, Dict[str, float]]:
    """`golds[i]`: gold codes of mention i (normalised); `rankings[i]`: its ranked candidate codes;
    `predictions[i]`: its top-1 decision (default: the first candidate; None = no prediction)."""
    if len(golds) != len(rankings):
        raise ValueError(f"{len(golds)} gold mentions but {len(rankings)} rankings")
    if predictions is None:
        predictions = [r[0] if r else None for r in rankings]
    n = len(golds)
    report: Dict[str, Dict[str, float]] = {}
    for level in LEVELS:
        correct = predicted = 0
        p_at = {k: 0.0 for k in ks}
        r_at = {k: 0.0 for k in ks}
        ap_sum = 0.0
        for gold, ranking, pred in zip(golds, rankings, predictions):
            if pred is not None:
                predicted += 1
                correct += any(matches(pred, g, level) for g in gold)
            ranked = _collapse(ranking, level)
            # each gold code is found at most once, so a range gold (many codes match it) counts as one hit
            hits, unmatched = [], list(gold)
            for code in ranked:
                found_gold = next((g for g in unmatched if matches(code, g, level)), None)
                hits.append(found_gold is not None)
                if found_gold is not None:
                    unmatched.remove(found_gold)
            for k in ks:
                p_at[k] += sum(hits[:k]) / k
                r_at[k] += float(any(hits[:k]))
            found, precision_sum = 0, 0.0
            for rank, hit in enumerate(hits[:map_k], 1):
                if hit:
                    found += 1
                    precision_sum += found / rank
            ap_sum += precision_sum / max(1, min(_gold_keys(gold, level), map_k))
        p = correct / predicted if predicted else 0.0
        r = correct / n if n else 0.0
        row = {"p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0, "predicted": predicted, "n": n,
               f"map@{map_k}": ap_sum / n if n else 0.0}
        for k in ks:
            row[f"p@{k}"] = p_at[k] / n if n else 0.0
            row[f"r@{k}"] = r_at[k] / n if n else 0.0
        report[level] = row
    return report


def format_table(rows: Dict[str, Dict[str, Dict[str, float]]], ks: Sequence[int] = KS) -> str:
    """Markdown table: one line per (system, level)."""
    head = ["system", "level", "P", "R", "F1", *[f"P@{k}" for k in ks], *[f"R@{k}" for k in ks], "MAP@10", "no pred"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, report in rows.items():
        for level, m in report.items():
            cells = [system, level, *(f"{m[x]:.3f}" for x in ("p", "r", "f")),
                     *(f"{m[f'p@{k}']:.3f}" for k in ks), *(f"{m[f'r@{k}']:.3f}" for k in ks),
                     f"{m['map@10']:.3f}", str(int(m["n"] - m["predicted"]))]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def flatten(report: Dict[str, Dict[str, float]], prefix: str = "link_") -> Dict[str, float]:
    """{"link_exact_f": ..., "link_category_map@10": ...} for spaCy scores."""
    return {f"{prefix}{level}_{name}": value for level, row in report.items() for name, value in row.items()
            if name not in ("n", "predicted")}


def gold_and_ranked(pairs: Sequence[Tuple[Sequence[str], Sequence[str]]]):
    return [g for g, _ in pairs], [r for _, r in pairs]
