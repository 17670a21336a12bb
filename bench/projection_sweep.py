"""Char/strict F1 of span_projector over a grid of settings, encoding the pairs once.

    python bench/projection_sweep.py MODEL ../shared/data/multiclinai/paired_es_en.dev.jsonl \
        --split tune --cache /tmp/aligned_e5.pkl [--layer 8] [--decoders longest_run candidates]

MODEL is an aligner pipeline folder or an encoder folder. The aligner runs once over the pairs of `--split`
(the `tune` or `report` half, io/multiclinai.py; tune on `tune`, report on `report`) with `store_matrix`;
with `--cache` the aligned Examples are pickled there and later runs only re-decode (the cache is keyed by
nothing but its path: use one per model and split, delete it when the model or data change). `--set KEY=VALUE`
fixes any other span_projector setting for every row. Prints one row per setting and the per-label table of
the best (by strict F, then char F); `--errors` adds its error table.
"""
import argparse
import itertools
import json
import pickle
import sys
from pathlib import Path


def aligned_examples(model: str, data: str, layer: int, cache: str, limit: int = 0, split=None):
    """The pairs of `split` (None: every pair, in file order) aligned once, from `cache` when it exists.
    A cache holds what it was written for: use one file per model and split."""
    from spacy_clinalign.io.multiclinai import read_multiclinai_examples
    from spacy_clinalign.pipelines import load_projection_pipeline

    nlp = load_projection_pipeline(model, layer)
    if cache and Path(cache).exists():
        with open(cache, "rb") as f:
            return nlp, pickle.load(f)
    examples = list(read_multiclinai_examples(nlp.vocab, data, limit=limit, split=split))
    aligner = nlp.get_pipe("clinical_aligner")
    docs = [eg.predicted for eg in examples]
    for i in range(0, len(docs), 8):
        batch = docs[i:i + 8]
        aligner.set_annotations(batch, aligner.predict(batch))
        print(f"aligned {i + len(batch)}/{len(docs)}", file=sys.stderr, flush=True)
    if cache:
        with open(cache, "wb") as f:
            pickle.dump(examples, f)
    return nlp, examples


def main() -> None:
    from spacy_clinalign.scoring.projection_errors import classify_examples, format_error_counts
    from spacy_clinalign.scoring.spans import format_span_scores

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--split", choices=["tune", "report"], required=True)
    parser.add_argument("--cache", help="pickle of the aligned pairs (written on the first run)")
    parser.add_argument("--decoders", nargs="+", default=["longest_run", "candidates"])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.1])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[2.0])
    parser.add_argument("--gaps", type=int, nargs="+", default=[1])
    parser.add_argument("--symmetrize", nargs="+", default=["none"],
                        help="none (soft target-to-source rows), intersection, union, grow_diag_final")
    parser.add_argument("--max-lengths", type=int, nargs="+", default=[30])
    parser.add_argument("--source-lang", default="es")
    parser.add_argument("--target-lang", default="en")
    parser.add_argument("--length-priors", type=float, nargs="+", default=[0.25])
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0])
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="other span_projector settings for every row, VALUE as JSON (e.g. exclusive=false "
                             "directions=target_to_source min_score=0)")
    parser.add_argument("--errors", action="store_true", help="print the error-category table of each best setting")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    nlp, examples = aligned_examples(args.model, args.data, args.layer, args.cache, args.limit, args.split)
    projector = nlp.get_pipe("span_projector")
    fixed = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in projector.cfg:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(projector.cfg)}")
        try:
            fixed[key] = json.loads(value)
        except json.JSONDecodeError:
            fixed[key] = value  # a bare string, e.g. directions=target_to_source
    for decoder in args.decoders:
        rows = []
        cand = decoder == "candidates"
        grid = itertools.product(args.thresholds, args.temperatures, args.gaps if not cand else [1], args.symmetrize,
                                 args.length_priors if cand else [None], args.betas if cand else [None],
                                 args.max_lengths if cand else [None])
        for threshold, temperature, gap, sym, prior, beta, max_length in grid:
            setting = dict(decoder=decoder, threshold=threshold, temperature=temperature, max_gap=gap,
                           symmetrize=None if sym == "none" else sym, source_lang=args.source_lang,
                           target_lang=args.target_lang, **fixed)
            if cand:
                setting.update(length_prior=prior, beta=beta, max_length=max_length)
            projector.cfg.update(setting)
            for eg in examples:
                projector(eg.predicted)
            scores = projector.score(examples)
            rows.append((scores["proj_strict_f"], scores["proj_char_f"], setting))
            print(f"{setting}: char F {scores['proj_char_f']:.3f} strict F {scores['proj_strict_f']:.3f}", flush=True)
        strict, char, best = max(rows, key=lambda r: (r[0], r[1]))
        print(f"best {decoder} on {args.split} ({len(examples)} pairs): {best}")
        projector.cfg.update(best)
        for eg in examples:
            projector(eg.predicted)
        print(format_span_scores(projector.score(examples)))
        if args.errors:
            print(format_error_counts(classify_examples(examples)))


if __name__ == "__main__":
    main()
