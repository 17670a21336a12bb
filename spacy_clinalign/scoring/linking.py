"""Per-mention linking metrics as the ICD retrieval paper reports them, at exact-code, category and
chapter level: top-1 precision / recall / F1 (a mention with no prediction, e.g. BM25 finding nothing or
NIL, lowers recall only), P@k (hits in the top k / k), R@k (gold within the top k) and MAP@10
(AP@K = sum of Precision@k at each hit / min(|gold|, K)). At category and chapter level a ranked list is
first collapsed to distinct categories (chapters), so one family counted five times cannot inflate P@k
or push AP above 1."""
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from spacy.training import Example
from spacy.util import registry

from ..linking.codes import LEVELS, at_level, matches, normalize_code
from ..linking.queries import format_query
from ..pairs import span_key, spans_of

NIL = "NIL"
# Evaluation systems of the linking table: name -> (retrieval channels, rerank)
SYSTEMS = {"bm25": ("bm25", False), "bi": ("dense", False), "bi+cross": ("dense", True), "hybrid": ("hybrid", False),
           "hybrid+cross": ("hybrid", True)}

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


def score_linking(examples: Iterable[Example], spans_key: Optional[str] = None, **kwargs) -> Dict[str, float]:
    """Gold = reference mentions with a kb_id (codes joined by `+` allowed); predictions = the predicted
    doc's candidates for the span at the same characters (none found = no prediction)."""
    golds, rankings, predictions = [], [], []
    for eg in examples:
        links = eg.predicted._.icd_links or {}
        predicted_ids = {(s.start_char, s.end_char, s.label_): s.kb_id_ for s in spans_of(eg.predicted, spans_key)}
        for span in spans_of(eg.reference, spans_key):
            if not span.kb_id_ or span.kb_id_ == NIL:
                continue
            gold = tuple(normalize_code(c) for c in span.kb_id_.split("+"))
            candidates = links.get(span_key(span)) or []
            kb_id = predicted_ids.get((span.start_char, span.end_char, span.label_))
            golds.append(gold)
            rankings.append([c["code"] for c in candidates])
            predictions.append(kb_id if kb_id and kb_id != NIL else None)
    if not golds:
        return {}
    return flatten(evaluate_rankings(golds, rankings, predictions))


@registry.scorers("spacy-clinalign.linking_scorer.v1")
def make_linking_scorer() -> Callable:
    return score_linking


def evaluate_linking_systems(nlp, mentions, systems: Sequence[str], k: int = 10, batch_size: int = 256,
                             retrieval_weight: Optional[float] = None) -> Dict:
    """The paper's table over gold mentions: one row per system (see SYSTEMS), each run through the
    pipeline's own icd_linker engine, with mentions/s. Reranked systems mix in the retrieval score as the
    pipeline does (its `rerank_retrieval_weight`), unless `retrieval_weight` is given."""
    pipe = nlp.get_pipe("icd_linker")
    linker = pipe._require()
    if retrieval_weight is None:
        retrieval_weight = pipe.cfg.get("rerank_retrieval_weight", 0.0)
    queries = [format_query(m.text) for m in mentions]
    golds = [m.codes for m in mentions]
    rows, timings = {}, {}
    for system in systems:
        if system not in SYSTEMS:
            raise ValueError(f"unknown system {system!r}; expected one of {sorted(SYSTEMS)}")
        channels, rerank = SYSTEMS[system]
        if rerank and linker.cross_encoder is None:
            raise ValueError(f"system {system!r} needs a pipeline with a cross-encoder")
        start = time.perf_counter()
        ranked = []
        for i in range(0, len(queries), batch_size):
            ranked.extend(linker.link(queries[i:i + batch_size], k=k, rerank=rerank, channels=channels,
                                      retrieval_weight=retrieval_weight))
        timings[system] = len(queries) / (time.perf_counter() - start)
        rows[system] = evaluate_rankings(golds, [[c.code for c in per] for per in ranked])
    return {"rows": rows, "mentions_per_s": timings, "n": len(mentions)}
