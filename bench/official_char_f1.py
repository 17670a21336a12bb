"""The MultiClinAI official character-overlap F1, computed from scratch (no spacy_clinalign import), to check
`evaluate-projection`'s `char_*` figures on the same predictions.

    python bench/official_char_f1.py ../shared/data/multiclinai/paired_es_en.dev.jsonl pred.tsv

Gold: each jsonl line's English tokens joined by single spaces, spans from its BIO tags; document name
`<file stem>-<line number>` (as `evaluate-projection --pred-tsv` writes it). Predictions: the shared-task TSV.
Per span: overlap F1 = 2 * shared characters / (gold length + predicted length); each gold span takes its best
over predictions of the same label and document (recall = mean over gold spans), each predicted span its best
over gold spans (precision = mean over predicted spans); F1 = harmonic mean. Also prints strict F1."""
import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path


def gold_spans(path):
    docs, texts = {}, {}
    stem = Path(path).stem
    with open(path, encoding="utf8") as f:
        for line_no, line in enumerate(f, 1):
            row = json.loads(line)
            name = f"{stem}-{line_no}"
            offsets, pos = [], 0
            for token in row["en_tokens"]:
                offsets.append((pos, pos + len(token)))
                pos += len(token) + 1
            texts[name] = " ".join(row["en_tokens"])
            spans, current = [], None
            for (start, end), tag in zip(offsets, row["en_tags"]):
                if tag.startswith("B-") or (tag.startswith("I-") and (current is None or current[2] != tag[2:])):
                    if current:
                        spans.append(tuple(current))
                    current = [start, end, tag[2:]]
                elif tag.startswith("I-"):
                    current[1] = end
                else:
                    if current:
                        spans.append(tuple(current))
                    current = None
            if current:
                spans.append(tuple(current))
            docs[name] = set(spans)
    return docs, texts


def predicted_spans(path, texts):
    docs = defaultdict(set)
    with open(path, encoding="utf8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            start, end = int(row["start_span"]), int(row["end_span"])
            text = texts[row["filename"]]
            assert " ".join(text[start:end].split()) == row["text"], (row, text[start:end])
            docs[row["filename"]].add((start, end, row["label"]))
    return docs


def best(span, others):
    scores = [2 * max(0, min(span[1], o[1]) - max(span[0], o[0])) / (span[1] - span[0] + o[1] - o[0])
              for o in others if o[2] == span[2]]
    return max(scores, default=0.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("gold_jsonl")
    parser.add_argument("pred_tsv")
    args = parser.parse_args()
    gold, texts = gold_spans(args.gold_jsonl)
    pred = predicted_spans(args.pred_tsv, texts)
    assert set(pred) <= set(gold), "predictions for unknown documents"
    rows = defaultdict(lambda: [0.0, 0, 0.0, 0, 0])  # label -> [sum P, n pred, sum R, n gold, exact]
    for name, g in gold.items():
        p = pred.get(name, set())
        for s in p:
            rows[s[2]][0] += best(s, g)
            rows[s[2]][1] += 1
        for s in g:
            rows[s[2]][2] += best(s, p)
            rows[s[2]][3] += 1
            rows[s[2]][4] += s in p
    rows["micro"] = [sum(r[i] for r in list(rows.values())) for i in range(5)]
    print(f"{'label':<8} {'char P':>7} {'char R':>7} {'char F':>7} {'strict F':>9} {'gold':>6} {'pred':>6}")
    for label in sorted(rows, key=lambda x: (x == "micro", x)):
        sp, npred, sr, ngold, exact = rows[label]
        p, r = sp / npred if npred else 0.0, sr / ngold if ngold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        sp_, sr_ = exact / npred if npred else 0.0, exact / ngold if ngold else 0.0
        sf = 2 * sp_ * sr_ / (sp_ + sr_) if sp_ + sr_ else 0.0
        print(f"{label:<8} {p:>7.3f} {r:>7.3f} {f:>7.3f} {sf:>9.3f} {ngold:>6} {npred:>6}")


if __name__ == "__main__":
    main()
