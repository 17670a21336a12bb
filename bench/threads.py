"""Do threads sharing one aligner get the single-thread alignments? Counts the pairs whose links differ.

Each of N threads aligns the same pairs (one Doc at a time) through one `nlp`; a pair differs when its
links are not the single-thread ones. Usage:
    python bench/threads.py [--encoder clinalign-e5-small] [--layer 8] [--data FILE] [--limit 16] [--threads 4]
"""
import argparse
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="clinalign-e5-small")
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/alignment/awesome-align/enfr.src-tgt"))
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    if args.limit < 1 or args.threads < 1:
        parser.error("--limit and --threads must be >= 1")

    from spacy_clinalign.io.alignment_files import read_parallel
    from spacy_clinalign.pairs import pair_from_words
    from spacy_clinalign.pipelines import load_aligner

    pairs = read_parallel(args.data)[: args.limit]
    nlp = load_aligner(args.encoder, layer=args.layer)

    def align_all():
        out = []
        for s, t in pairs:
            a = nlp(pair_from_words(nlp.vocab, s, t))._.alignment
            out.append((a.links.tolist(), a.matrix))
        return out

    single = align_all()
    results, errors = [None] * args.threads, []
    barrier = threading.Barrier(args.threads)

    def work(k):
        try:
            barrier.wait()
            results[k] = align_all()
        except Exception as err:
            errors.append(repr(err))

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if errors:
        print(f"{len(errors)} thread(s) failed: {errors[0]}")
        return 1
    for k, result in enumerate(results):
        differ = sum(a[0] != b[0] for a, b in zip(result, single))
        gap = max(float(abs(a[1] - b[1]).max(initial=0.0)) for a, b in zip(result, single))
        print(f"thread {k}: {differ} of {len(pairs)} pairs differ from the single-thread links; "
              f"largest matrix difference {gap:.2e}")
    print(f"{args.threads} threads x {len(pairs)} pairs in {seconds:.1f} s ({args.encoder}, layer {args.layer})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
