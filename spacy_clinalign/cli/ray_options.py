"""The `--ray [ADDRESS]` options shared by the corpus commands (project, align, link corpus), and the
choice between the single-process and the Ray runner they imply."""
import argparse
import sys
from pathlib import Path

from ..distributed import CorpusTask, RunSummary, require_ray, run_local, run_ray
from .arguments import positive_float, positive_int

LOCAL = "local"


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray (needs `pip install 'spacy-clinalign[ray]'`)")
    group.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
                       help="run on Ray: a cluster address (`auto`, `ray://HEAD:10001`, `HEAD:6379`), or no value / "
                            "'' / `local` to start a local Ray; without --ray one process runs")
    group.add_argument("--workers", type=positive_int, default=2, help="Ray actors, each loading the pipeline once")
    group.add_argument("--cpus-per-worker", type=positive_float, default=1.0)
    group.add_argument("--gpus-per-worker", type=float, default=None,
                       help="default: 1 when the cluster has GPUs, else 0")


def run_task(task: CorpusTask, out_dir, args: argparse.Namespace, gpu_id: int = -1) -> RunSummary:
    """Run `task` as the command line asked (args.ray, args.workers...) and print the summary."""
    if getattr(args, "ray", None) is None:
        summary = run_local(task, Path(out_dir), batch_size=args.batch_size, gpu_id=gpu_id)
    else:
        try:
            require_ray()
        except ImportError as err:
            raise SystemExit(f"error: {err}") from None
        address = None if args.ray in ("", LOCAL) else args.ray
        summary = run_ray(task, Path(out_dir), batch_size=args.batch_size, address=address, workers=args.workers,
                          cpus_per_worker=args.cpus_per_worker, num_gpus=args.gpus_per_worker)
    print(summary.line(), file=sys.stderr)
    if summary.errors and len(summary.errors) == summary.total:
        name, reason = summary.errors[0]
        raise SystemExit(f"error: all {summary.total} documents failed (listed in {Path(out_dir) / 'errors.tsv'}), "
                         f"e.g. {name}: {reason}")
    if summary.errors:
        print(f"{len(summary.errors)} documents failed; names and reasons in {Path(out_dir) / 'errors.tsv'}",
              file=sys.stderr)
    return summary
