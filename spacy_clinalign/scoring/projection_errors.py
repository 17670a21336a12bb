"""Why a projected span misses its gold span: one category per error, so a decoder change can be judged
by which errors it removes, not only by its F1.

Within one document, predicted and gold spans (character offsets, so any tokenization compares) of the
same label that overlap form connected groups:
- 1 prediction, 1 gold, different offsets: a boundary error, named by its edges: `too_long_left` /
  `too_short_left` / `too_long_right` / `too_short_right` when one edge is off, `too_long` / `too_short`
  when both edges are off the same way, `shifted` when one edge is too long and the other too short;
- 1 gold, several predictions: `split`; several golds, 1 prediction: `merged`; several of both: `split_merged`.
A gold span with no same-label overlap is `wrong_label` when a prediction of another label (itself
without same-label gold) overlaps it, else `missing`; any remaining prediction is `spurious`.
Exact matches are not errors. Every gold and every prediction that is not an exact match is in one row.
"""
import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.training import Example

CharSpan = Tuple[int, int, str]  # (start_char, end_char, label)
CATEGORIES = (
    "missing", "spurious", "wrong_label", "too_long_left", "too_short_left", "too_long_right", "too_short_right",
    "too_long", "too_short", "shifted", "split", "merged", "split_merged",
)


@dataclass
class ProjectionError:
    category: str
    label: str  # the gold label (the predicted one for spurious)
    gold: List[CharSpan] = field(default_factory=list)
    predicted: List[CharSpan] = field(default_factory=list)
    doc_id: str = ""


def _overlap(a: CharSpan, b: CharSpan) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def boundary_category(predicted: CharSpan, gold: CharSpan) -> Optional[str]:
    """The edge error of one prediction against the one gold span it overlaps; None if they match."""
    left = "long" if predicted[0] < gold[0] else "short" if predicted[0] > gold[0] else None
    right = "long" if predicted[1] > gold[1] else "short" if predicted[1] < gold[1] else None
    if left is None and right is None:
        return None
    if left is None or right is None:
        return f"too_{left or right}_{'left' if left else 'right'}"
    return f"too_{left}" if left == right else "shifted"


def classify_spans(predicted: Iterable[CharSpan], gold: Iterable[CharSpan], doc_id: str = "") -> List[ProjectionError]:
    """The errors of one document's predicted spans against its gold spans (see the module docstring)."""
    pred = sorted(set(predicted))
    gold = sorted(set(gold))
    # union-find over same-label overlaps: nodes ("p", i) and ("g", j)
    parent: Dict[Tuple[str, int], Tuple[str, int]] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    linked_p, linked_g = set(), set()
    for i, p in enumerate(pred):
        for j, g in enumerate(gold):
            if p[2] == g[2] and _overlap(p, g):
                parent[find(("p", i))] = find(("g", j))
                linked_p.add(i)
                linked_g.add(j)
    groups: Dict[Tuple[str, int], Tuple[List[int], List[int]]] = defaultdict(lambda: ([], []))
    for i in linked_p:
        groups[find(("p", i))][0].append(i)
    for j in linked_g:
        groups[find(("g", j))][1].append(j)
    errors: List[ProjectionError] = []
    for ps, gs in groups.values():
        ps, gs = sorted(ps), sorted(gs)
        if len(ps) == 1 and len(gs) == 1:
            category = boundary_category(pred[ps[0]], gold[gs[0]])
            if category is None:
                continue
        else:
            category = "split" if len(gs) == 1 else "merged" if len(ps) == 1 else "split_merged"
        errors.append(ProjectionError(category, gold[gs[0]][2], [gold[j] for j in gs], [pred[i] for i in ps], doc_id))
    free_p = [i for i in range(len(pred)) if i not in linked_p]
    used_p = set()
    for j, g in enumerate(gold):
        if j in linked_g:
            continue
        others = [i for i in free_p if _overlap(pred[i], g)]
        if others:
            used_p.update(others)
            errors.append(ProjectionError("wrong_label", g[2], [g], [pred[i] for i in others], doc_id))
        else:
            errors.append(ProjectionError("missing", g[2], [g], [], doc_id))
    for i in free_p:
        if i not in used_p:
            errors.append(ProjectionError("spurious", pred[i][2], [], [pred[i]], doc_id))
    return sorted(errors, key=lambda e: min(s[0] for s in e.gold + e.predicted))


def classify_examples(examples: Iterable[Example], spans_key: str = "projected",
                      doc_ids: Optional[Sequence[str]] = None) -> List[ProjectionError]:
    """Errors of `predicted.spans[spans_key]` against the reference's `spans[spans_key]` (or its ents),
    document by document; rows carry `doc_ids[n]` (default: the example's 0-based position)."""
    errors: List[ProjectionError] = []
    for n, eg in enumerate(examples):
        gold_spans = eg.reference.spans[spans_key] if spans_key in eg.reference.spans else eg.reference.ents
        pred_spans = eg.predicted.spans[spans_key] if spans_key in eg.predicted.spans else []
        if eg.predicted.text != eg.reference.text:
            raise ValueError(f"classify_examples: example {n}: predicted and reference texts differ, so their "
                             "character offsets cannot be compared")
        errors.extend(classify_spans([(s.start_char, s.end_char, s.label_) for s in pred_spans],
                                     [(s.start_char, s.end_char, s.label_) for s in gold_spans],
                                     doc_ids[n] if doc_ids is not None else str(n)))
    return errors


def count_errors(errors: Iterable[ProjectionError]) -> Dict[str, Counter]:
    """label -> Counter(category -> number of error rows)."""
    counts: Dict[str, Counter] = defaultdict(Counter)
    for error in errors:
        counts[error.label][error.category] += 1
    return dict(counts)


def format_error_counts(errors: Iterable[ProjectionError]) -> str:
    """A label x category table of error counts (categories that never occur are left out), with totals."""
    counts = count_errors(errors)
    total = Counter()
    for c in counts.values():
        total.update(c)
    columns = [c for c in CATEGORIES if total[c]]
    width = max([len(c) for c in columns] + [5])
    lines = [f"{'label':<8}" + "".join(f" {c:>{width}}" for c in columns) + f" {'all':>{width}}"]
    for label, row in sorted(counts.items()) + [("all", total)]:
        lines.append(f"{label:<8}" + "".join(f" {row[c]:>{width}}" for c in columns) + f" {sum(row.values()):>{width}}")
    return "\n".join(lines)


def errors_to_tsv(errors: Iterable[ProjectionError], texts: Optional[Dict[str, str]] = None) -> str:
    """One row per error: doc_id, label, category, gold and predicted offsets ("start-end", several joined
    by ";") and, with `texts` (doc_id -> text), the covered text of each side (" | " between spans)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["doc_id", "label", "category", "gold_offsets", "predicted_offsets", "predicted_labels",
                     "gold_text", "predicted_text"])
    for e in errors:
        text = (texts or {}).get(e.doc_id)
        writer.writerow([
            e.doc_id, e.label, e.category,
            ";".join(f"{s}-{t}" for s, t, _ in e.gold), ";".join(f"{s}-{t}" for s, t, _ in e.predicted),
            ";".join(lab for _, _, lab in e.predicted),
            " | ".join(text[s:t] for s, t, _ in e.gold) if text is not None else "",
            " | ".join(text[s:t] for s, t, _ in e.predicted) if text is not None else "",
        ])
    return out.getvalue()
