"""Both alignment directions combined, as in phrase-based MT (Koehn et al. 2003): each target token's best
source token (target-to-source) and each source token's best target token (source-to-target) are two
many-to-one link sets; intersection is precise, union has recall, grow-diag-final starts from the
intersection and adds union links next to it (and finally links of still unaligned words)."""
import numpy

from .matrix import softmax

SYMMETRIZATIONS = ("intersection", "union", "grow_diag_final")
_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def directional_links(logits: numpy.ndarray, temperature: float = 1.0, min_prob: float = 0.0):
    """(target_to_source, source_to_target) boolean masks of shape (n_target, n_source): the argmax of each
    row of the row softmax and of each column of the column softmax, kept when its probability >= min_prob."""
    t2s = numpy.zeros(logits.shape, dtype=bool)
    s2t = numpy.zeros(logits.shape, dtype=bool)
    if logits.size == 0:
        return t2s, s2t
    rows = softmax(logits / temperature, axis=1)
    cols = softmax(logits / temperature, axis=0)
    r = numpy.arange(logits.shape[0])
    best = rows.argmax(axis=1)
    t2s[r, best] = rows[r, best] >= min_prob
    c = numpy.arange(logits.shape[1])
    best = cols.argmax(axis=0)
    s2t[best, c] = cols[best, c] >= min_prob
    return t2s, s2t


def symmetrize(t2s: numpy.ndarray, s2t: numpy.ndarray, method: str) -> numpy.ndarray:
    """Combine two directional link masks (n_target, n_source) by `method`: intersection, union or
    grow_diag_final (Moses' grow-diag-final: grow by diagonal neighbours, then the final step)."""
    if method not in SYMMETRIZATIONS:
        raise ValueError(f"symmetrize: method must be one of {SYMMETRIZATIONS}, got {method!r}")
    if t2s.shape != s2t.shape:
        raise ValueError(f"symmetrize: the two directions have shapes {t2s.shape} and {s2t.shape}")
    t2s, s2t = t2s.astype(bool), s2t.astype(bool)
    union = t2s | s2t
    if method == "union":
        return union
    links = t2s & s2t
    if method == "intersection":
        return links
    n_t, n_s = links.shape
    grew = True
    while grew:  # grow-diag
        grew = False
        for i, j in zip(*numpy.nonzero(links)):
            for di, dj in _NEIGHBOURS:
                a, b = i + di, j + dj
                if 0 <= a < n_t and 0 <= b < n_s and union[a, b] and not links[a, b] and (
                        not links[a].any() or not links[:, b].any()):
                    links[a, b] = True
                    grew = True
    for direction in (t2s, s2t):  # final: a union link whose target or source word is still unaligned
        for a, b in zip(*numpy.nonzero(direction)):
            if not links[a].any() or not links[:, b].any():
                links[a, b] = True
    return links
