from .alignment import Alignment
from .matrix import EXTRACTION_METHODS, cosine_matrix, extract_links, sinkhorn

__all__ = ["Alignment", "EXTRACTION_METHODS", "cosine_matrix", "extract_links", "sinkhorn"]
