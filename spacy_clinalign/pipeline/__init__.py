from .clinical_aligner import ClinicalAligner
from .bio_ner_cnn import BioNerCnn
from .icd_linker import IcdLinker
from .span_projector import SpanProjector

__all__ = ["BioNerCnn", "ClinicalAligner", "IcdLinker", "SpanProjector"]
