"""Document structure for word alignment: align sentences first, then let words link only inside the
aligned sentence band.

Source and target are encoded independently, so nothing in a token's vector tells a "the" in sentence 3
from a "the" in sentence 30; on whole documents word links jump between sentences. As Vecalign and
Bertalign do for sentence alignment, a monotone dynamic programme over segments (1-1, 1-2, 2-1 merges and
skipped segments on either side) finds which target sentences translate which source sentences. Segment
similarity comes from the word cosine matrix itself (BERTScore-style greedy matching, F of the two
directions), so no second encoder pass is needed. Word links are then kept inside the aligned blocks
(optionally widened by a margin; on en-fr documents a margin of 3 tokens cost 1 AER point, so the default
is 0); a sentence that the programme leaves unaligned (an insertion, an omission, or a split it missed)
may still link within the neighbouring aligned blocks, so it costs only the sentences involved and no
token is cut off from linking.
"""
from bisect import bisect_left
from functools import lru_cache
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy
from spacy.tokens import Doc

from ..token_arrays import token_flags
from .matrix import PairScores, rectangles_mask, row_blocks

Segment = Tuple[int, int]  # token range [start, end)
SENTENCE_END = (".", "!", "?", "。", "!", "?")


def segments_of(doc: Doc) -> List[Segment]:
    """Sentence ranges of a Doc: its own sentence boundaries when a parser or sentencizer set them;
    otherwise a token ending in sentence punctuation (or a line break) closes a sentence."""
    n = len(doc)
    if n == 0:
        return []
    if doc.has_annotation("SENT_START"):
        return [(s.start, s.end) for s in doc.sents]
    ends = numpy.flatnonzero(token_flags(doc, _ends_sentence)[:-1]) + 1
    cuts = [0, *ends.tolist(), n]
    return list(zip(cuts[:-1], cuts[1:]))


@lru_cache(maxsize=1 << 16)
def _ends_sentence(text: str) -> bool:
    """A token with this text closes a sentence: sentence punctuation (not an abbreviation), or a
    whitespace token holding a line break."""
    return (text.endswith(SENTENCE_END) and not _looks_like_abbreviation(text)) or (text.isspace() and "\n" in text)


def _looks_like_abbreviation(text: str) -> bool:
    """"Dr." or "i.e." end in a period but rarely a sentence; a bare "." or "word." does."""
    core = text.rstrip(".!?")
    return len(core) > 0 and ("." in core or (len(core) <= 2 and core[:1].isupper()))


@dataclass
class SegmentLink:
    target: Segment  # token range of one or two target segments, or empty when the source was skipped
    source: Segment  # token range of one or two source segments, or empty when the target was skipped


def _reduce(matrix: numpy.ndarray, starts: Sequence[int], axis: int, how) -> numpy.ndarray:
    return how.reduceat(matrix, numpy.asarray(starts, dtype="int64"), axis=axis)


