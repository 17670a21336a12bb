"""Word links from a pair's scores, with any extraction settings: what `clinical_aligner` does after
encoding, as a public function. Evaluation and bench code call `relink` to compare methods on one
encoding instead of changing a live component's settings in place."""
from typing import Optional

import numpy
from spacy.tokens import Doc

from .alignment import Alignment
from .matrix import PairScores, drop_rows_cols, extract_links, link_probabilities, sinkhorn

OUTSIDE_BAND = -1.0  # the cosine given to cells a document prior rules out


def restrict_to(pair: PairScores, allowed: numpy.ndarray) -> PairScores:
    """Scores with every cell outside `allowed` set to the lowest cosine, OUTSIDE_BAND: such cells can
    neither win an argmax nor get softmax mass, and never become links (here or when re-extracted)."""
    cosine = numpy.where(allowed, pair.cosine, numpy.float32(OUTSIDE_BAND)).astype("float32", copy=False)
    return PairScores(cosine, pair.target_norms, pair.source_norms)


def alignment_from_scores(pair: PairScores, method: str = "argmax", threshold: float = 0.001,
                          temperature: float = 1.0, sinkhorn_iterations: int = 0, store_matrix: bool = False,
                          target: Optional[Doc] = None, source: Optional[Doc] = None,
                          allowed: Optional[numpy.ndarray] = None) -> Alignment:
    """Extract links from `pair` (target x source). With Sinkhorn, links come from the balanced matrix
    (`threshold` is then a cut on it); without, `threshold` is awesome-align's softmax rule. Whitespace
    tokens of `target` / `source` never get links; with `allowed` (e.g. the document prior's band),
    only allowed cells do."""
    if allowed is not None:
        pair = restrict_to(pair, allowed)
    logits = pair.dot()
    probs = link_probabilities(logits, temperature)
    if sinkhorn_iterations > 0 and logits.size:
        balanced = sinkhorn(logits, n_iter=sinkhorn_iterations, temperature=temperature)
        mask = balanced > threshold if method == "threshold" else extract_links(balanced, method)
        probs = balanced
    elif method == "threshold":
        mask = extract_links(logits, "threshold", threshold, temperature)
    else:
        mask = extract_links(pair.cosine, method)
    if allowed is not None or (pair.cosine.size and pair.cosine.min() <= OUTSIDE_BAND):
        mask = mask & (pair.cosine > OUTSIDE_BAND)
    space_rows = numpy.array([t.i for t in target if t.is_space] if target is not None else [], dtype="int64")
    space_cols = numpy.array([t.i for t in source if t.is_space] if source is not None else [], dtype="int64")
    if len(space_rows) or len(space_cols):
        mask = drop_rows_cols(mask, space_rows, space_cols)
    return Alignment.from_mask(mask, probs, scores=pair if store_matrix else None, method=method)


def relink(doc: Doc, method: str, threshold: float = 0.001, temperature: float = 1.0,
           sinkhorn_iterations: int = 0) -> Alignment:
    """A new Alignment for an aligned pair Doc, re-extracted with other settings; the Doc is unchanged.
    Needs the scores kept by the aligner (`store_matrix = true`)."""
    alignment = doc._.alignment
    if alignment is None or alignment.scores() is None:
        raise ValueError("relink: the Doc has no stored alignment scores; run clinical_aligner with store_matrix = true")
    return alignment_from_scores(alignment.scores(), method, threshold, temperature, sinkhorn_iterations,
                                 store_matrix=True, target=doc, source=doc._.source)
