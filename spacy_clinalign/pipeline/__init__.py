from .aligner import ClinicalAligner
from .bio_ner_cnn import BioNerCnn
from .span_projector import SpanProjector

__all__ = ["BioNerCnn", "ClinicalAligner", "SpanProjector"]
