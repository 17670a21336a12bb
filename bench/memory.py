"""Peak RSS of clinical_aligner for one long N x N-token pair (2k, 10k, 20k tokens a side).

Two parts, each size in its own child process (so each peak is its own):
  math       the component's alignment math alone: `nlp(pair)` with a synthetic encoder that returns
             seeded random 384-wide token vectors (target = source + noise, so links are diagonal-ish);
             this is everything the component does after the transformer: matrix, links, probabilities.
  component  the whole component with the tiny test encoder (2-layer BERT, built into a temporary folder).
"base" is the RSS peak before the pair is aligned, "peak" after; (peak - base) / N^2 is the bytes per matrix cell.
Usage (from the repository root; --no-store-matrix drops the stored matrix):
    python bench/memory.py [--tokens 2000 10000 20000] [--parts math component] [--method argmax] [--no-store-matrix]
The 20k case needs ~13 GiB on main before issue 12: run it alone.
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's package, not whichever one the venv installed


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _synthetic_architecture(width: int):
    """A thinc model mapping Docs to seeded random (len(doc), width) float32 vectors: the encoder's shape
    without its cost. Token i gets the same base vector on both sides plus noise, so alignments are non-trivial."""
    import numpy
    from thinc.api import Model

    def forward(model, docs, is_train):
        out = []
        for k, doc in enumerate(docs):
            base = numpy.random.default_rng(0).standard_normal((len(doc), width), dtype="float32")
            noise = numpy.random.default_rng(k + 1).standard_normal((len(doc), width), dtype="float32")
            out.append(base + noise)
        return out, lambda d: []

    return Model("synthetic_vectors", forward)


def child(part: str, n: int, method: str, store_matrix: bool, width: int) -> dict:
    import spacy
    from spacy.tokens import Doc

    from spacy_clinalign import make_pair
    from spacy_clinalign.encoders.tiny import TINY_CORPUS

    nlp = spacy.blank("en")
    words = " ".join(TINY_CORPUS).split()
    config = {"method": method, "store_matrix": store_matrix}
    if part == "math":
        from spacy.util import registry

        registry.architectures.register("clinalign-bench.SyntheticVectors.v1", func=_synthetic_architecture)
        config["model"] = {"@architectures": "clinalign-bench.SyntheticVectors.v1", "width": width}
        nlp.add_pipe("clinical_aligner", config=config)
    else:
        from spacy_clinalign.encoders.tiny import build_tiny_bert

        encoder = build_tiny_bert(Path(tempfile.mkdtemp(prefix="clinalign_bench_")))
        config["model"] = {"name": str(encoder), "layer": 2}
        nlp.add_pipe("clinical_aligner", config=config)
        nlp.initialize()
    target = Doc(nlp.vocab, words=[words[i % len(words)] for i in range(n)])
    source = Doc(nlp.vocab, words=[words[(i + 7) % len(words)] for i in range(n)])
    base = _peak_bytes()
    start = time.perf_counter()
    doc = nlp(make_pair(source, target, nlp))
    secs = time.perf_counter() - start
    peak = _peak_bytes()
    return {"part": part, "tokens": n, "base": base, "peak": peak, "secs": secs, "links": len(doc._.alignment)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[2000, 10000, 20000])
    parser.add_argument("--parts", nargs="+", choices=["math", "component"], default=["math", "component"])
    parser.add_argument("--method", default="argmax")
    parser.add_argument("--no-store-matrix", dest="store_matrix", action="store_false")
    parser.add_argument("--width", type=int, default=384, help="synthetic vector width (math part)")
    parser.add_argument("--child", nargs=2, metavar=("PART", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child[0], int(args.child[1]), args.method, args.store_matrix, args.width)
        print(json.dumps(result))
        return
    gib = 2**30
    print(f"clinical_aligner method={args.method} store_matrix={args.store_matrix}; one N x N pair per process")
    print(f"{'part':<10} {'tokens':>7} {'base GiB':>9} {'peak GiB':>9} {'bytes/cell':>10} {'links':>6} {'secs':>6}")
    for part in args.parts:
        for n in args.tokens:
            cmd = [sys.executable, __file__, "--child", part, str(n), "--method", args.method, "--width", str(args.width)]
            if not args.store_matrix:
                cmd.append("--no-store-matrix")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{part:<10} {n:>7} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            per_cell = (r["peak"] - r["base"]) / (n * n)
            print(f"{part:<10} {n:>7} {r['base'] / gib:>9.2f} {r['peak'] / gib:>9.2f} {per_cell:>10.1f} "
                  f"{r['links']:>6} {r['secs']:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
