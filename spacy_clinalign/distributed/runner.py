"""Run a corpus task in one process or on a Ray cluster, with the same chunks and the same output bytes.

The sorted records are cut into chunks of `batch_size` consecutive documents; a chunk is one `nlp.pipe`
batch wherever it runs, so padding (and hence every float) is the same in both runners. A chunk whose
documents are all written is skipped on a rerun; a partly written chunk is run again whole and only its
missing documents are written. On Ray, chunks are the rows of a Ray Data dataset mapped by a pool of
actors (`map_batches(..., concurrency=workers)`), each loading the pipeline once; an actor that dies is
restarted and its chunk retried (`max_restarts`, `max_task_retries`)."""
import json
from collections import Counter
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .outputs import write_document, write_errors
from .tasks import CorpusTask


@dataclass
class RunSummary:
    """What a run did: documents written now, done before (skipped), failed (name, reason), and timing."""

    total: int
    written: int = 0
    skipped: int = 0
    errors: List[Tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    startup_seconds: float = 0.0
    workers: int = 1

    def line(self) -> str:
        return (f"{self.total} documents: {self.written} written, {self.skipped} already done, "
                f"{len(self.errors)} failed ({self.seconds:.1f} s)")


def plan(task: CorpusTask, out_dir: Path, batch_size: int):
    """All records, and the chunks (lists of records) that still have a document without its marker."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    records = task.records()
    names = [r["name"] for r in records]
    if len(set(names)) != len(names):
        dupes = sorted(n for n, count in Counter(names).items() if count > 1)
        raise ValueError(f"{task.kind}: document names must be unique; repeated: {dupes[:5]}")
    chunks = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
    done = {n for n in names if (out_dir / task.marker(n)).exists()}
    pending = [c for c in chunks if not all(r["name"] in done for r in c)]
    return records, pending, done


def _finish(task: CorpusTask, out_dir: Path, records, done, statuses: Dict[str, Tuple[str, str]], summary: RunSummary):
    for record in records:
        name = record["name"]
        status, reason = statuses.get(name, ("exists", ""))
        if status == "error":
            summary.errors.append((name, reason))
        elif name in done:  # written by an earlier run
            summary.skipped += 1
        elif (out_dir / task.marker(name)).exists():  # by this run (maybe by an attempt that then died)
            summary.written += 1
        else:
            raise RuntimeError(f"{task.kind}: {name} was neither written nor reported as failed")
    write_errors(out_dir, summary.errors)
    task.finalize(out_dir, [r["name"] for r in records])
    return summary


def run_local(task: CorpusTask, out_dir, batch_size: int = 8, gpu_id: int = -1, progress: bool = True) -> RunSummary:
    """One process: load the pipeline, then run the pending chunks in order."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    records, pending, done = plan(task, out_dir, batch_size)
    summary = RunSummary(total=len(records))
    statuses: Dict[str, Tuple[str, str]] = {}
    if pending:
        state = task.load(gpu_id=gpu_id)
        summary.startup_seconds = time.perf_counter() - start
        for chunk in tqdm(pending, disable=not progress, desc=task.kind, unit="chunk"):
            for result in task.process(state, chunk):
                statuses[result.name] = (write_document(out_dir, result, task.marker(result.name)), result.error or "")
    summary.seconds = time.perf_counter() - start
    return _finish(task, out_dir, records, done, statuses, summary)


def require_ray():
    """Import Ray (and Ray Data), or stop with a message naming the extra to install."""
    from ..extras import require

    ray = require("ray")
    require("ray.data")
    return ray


class ChunkWorker:
    """A Ray Data actor: loads the task's pipeline once, then processes and writes one chunk per call."""

    def __init__(self, task: CorpusTask, out_dir: str, use_gpu: bool, threads: int):
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        self.task = task
        self.out_dir = Path(out_dir)
        self.state = task.load(gpu_id=0 if use_gpu else -1)  # Ray sets CUDA_VISIBLE_DEVICES per actor

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        import numpy as np

        names, statuses, reasons = [], [], []
        for payload in batch["records"]:
            for result in self.task.process(self.state, json.loads(payload)):
                names.append(result.name)
                statuses.append(write_document(self.out_dir, result, self.task.marker(result.name)))
                reasons.append(result.error or "")
        return {"name": np.array(names, dtype=object), "status": np.array(statuses, dtype=object),
                "reason": np.array(reasons, dtype=object)}


def connect_ray(address: Optional[str] = None, num_cpus: Optional[int] = None):
    """Join the cluster at `address` (e.g. `ray://head:10001` or `auto`), or start a local Ray (with
    `num_cpus` CPUs) when no address is given; a Ray already initialised in this process is reused."""
    ray = require_ray()
    if not ray.is_initialized():
        kwargs: Dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": False}
        if address is None and num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    return ray


def run_ray(task: CorpusTask, out_dir, batch_size: int = 8, *, address: Optional[str] = None, workers: int = 2,
            num_gpus: Optional[float] = None, cpus_per_worker: float = 1, max_restarts: int = 3,
            max_task_retries: int = 3, progress: bool = False) -> RunSummary:
    """Run the pending chunks on Ray Data over `workers` actors. `num_gpus` per actor defaults to 1 when
    the cluster has GPUs, else 0 (CPU). The output folder must be reachable by every worker (one machine,
    or a shared file system on a cluster)."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    records, pending, done = plan(task, out_dir, batch_size)
    summary = RunSummary(total=len(records), workers=workers)
    statuses: Dict[str, Tuple[str, str]] = {}
    if pending:
        ray = connect_ray(address)
        from ray.data import ActorPoolStrategy, DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = progress
        context.print_on_execution_start = progress
        if num_gpus is None:
            num_gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        summary.startup_seconds = time.perf_counter() - start
        rows = [{"chunk": i, "records": json.dumps(chunk)} for i, chunk in enumerate(pending)]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        with warnings.catch_warnings():
            # Ray 2.60 takes actor restarts only through **ray_remote_args, which it marks as deprecated
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
            results = dataset.map_batches(
                ChunkWorker, batch_size=1, compute=ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker, num_gpus=num_gpus,
                fn_constructor_kwargs={"task": task, "out_dir": str(out_dir), "use_gpu": num_gpus > 0,
                                       "threads": max(int(cpus_per_worker), 1)},
                max_restarts=max_restarts, max_task_retries=max_task_retries,
            )
        for row in results.iter_rows():
            # a retried chunk reports its documents again; the first "written" (or error) stands
            previous = statuses.get(row["name"])
            if previous is None or previous[0] == "exists":
                statuses[row["name"]] = (row["status"], row["reason"])
    summary.seconds = time.perf_counter() - start
    return _finish(task, out_dir, records, done, statuses, summary)