def segment_maxima(cosine: Union[numpy.ndarray, PairScores], target_segments: Sequence[Segment],
                   source_segments: Sequence[Segment]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Each target token's best cosine in each source segment (tokens_t, n_s), and each source token's
    best in each target segment (n_t, tokens_s), read in row blocks: no (n x m) temporary, and a
    PairScores without a stored matrix works too."""
    scores = cosine if isinstance(cosine, PairScores) else None
    matrix = None if scores is not None else numpy.asarray(cosine)
    n, m = scores.shape if scores is not None else matrix.shape
    s_starts = numpy.asarray([a for a, _ in source_segments], dtype="int64")
    t_starts = numpy.asarray([a for a, _ in target_segments], dtype="int64")
    segment_of_row = numpy.searchsorted(t_starts, numpy.arange(n), side="right") - 1  # -1: before the first
    best_src = numpy.empty((n, len(source_segments)), dtype="float32")
    best_tgt = numpy.full((len(target_segments), m), -numpy.inf, dtype="float32")
    for start, stop in row_blocks(n, m):
        block = scores.cosine_rows(start, stop) if scores is not None else matrix[start:stop]
        best_src[start:stop] = numpy.maximum.reduceat(block, s_starts, axis=1)
        segment = segment_of_row[start:stop]
        first = int(numpy.searchsorted(segment, 0))  # rows before the first segment are in none
        if first == len(segment):
            continue
        block, segment = block[first:], segment[first:]
        starts = numpy.concatenate([[0], numpy.nonzero(numpy.diff(segment))[0] + 1])
        ids = segment[starts]  # segments are contiguous, so each id occurs once per block
        best_tgt[ids] = numpy.maximum(best_tgt[ids], numpy.maximum.reduceat(block, starts, axis=0))
    return best_src, best_tgt


def align_segments(cosine: Union[numpy.ndarray, PairScores], target_segments: Sequence[Segment],
                   source_segments: Sequence[Segment], skip_z: float = 1.0,
                   window: Optional[int] = None) -> List[SegmentLink]:
    """Monotone alignment of target and source segments (rows x columns of `cosine`).

    Each move gains (z - skip_z) per segment it covers, where z is the move's similarity standardised
    against all 1-1 segment pairs; skipping a segment gains 0. So two segments are aligned only when
    they are clearly more alike than segments are in general, and merges win only when the merged
    similarity beats a 1-1 link plus a skip. On long documents the programme only visits cells within
    `window` segments of the diagonal (default: all cells up to 500 x 500 segments, else 10% + 20)."""
    n_t, n_s = len(target_segments), len(source_segments)
    if n_t == 0 or n_s == 0:
        return []
    t_starts = [a for a, _ in target_segments]
    s_starts = [a for a, _ in source_segments]
    t_len = numpy.array([b - a for a, b in target_segments], dtype="float64")
    s_len = numpy.array([b - a for a, b in source_segments], dtype="float64")
    best_src, best_tgt = segment_maxima(cosine, target_segments, source_segments)  # (tokens_t, n_s), (n_t, tokens_s)
    recall = _reduce(best_src, t_starts, 0, numpy.add)  # (n_t, n_s): sums over target tokens
    precision = _reduce(best_tgt, s_starts, 1, numpy.add)  # (n_t, n_s): sums over source tokens

    def f_score(r_sum, r_n, p_sum, p_n):
        r, p = r_sum / r_n, p_sum / p_n
        return numpy.where(r + p > 0, 2 * r * p / numpy.maximum(r + p, 1e-9), 0.0)

    f11 = f_score(recall, t_len[:, None], precision, s_len[None, :])
    mean, std = float(f11.mean()), float(f11.std()) or 1.0
    z11 = (f11 - mean) / std
    neg = -numpy.inf
    # 1-2: target a with source b, b+1
    z12 = numpy.full((n_t, n_s), neg)
    if n_s > 1:
        merged = _reduce(numpy.maximum(best_src[:, :-1], best_src[:, 1:]), t_starts, 0, numpy.add)
        z12[:, :-1] = (f_score(merged, t_len[:, None], precision[:, :-1] + precision[:, 1:],
                               (s_len[:-1] + s_len[1:])[None, :]) - mean) / std
    # 2-1: target a, a+1 with source b
    z21 = numpy.full((n_t, n_s), neg)
    if n_t > 1:
        merged = _reduce(numpy.maximum(best_tgt[:-1], best_tgt[1:]), s_starts, 1, numpy.add)
        z21[:-1, :] = (f_score(recall[:-1] + recall[1:], (t_len[:-1] + t_len[1:])[:, None], merged,
                               s_len[None, :]) - mean) / std

    score = numpy.full((n_t + 1, n_s + 1), neg)
    back = numpy.zeros((n_t + 1, n_s + 1), dtype="int8")
    score[0, 0] = 0.0
    moves = ((1, 1), (1, 2), (2, 1), (1, 0), (0, 1))
    if window is None:
        window = max(n_t, n_s) if n_t * n_s <= 250_000 else int(0.1 * max(n_t, n_s)) + 20
    slope = n_s / n_t
    for a in range(n_t + 1):
        centre = a * slope
        lo = 0 if a == n_t else max(0, int(centre - window))
        hi = n_s if a == n_t else min(n_s, int(centre + window) + 1)
        for b in range(lo, hi + 1):
            if a == 0 and b == 0:
                continue
            best, arg = neg, 0
            for k, (da, db) in enumerate(moves):
                pa, pb = a - da, b - db
                if pa < 0 or pb < 0 or score[pa, pb] == neg:
                    continue
                if da and db:
                    table = z11 if (da, db) == (1, 1) else z12 if (da, db) == (1, 2) else z21
                    gain = (table[pa, pb] - skip_z) * (da + db)
                else:
                    gain = 0.0
                if score[pa, pb] + gain > best:
                    best, arg = score[pa, pb] + gain, k
            score[a, b], back[a, b] = best, arg
    links, a, b = [], n_t, n_s
    while a > 0 or b > 0:
        da, db = moves[back[a, b]]
        t_range = (target_segments[a - da][0], target_segments[a - 1][1]) if da else (0, 0)
        s_range = (source_segments[b - db][0], source_segments[b - 1][1]) if db else (0, 0)
        links.append(SegmentLink(t_range, s_range))
        a, b = a - da, b - db
    return links[::-1]


def band_rectangles(n_target: int, n_source: int, links: Sequence[SegmentLink], margin: int = 0) -> numpy.ndarray:
    """The cells word links may use, as a union of (t0, t1, s0, s1) rectangles ((k, 4) int64, O(segments)
    memory instead of one byte a cell). Aligned blocks (widened by `margin` source tokens); a target
    segment the programme skipped may link anywhere from the start of the previous aligned source block to
    the end of the next one, and a skipped source segment may be linked from the target blocks on either
    side, so every token can still receive a link."""
    rectangles = []
    aligned = [i for i, l in enumerate(links) if l.target[1] > l.target[0] and l.source[1] > l.source[0]]
    for i in aligned:
        (t0, t1), (s0, s1) = links[i].target, links[i].source
        rectangles.append((t0, t1, max(0, s0 - margin), min(n_source, s1 + margin)))

    def neighbours(i: int):
        k = bisect_left(aligned, i)  # `aligned` is sorted; i itself is not in it
        return (links[aligned[k - 1]] if k > 0 else None), (links[aligned[k]] if k < len(aligned) else None)

    for i, link in enumerate(links):
        if link.target[1] > link.target[0] and link.source[1] > link.source[0]:
            continue
        prev, nxt = neighbours(i)
        if link.target[1] > link.target[0]:  # a target segment with no source
            s0 = prev.source[0] if prev else 0
            s1 = nxt.source[1] if nxt else n_source
            rectangles.append((link.target[0], link.target[1], s0, s1))
        if link.source[1] > link.source[0]:  # a source segment with no target
            t0 = prev.target[0] if prev else 0
            t1 = nxt.target[1] if nxt else n_target
            rectangles.append((t0, t1, link.source[0], link.source[1]))
    return numpy.asarray(rectangles, dtype="int64").reshape(-1, 4)


def band_mask(n_target: int, n_source: int, links: Sequence[SegmentLink], margin: int = 0) -> numpy.ndarray:
    """(n_target, n_source) bool form of `band_rectangles` (1 byte a cell: for inspection and small pairs)."""
    return rectangles_mask(band_rectangles(n_target, n_source, links, margin), 0, n_target, n_source)


def document_band_rectangles(cosine: Union[numpy.ndarray, PairScores], target: Doc, source: Doc, margin: int = 0,
                             skip_z: float = 1.0) -> Optional[numpy.ndarray]:
    """The allowed rectangles for a pair, or None when either side is a single segment (nothing to do)."""
    t_segs, s_segs = segments_of(target), segments_of(source)
    if len(t_segs) < 2 or len(s_segs) < 2:
        return None
    if not isinstance(cosine, PairScores):
        cosine = numpy.asarray(cosine, dtype="float32")
    links = align_segments(cosine, t_segs, s_segs, skip_z=skip_z)
    return band_rectangles(len(target), len(source), links, margin=margin)


def document_band(cosine: Union[numpy.ndarray, PairScores], target: Doc, source: Doc, margin: int = 0,
                  skip_z: float = 1.0) -> Optional[numpy.ndarray]:
    """The allowed-cell mask for a pair, or None when either side is a single segment (nothing to do)."""
    rectangles = document_band_rectangles(cosine, target, source, margin, skip_z)
    if rectangles is None:
        return None
    return rectangles_mask(rectangles, 0, len(target), len(source))
