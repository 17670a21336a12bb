from .aligner import ClinicalAligner
from .span_projector import SpanProjector

__all__ = ["ClinicalAligner", "SpanProjector"]
