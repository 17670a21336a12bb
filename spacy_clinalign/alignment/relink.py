"""Word links from a pair's scores, with any extraction settings: what `clinical_aligner` does after
encoding, as a public function. Evaluation and bench code call `relink` to compare methods on one
encoding instead of changing a live component's settings in place."""
from typing import Optional

import numpy
from spacy.tokens import Doc

from ..token_arrays import is_space_token
from .alignment import Alignment
from .blockwise import links_from_scores
from .matrix import OUTSIDE_BAND, PairScores


def restrict_to(pair: PairScores, allowed: numpy.ndarray) -> PairScores:
    """Scores with every cell outside `allowed` set to the lowest cosine, OUTSIDE_BAND: such cells can
    neither win an argmax nor get softmax mass, and never become links (here or when re-extracted).
    A copy, for a dense mask; `PairScores.restrict_to_band` does it in place for a band of intervals."""
    cosine = numpy.where(allowed, pair.full_cosine(), numpy.float32(OUTSIDE_BAND)).astype("float32", copy=False)
    return PairScores(cosine, pair.target_norms, pair.source_norms)


def alignment_from_scores(pair: PairScores, method: str = "argmax", threshold: float = 0.001,
                          temperature: float = 1.0, sinkhorn_iterations: int = 0, store_matrix: bool = False,
                          target: Optional[Doc] = None, source: Optional[Doc] = None,
                          allowed: Optional[numpy.ndarray] = None) -> Alignment:
    """Extract links from `pair` (target x source). With Sinkhorn, links come from the balanced matrix
    (`threshold` is then a cut on it); without, `threshold` is awesome-align's softmax rule. Whitespace
    tokens of `target` / `source` never get links; with `allowed` (e.g. the document prior's band),
    only allowed cells do, and cells already ruled out (cosine OUTSIDE_BAND) never do.
    Links are extracted in row blocks (`blockwise`): the only (n x m) array is the stored cosine, if any."""
    if allowed is not None:
        pair = restrict_to(pair, allowed)
    links, probs = links_from_scores(pair, method, threshold, temperature, sinkhorn_iterations)
    if len(links):
        keep = pair.cosine_cells(links[:, 0], links[:, 1]) > OUTSIDE_BAND
        # Whitespace tokens compete in extraction but never keep a link.
        if target is not None:
            keep &= ~is_space_token(target)[links[:, 0]]
        if source is not None:
            keep &= ~is_space_token(source)[links[:, 1]]
        links, probs = links[keep], probs[keep]
    n, m = pair.shape
    kept = store_matrix and pair.cosine is not None
    return Alignment(n, m, links, probs=probs, method=method, matrix=pair.cosine if kept else None,
                     norms=(pair.target_norms, pair.source_norms) if kept else None)


def relink(doc: Doc, method: str, threshold: float = 0.001, temperature: float = 1.0,
           sinkhorn_iterations: int = 0) -> Alignment:
    """A new Alignment for an aligned pair Doc, re-extracted with other settings; the Doc is unchanged.
    Needs the scores kept by the aligner (`store_matrix = true`)."""
    alignment = doc._.alignment
    if alignment is None:
        raise ValueError("relink: the Doc has no alignment; run clinical_aligner (with store_matrix = true) first")
    return alignment_from_scores(alignment.scores(), method, threshold, temperature, sinkhorn_iterations,
                                 store_matrix=True, target=doc, source=doc._.source)
