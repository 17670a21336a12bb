"""Peak RSS of the two memory-heavy commands, each in its own process (so each peak is its own):

  evaluate-projection  `python -m spacy_clinalign evaluate-projection ENCODER paired_es_en.dev.jsonl`
                       (all 297 MultiClinAI dev pairs unless --limit)
  train                `spacy train configs/aligner.cfg` at batch 2 for --steps steps on a teacher corpus
                       built here from the first --train-docs CodiEsp train documents (build-teacher, same encoder)

    python bench/peak_memory.py [--encoder DIR] [--cases evaluate-projection train] [--limit 0] [--steps 20]
                                [--tracemalloc]

Prints one line per case: peak RSS (ru_maxrss of the child) and wall time. --tracemalloc also prints the
child's largest Python allocation sites at its peak (numpy arrays are counted; torch tensors are not).
Targets (issue 18): evaluate-projection <= 1.5 GB, training at batch 2 <= 4 GB.
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
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))  # this checkout's package, not whichever one the venv installed


def child(case: str, args) -> None:
    """Run one case in this process, then print its peak RSS as a JSON line."""
    import torch

    DATA = Path(args.data)

    torch.set_num_threads(args.threads)
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(8)
    start = time.perf_counter()
    if case == "evaluate-projection":
        run_command(["evaluate-projection", args.encoder, str(DATA / "multiclinai" / "paired_es_en.dev.jsonl"),
              "--limit", str(args.limit)])
    elif case == "train":
        from spacy.cli.train import train

        work = Path(tempfile.mkdtemp(prefix="clinalign_mem_"))
        # The first --train-docs CodiEsp train documents (es) and their English translations, as train-aligner uses.
        src, tgt = work / "es", work / "en"
        src.mkdir(), tgt.mkdir()
        codiesp = DATA / "codiesp" / "train"
        for path in sorted((codiesp / "text_files").glob("*.txt"))[: args.train_docs]:
            (src / path.name).symlink_to(path)
            (tgt / path.name).symlink_to(codiesp / "text_files_en" / path.name)
        run_command(["build-teacher", str(src), str(work / "teacher.spacy"), "--target", str(tgt), "--encoder", args.encoder])
        base = peak_rss_bytes()
        train(ROOT / "configs" / "aligner.cfg", work / "out", use_gpu=-1, overrides={
            "paths.train": str(work / "teacher.spacy"), "paths.dev": str(work / "teacher.spacy"),
            "paths.encoder": args.encoder, "training.max_steps": args.steps, "training.eval_frequency": args.steps,
            "training.batcher.size": 2})
        print(f"(teacher build peak {base / 2**30:.2f} GiB)", file=sys.stderr)
    secs = time.perf_counter() - start
    if args.tracemalloc:
        import tracemalloc

        snapshot = tracemalloc.take_snapshot()
        for stat in snapshot.statistics("lineno")[:12]:
            print(f"  {stat.size / 2**20:8.1f} MiB  {stat.traceback}", file=sys.stderr)
    print("PEAK " + json.dumps({"case": case, "peak_rss": peak_rss_bytes(), "secs": secs}))


def run_command(argv) -> None:
    """`python -m spacy_clinalign ARGV`, run as a program inside this process (so its peak is ours)."""
    import runpy

    saved = sys.argv
    sys.argv = ["spacy_clinalign", *argv]
    try:
        runpy.run_module("spacy_clinalign", run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    finally:
        sys.argv = saved


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    from spacy_clinalign.encoders import default_encoder_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=str(default_encoder_dir()))
    parser.add_argument("--cases", nargs="+", choices=["evaluate-projection", "train"],
                        default=["evaluate-projection", "train"])
    parser.add_argument("--limit", type=int, default=0, help="evaluate-projection: pairs (0 = all 297)")
    parser.add_argument("--steps", type=int, default=20, help="train: optimizer steps at batch 2")
    parser.add_argument("--train-docs", type=int, default=8, help="train: CodiEsp documents in the teacher corpus")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    for case in args.cases:
        cmd = [sys.executable, __file__, "--child", case] + [a for a in sys.argv[1:] if a not in args.cases
                                                             and a != "--cases"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("PEAK ")]
        if not lines:
            print(f"{case}: failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-3:]}")
            continue
        r = json.loads(lines[-1][5:])
        print(f"{case:<20} peak RSS {r['peak_rss'] / 2**30:.2f} GiB  ({r['secs']:.0f} s)", flush=True)
        if args.tracemalloc:
            print("\n".join(l for l in proc.stderr.splitlines() if l.startswith("  ")))


if __name__ == "__main__":
    main()
