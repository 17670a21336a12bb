"""How much of the bi-encoder's own score to keep when reranking: `icd_linker`'s `rerank_retrieval_weight` w.

Retrieves the top k once and scores every (mention, candidate) pair with the reranker once, then ranks the
candidates by softmax((1 - w) * reranker logit + w * 20 * cosine) for each w and prints the linking table's
exact / category F1 and MAP@10 per w. Choose w on one corpus (e.g. DisTEMIST dev) and report on another.

    python bench/rerank_fusion.py PIPELINE ../shared/data/distemist-linking/dev [--weights 0 0.25 0.5 0.75 1]
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spacy  # noqa: E402

from spacy_clinalign.io.linking_mentions import read_mentions  # noqa: E402
from spacy_clinalign.linking.linker import rerank_probabilities  # noqa: E402
from spacy_clinalign.linking.queries import format_query  # noqa: E402
from spacy_clinalign.scoring.linking import evaluate_rankings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("mentions", nargs="+")
    parser.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    nlp = spacy.load(args.pipeline)
    pipe = nlp.get_pipe("icd_linker")
    linker = pipe._require()
    if linker.cross_encoder is None:
        raise SystemExit(f"{args.pipeline}: its icd_linker has no reranker")
    mentions = [m for path in args.mentions for m in read_mentions(path)]
    queries = [format_query(m.text) for m in mentions]
    start = time.perf_counter()
    candidates = linker.link(queries, k=args.k, rerank=False, channels=pipe.cfg["channels"])
    pairs = [(q, c.description) for q, per in zip(queries, candidates) for c in per]
    logits = linker.cross_encoder.score(pairs)
    print(f"{len(mentions)} mentions, {len(pairs)} pairs scored in {time.perf_counter() - start:.0f} s "
          f"(channels {pipe.cfg['channels']})")
    golds = [m.codes for m in mentions]
    rows = {}
    print("| w | exact F1 | category F1 | exact MAP@10 | category MAP@10 |")
    print("|---|---|---|---|---|")
    for weight in args.weights:
        rankings, offset = [], 0
        for per in candidates:
            probs = rerank_probabilities(logits[offset:offset + len(per)], [c.retrieval_score for c in per], weight)
            offset += len(per)
            rankings.append([c.code for _, c in sorted(zip(-probs, per), key=lambda t: t[0])])
        row = evaluate_rankings(golds, rankings)
        rows[weight] = row
        print(f"| {weight:g} | {row['exact']['f']:.3f} | {row['category']['f']:.3f} | "
              f"{row['exact']['map@10']:.3f} | {row['category']['map@10']:.3f} |")
    if args.output:
        Path(args.output).write_text(json.dumps({str(w): r for w, r in rows.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
