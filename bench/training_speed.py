"""Aligner training speed on CPU: seconds per `nlp.update` step with the whole encoder trained against only
the upper layers trained on cached frozen lower layers (issue 14 item 3).

Every setting trains on the same gold pairs (binaryalign en-cz train, supervised loss, batch --batch) from the same
start, cycling over --pairs pairs, reshuffled into new batches every epoch as `spacy train` does, so that later epochs
can read the frozen layers from the cache. It prints the
mean seconds per step of the first epoch and of the later ones, and the projected time of 2,000 steps (the first --corpus-pairs / --batch steps at the first-epoch speed). Usage:
    python bench/training_speed.py [--encoder clinalign-e5-small] [--layer 8] [--frozen 0 6] [--steps 30]
        [--pairs 40] [--batch 8]
"""
import argparse
import random
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="clinalign-e5-small")
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--frozen", type=int, nargs="+", default=[0, 6])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--corpus-pairs", type=int, default=3764,
                        help="training pairs of the real run (its first epoch fills the cache), for the projection")
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/alignment/binaryalign/train/en-cz/czenali.jsonl"))
    args = parser.parse_args(argv)
    if min(args.steps, args.pairs, args.batch) < 1 or args.pairs < args.batch:
        parser.error("--steps, --pairs, --batch must be >= 1 and --pairs >= --batch")

    import spacy
    from thinc.api import fix_random_seed

    from spacy_clinalign.io.alignment_files import read_gold_set
    from spacy_clinalign.io.readers import make_pair_example

    gold = read_gold_set(args.data)[: args.pairs]
    per_epoch = args.pairs // args.batch
    print(f"{len(gold)} pairs of {Path(args.data).name}, batch {args.batch}, {per_epoch} steps per epoch, "
          f"{args.steps} steps, encoder {args.encoder} layer {args.layer}")
    print("| frozen layers | cache | s/step epoch 1 | s/step later epochs | 2,000 steps (projected) |")
    print("|---|---|---|---|---|")
    for frozen in args.frozen:
        fix_random_seed(0)
        nlp = spacy.blank("en")
        nlp.add_pipe("clinical_aligner", config={"model": {
            "@architectures": "spacy-clinalign.AlignerModel.v1", "name": args.encoder, "layer": args.layer,
            "get_spans": {"@span_getters": "spacy-clinalign.sentence_spans.v1", "window": 128, "stride": 96},
            "frozen_layers": frozen, "frozen_cache_size": 100_000 if frozen else 0}})
        examples = [make_pair_example(nlp.vocab, s, t, links) for s, t, links in gold]
        optimizer = nlp.initialize(lambda: examples)
        times = []
        order = list(examples)
        shuffle = random.Random(0)
        for step in range(args.steps):
            if step % per_epoch == 0:  # as spacy train does: new batches every epoch, padded to other lengths
                shuffle.shuffle(order)
            start = (step % per_epoch) * args.batch
            batch = order[start:start + args.batch]
            t0 = time.perf_counter()
            nlp.update(batch, sgd=optimizer, drop=0.1)
            times.append(time.perf_counter() - t0)
        first, later = times[:per_epoch], times[per_epoch:] or times[:per_epoch]
        steady, filling = statistics.mean(later), statistics.mean(first)
        first_epoch = min(2000, args.corpus_pairs // args.batch)
        projected = first_epoch * filling + (2000 - first_epoch) * steady
        print(f"| {frozen} | {'yes' if frozen else 'no'} | {filling:.2f} | {steady:.2f} | "
              f"{projected / 60:.0f} min |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
