"""ICD-10 linking: catalogue, mention readers, encoders, candidate indexes, reranking, evaluation, training."""
from .catalog import Catalog, CodeEntry, load_catalog, load_cie, load_icd10cm
from .codes import category_of, chapter_of, matches, normalize_code
from .linker import Candidate, CodeLinker

__all__ = ["Candidate", "Catalog", "CodeEntry", "CodeLinker", "category_of", "chapter_of", "load_catalog",
           "load_cie", "load_icd10cm", "matches", "normalize_code"]
