"""Projection throughput over CodiEsp documents: one process vs a local Ray with 1 and 2 workers.

Builds a corpus of the first N CodiEsp train documents (Spanish text + its CodiEsp-X mentions as brat
.ann, English translation), saves a clinical_aligner + span_projector pipeline, then projects the corpus
with `run_local` and with `run_ray` (1 and 2 CPU workers, 1 torch thread each). Prints Ray's start-up
cost, documents/s per run (wall clock, actor start-up included), the time to the first written document
(start-up inside the run) and whether every run wrote the same bytes. The single process runs twice,
with torch's default threads and with 1 thread (what each Ray worker gets). Usage:
    python bench/distributed.py [--limit 200] [--encoder DIR] [--layer 8] [--batch-size 4] [--workers 1 2]
"""
import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODIESP = HERE.parent.parent / "shared/data/codiesp/train"


def build_corpus(root: Path, limit: int) -> Path:
    """Source .txt (linked) + .ann from trainX.tsv (diagnoses and procedures, discontinuous kept) and
    target .txt (linked) for the first `limit` documents, in name order."""
    import csv

    names = sorted(p.stem for p in (CODIESP / "text_files").glob("*.txt"))[:limit]
    mentions = {}
    with (CODIESP / "trainX.tsv").open(encoding="utf8", newline="") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            mentions.setdefault(row[0], []).append(row)
    (root / "es").mkdir(parents=True)
    (root / "en").mkdir()
    for name in names:
        os.symlink(CODIESP / "text_files" / f"{name}.txt", root / "es" / f"{name}.txt")
        os.symlink(CODIESP / "text_files_en" / f"{name}.txt", root / "en" / f"{name}.txt")
        lines = []
        for k, (_, label, _code, text, offsets) in enumerate(mentions.get(name, []), start=1):
            lines.append(f"T{k}\t{label} {offsets}\t{text}")  # same offset syntax as brat
        (root / "es" / f"{name}.ann").write_text("".join(l + "\n" for l in lines), encoding="utf8")
    return root


def first_write_watcher(out_dir: Path, start: float, result: dict):
    def watch():
        while "first" not in result and not result.get("stop"):
            if any(out_dir.glob("*.ann")):
                result["first"] = time.perf_counter() - start
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def files_of(folder: Path):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    import spacy

    from spacy_clinalign.distributed import ProjectTask, connect_ray, run_local, run_ray
    from spacy_clinalign.encoders import default_encoder_dir

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--encoder", default=str(default_encoder_dir()),
                        help="encoder folder, or `tiny` for the test suite's random 2-layer encoder (vocabulary from the corpus)")
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--trim-e5", action="store_true",
                        help="import multilingual-e5-small with only the layers up to --layer and the vocabulary of the corpus")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    try:
        corpus = build_corpus(root / "corpus", args.limit)
        if args.trim_e5:
            from spacy_clinalign.encoders.e5 import import_e5

            import_e5(root / "e5-trim", num_layers=args.layer, vocab_from=[corpus / "es", corpus / "en"])
            args.encoder = str(root / "e5-trim")
        if args.encoder == "tiny":
            from spacy_clinalign.encoders.tiny import build_tiny_bert

            texts = [p.read_text(encoding="utf8") for d in ("es", "en") for p in sorted((corpus / d).glob("*.txt"))]
            args.encoder = str(build_tiny_bert(root / "tiny", texts=texts, vocab_size=4000))
            args.layer = 2
        nlp = spacy.blank("xx")
        nlp.add_pipe("clinical_aligner", config={"model": {"name": args.encoder, "layer": args.layer}, "store_matrix": True})
        nlp.add_pipe("span_projector")
        nlp.initialize()
        nlp.to_disk(root / "pipeline")
        del nlp
        task = ProjectTask(str(root / "pipeline"), corpus / "es", corpus / "en", layer=args.layer)
        rows, outputs = [], {}
        n = args.limit
        if not args.skip_local:
            import torch

            default_threads = torch.get_num_threads()
            for threads in sorted({1, default_threads}, reverse=True):
                torch.set_num_threads(threads)
                out = root / f"local{threads}"
                watch = {}
                start = time.perf_counter()
                first_write_watcher(out, start, watch)
                summary = run_local(task, out, batch_size=args.batch_size, progress=False)
                watch["stop"] = True
                rows.append((f"one process, {threads} torch thread{'s' if threads > 1 else ''}", summary, watch.get("first")))
                outputs[f"local{threads}"] = files_of(out)
            torch.set_num_threads(default_threads)
        start = time.perf_counter()
        connect_ray(None)
        ray_init = time.perf_counter() - start
        for workers in args.workers:
            out = root / f"ray{workers}"
            watch = {}
            start = time.perf_counter()
            first_write_watcher(out, start, watch)
            summary = run_ray(task, out, batch_size=args.batch_size, workers=workers, cpus_per_worker=1)
            watch["stop"] = True
            rows.append((f"Ray, {workers} worker{'s' if workers > 1 else ''} x 1 CPU", summary, watch.get("first")))
            outputs[f"ray{workers}"] = files_of(out)
        print(f"{n} CodiEsp train documents (es -> en), encoder {args.encoder} layer {args.layer}, "
              f"batch {args.batch_size}, {os.cpu_count()} CPUs")
        print(f"Ray start-up (ray.init, local): {ray_init:.1f} s; load average at the end "
              f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1 / 5 / 15 min; other jobs share the CPUs)")
        print(f"{'run':<34} {'docs/s':>7} {'wall s':>7} {'first doc s':>12} {'written':>8} {'failed':>7}")
        for label, s, first in rows:
            first_s = f"{first:.1f}" if first is not None else "-"
            print(f"{label:<34} {s.total / s.seconds:>7.2f} {s.seconds:>7.1f} {first_s:>12} {s.written:>8} {len(s.errors):>7}")
        for name, reason in rows[0][1].errors[:5]:
            print(f"  failed: {name}: {reason[:160]}")
        reference = next(iter(outputs.values()))
        same = all(o == reference for o in outputs.values())
        print(f"identical output bytes across runs: {'yes' if same else 'NO'} ({len(reference)} files)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
