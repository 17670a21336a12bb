"""Peak RSS of the two memory-heavy commands, each in its own process (so each peak is its own):

  evaluate-projection  `python -m spacy_clinalign evaluate-projection ENCODER paired_es_en.dev.jsonl`
                       (all 297 MultiClinAI dev pairs unless --limit)
  build-teacher        `python -m spacy_clinalign build-teacher` on the first --train-docs CodiEsp train
                       documents (es -> en, same encoder), written to --work/teacher.spacy
  train                `spacy train configs/aligner.cfg` at batch 2 for --steps steps on that teacher corpus
                       (built first, in its own process, when --work has none)

    python bench/peak_memory.py [--encoder DIR] [--cases evaluate-projection build-teacher train] [--limit 0]
                                [--steps 20] [--train-docs 8] [--work DIR] [--tracemalloc]

Prints one line per case: peak RSS (ru_maxrss of the child) and wall time. --tracemalloc also prints the
child's largest Python allocation sites at its peak (numpy arrays are counted; torch tensors are not).
Targets (issue 18): evaluate-projection <= 1.5 GB, training at batch 2 <= 4 GB.
"""
import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
CASES = ["evaluate-projection", "build-teacher", "train"]
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
    elif case == "build-teacher":
        work = Path(args.work)
        # The first --train-docs CodiEsp train documents (es) and their English translations, as train-aligner uses.
        src, tgt = work / "es", work / "en"
        for folder in (src, tgt):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        codiesp = DATA / "codiesp" / "train"
        for path in sorted((codiesp / "text_files").glob("*.txt"))[: args.train_docs]:
            (src / path.name).symlink_to(path)
            (tgt / path.name).symlink_to(codiesp / "text_files_en" / path.name)
        run_command(["build-teacher", str(src), str(work / "teacher.spacy"), "--target", str(tgt), "--encoder", args.encoder])
    elif case == "train":
        from spacy.cli.train import train

        work = Path(args.work)
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        train(ROOT / "configs" / "aligner.cfg", out, use_gpu=-1, overrides={
            "paths.train": str(work / "teacher.spacy"), "paths.dev": str(work / "teacher.spacy"),
            "paths.encoder": args.encoder, "training.max_steps": args.steps, "training.eval_frequency": args.steps,
            "training.batcher.size": 2})
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


def child_options(argv: List[str]) -> List[str]:
    """The command line's options for a child, without --cases and its values (and without --work)."""
    kept, skip = [], False
    for arg in argv:
        if arg in ("--cases", "--work"):
            skip = True
            continue
        if skip and not arg.startswith("--"):
            continue
        skip = False
        kept.append(arg)
    return kept


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    from spacy_clinalign.encoders import default_encoder_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=str(default_encoder_dir()))
    parser.add_argument("--cases", nargs="+", choices=CASES, default=["evaluate-projection", "train"])
    parser.add_argument("--limit", type=int, default=0, help="evaluate-projection: pairs (0 = all 297)")
    parser.add_argument("--steps", type=int, default=20, help="train: optimizer steps at batch 2")
    parser.add_argument("--train-docs", type=int, default=8, help="train: CodiEsp documents in the teacher corpus")
    parser.add_argument("--work", default=None, help="train / build-teacher: folder for the teacher corpus "
                        "(kept, so that `train` reuses it) and the training output; default: a new temporary folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    if args.work is None:
        args.work = tempfile.mkdtemp(prefix="clinalign_mem_")
    cases = list(args.cases)
    if "train" in cases and "build-teacher" not in cases and not (Path(args.work) / "teacher.spacy").exists():
        cases.insert(cases.index("train"), "build-teacher")  # in its own process: its peak is not training's
    for case in cases:
        cmd = [sys.executable, __file__, "--child", case, "--work", args.work] + child_options(sys.argv[1:])
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("PEAK ")]
        if not lines:
            print(f"{case}: failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-3:]}")
            continue
        r = json.loads(lines[-1][5:])
        print(f"{case:<20} peak RSS {r['peak_rss'] / 2**30:.3f} GiB = {r['peak_rss'] / 1e9:.3f} GB  ({r['secs']:.0f} s)", flush=True)
        if args.tracemalloc:
            print("\n".join(l for l in proc.stderr.splitlines() if l.startswith("  ")))


if __name__ == "__main__":
    main()
