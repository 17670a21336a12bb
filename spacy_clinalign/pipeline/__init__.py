from .aligner import ClinicalAligner

__all__ = ["ClinicalAligner"]
