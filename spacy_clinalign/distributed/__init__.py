"""Corpus-scale alignment, projection and linking: one output file per document, resumable, in one
process or over a Ray cluster (the optional `ray` extra) with the same output bytes."""
from .outputs import ERRORS_FILE, DocResult, read_errors, write_document
from .runner import RunSummary, connect_ray, plan, require_ray, run_local, run_ray
from .tasks import AlignTask, CorpusTask, LinkTask, ProjectTask, pharaoh_line

__all__ = ["AlignTask", "CorpusTask", "DocResult", "ERRORS_FILE", "LinkTask", "ProjectTask",
           "RunSummary", "connect_ray", "pharaoh_line", "plan", "read_errors", "require_ray", "run_local", "run_ray",
           "write_document"]
