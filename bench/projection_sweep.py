"""Char/strict F1 of span_projector over a grid of threshold x temperature (and max_gap), aligning once.

    python bench/projection_sweep.py MODEL ../shared/data/multiclinai/paired_es_en.dev.jsonl [--layer 8]
MODEL is an aligner pipeline folder or an encoder folder. Prints one row per setting, best last.
"""
import argparse
import itertools


def main() -> None:
    from spacy_clinalign.pipelines import load_projection_pipeline
    from spacy_clinalign.scoring.spans import format_span_scores
    from spacy_clinalign.io.multiclinai import read_multiclinai_examples

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--gaps", type=int, nargs="+", default=[1])
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    nlp = load_projection_pipeline(args.model, args.layer)
    examples = list(read_multiclinai_examples(nlp.vocab, args.data, limit=args.limit))
    aligner, projector = nlp.get_pipe("clinical_aligner"), nlp.get_pipe("span_projector")
    docs = [eg.predicted for eg in examples]
    aligner.set_annotations(docs, aligner.predict(docs))
    rows = []
    for threshold, temperature, gap in itertools.product(args.thresholds, args.temperatures, args.gaps):
        projector.cfg.update(threshold=threshold, temperature=temperature, max_gap=gap)
        for doc in docs:
            projector(doc)
        scores = projector.score(examples)
        rows.append((scores["proj_char_f"], scores["proj_strict_f"], threshold, temperature, gap))
        print(f"threshold {threshold:.2f} temperature {temperature:.2f} gap {gap}: "
              f"char F {scores['proj_char_f']:.3f} strict F {scores['proj_strict_f']:.3f}", flush=True)
    best = max(rows)
    print(f"best: threshold {best[2]} temperature {best[3]} gap {best[4]}: char F {best[0]:.3f} strict F {best[1]:.3f}")
    projector.cfg.update(threshold=best[2], temperature=best[3], max_gap=best[4])
    for doc in docs:
        projector(doc)
    print(format_span_scores(projector.score(examples)))


if __name__ == "__main__":
    main()
