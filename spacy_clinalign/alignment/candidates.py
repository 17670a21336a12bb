"""Candidate decoding (after T-Projection, Garcia-Ferrero et al. 2023): instead of growing the longest run
of target tokens that pass a threshold, enumerate target-side candidate spans and pick the one whose
alignment agrees best with the source span in both directions.

For a source span S and a candidate C (target tokens [a, b)), on a weight matrix P (rows: target tokens;
each row's share inside S is what the token "says") and R (columns: source tokens; where each source
token's mass lands):
- precision p(C) = mean over C's tokens that carry any mass of their row share inside S;
- recall r(C) = R[C, S].sum() / R[:, S].sum(), the share of the source span's mass that C receives;
- score = F_beta(p, r) * exp(-length_prior * |log(len(C) / len(S))|), lengths in tokens or characters.
span_projector passes P = R = the row softmax, or the mean of the row and the column softmax (both directions).
Candidates are n-grams of up to `max_length` tokens that hold at least one seed token (row share >=
`threshold`) and do not start or end on a blocked token (punctuation, function word, whitespace) unless
the source span starts / ends on one, plus any extra spans given (NER support, noun chunks).
"""
import string
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc, Span

from .projection import DecodedSpan

_PUNCT = set(string.punctuation) | set("¿¡«»“”‘’…–—·")


def is_punct_text(text: str) -> bool:
    return bool(text) and all(ch in _PUNCT for ch in text)


def stop_words(lang: Optional[str]) -> frozenset:
    """spaCy's stop words of `lang` (empty for None)."""
    if lang is None:
        return frozenset()
    from spacy.util import get_lang_class

    return frozenset(get_lang_class(lang).Defaults.stop_words)


def blocked_edges(doc: Doc, lang: Optional[str] = None) -> numpy.ndarray:
    """Tokens a span should not start or end on: whitespace, punctuation and function words. Function
    words are spaCy's stop words of `lang` (e.g. "en"; default: the Doc's own `is_stop`), matched on the
    lowercased text without attached punctuation ("and," counts as "and"); only lexical attributes."""
    stops = stop_words(lang) if lang is not None else None
    out = numpy.zeros(len(doc), dtype=bool)
    for token in doc:
        bare = token.text.strip("".join(_PUNCT)).lower()
        stop = (bare in stops) if stops is not None else (token.is_stop or doc.vocab[bare].is_stop)
        out[token.i] = token.is_space or token.is_punct or is_punct_text(token.text) or (bool(bare) and stop)
    return out


@dataclass
class SpanEvidence:
    """Per-target-token evidence for one source span."""
    share: numpy.ndarray  # row share inside the span (precision side)
    has_mass: numpy.ndarray  # the token carries any alignment mass
    received: numpy.ndarray  # share of the span's source-side mass the token receives (recall side)


def span_evidence(P: numpy.ndarray, R: numpy.ndarray, start: int, end: int) -> SpanEvidence:
    row_total = P.sum(axis=1)
    inside = P[:, start:end].sum(axis=1)
    share = numpy.divide(inside, row_total, out=numpy.zeros_like(inside, dtype="float64"), where=row_total > 0)
    col = R[:, start:end].sum(axis=1).astype("float64")
    total = col.sum()
    received = col / total if total > 0 else numpy.zeros_like(col)
    return SpanEvidence(share, row_total > 0, received)


def score_candidate(ev: SpanEvidence, a: int, b: int, source_len: int, beta: float, length_prior: float) -> Tuple[float, float, float]:
    """(score, precision, recall) of the candidate [a, b)."""
    n_mass = int(ev.has_mass[a:b].sum())
    p = float(ev.share[a:b].sum() / n_mass) if n_mass else 0.0
    r = float(ev.received[a:b].sum())
    f = (1 + beta ** 2) * p * r / (beta ** 2 * p + r) if p + r > 0 else 0.0
    return f * float(length_ratio_prior(b - a, source_len, length_prior)), p, r


def length_ratio_prior(length, source_length, length_prior: float):
    """exp(-length_prior * |log(length / source_length)|): 1 when the candidate is as long as the source span.
    In characters (rather than tokens) it does not punish the many-word renderings of one-word terms, e.g.
    "valvulopatías" (1 token, 13 chars) -> "valvular heart disease" (3 tokens, 22 chars), or
    "hemocultivos" -> "blood cultures": translations keep their length in characters far better than in
    words (the length model of Gale & Church's sentence aligner)."""
    return numpy.exp(-length_prior * numpy.abs(numpy.log(numpy.asarray(length, dtype="float64") / source_length)))


def decode_candidates(
    ev: SpanEvidence,
    source_len: int,
    threshold: float,
    max_length: int = 10,
    beta: float = 1.0,
    length_prior: float = 1.0,
    blocked_start: Optional[numpy.ndarray] = None,
    blocked_end: Optional[numpy.ndarray] = None,
    skip: Optional[numpy.ndarray] = None,
    extra: Iterable[Tuple[int, int]] = (),
    max_spans: int = 1,
    taken: Optional[numpy.ndarray] = None,
    min_score: float = 0.0,
    char_offsets: Optional[numpy.ndarray] = None,
    source_chars: Optional[int] = None,
    barriers: Optional[numpy.ndarray] = None,
) -> List[DecodedSpan]:
    """The best non-overlapping candidates (at most `max_spans`, best first); [] when no target token is a
    seed (row share >= threshold). If the edge rules leave no n-gram, they are dropped rather than the span.
    `taken` marks target tokens no candidate may cover (already given to another source span); candidates
    scoring below `min_score` are not kept. With `char_offsets` ((n, 2) start and end character of each
    target token) and `source_chars` (the source span's length in characters), the length prior compares
    character lengths instead of token counts (see `length_ratio_prior`). `barriers` marks tokens a
    candidate may end on but not run past (a header's colon); like the edge rules, dropped if nothing is left."""
    n = len(ev.share)
    seed = ev.share >= threshold
    if skip is not None:
        seed &= ~skip
    if taken is not None:
        seed &= ~taken
    if not seed.any():
        return []
    taken_cum = numpy.concatenate([[0], numpy.cumsum(taken)]) if taken is not None else None
    seeds_before = numpy.concatenate([[0], numpy.cumsum(seed)])
    share_cum = numpy.concatenate([[0.0], numpy.cumsum(ev.share)])
    mass_cum = numpy.concatenate([[0], numpy.cumsum(ev.has_mass)])
    recv_cum = numpy.concatenate([[0.0], numpy.cumsum(ev.received)])
    no_edge = skip if skip is not None else numpy.zeros(n, dtype=bool)
    barrier_cum = numpy.concatenate([[0], numpy.cumsum(barriers)]) if barriers is not None else None

    def prior(a, b):
        """The length-ratio prior of candidates [a, b) (arrays or ints): in characters when offsets are given."""
        if char_offsets is not None and source_chars:
            return length_ratio_prior(char_offsets[b - 1, 1] - char_offsets[a, 0], source_chars, length_prior)
        return length_ratio_prior(b - a, source_len, length_prior)

    def grams(strict: bool) -> List[Tuple[float, int, int]]:
        out = []
        starts = numpy.arange(n)
        for length in range(1, min(max_length, n) + 1):
            a = starts[: n - length + 1]
            b = a + length
            ok = (seeds_before[b] - seeds_before[a] > 0) & ~no_edge[a] & ~no_edge[b - 1]
            if taken_cum is not None:
                ok &= taken_cum[b] == taken_cum[a]
            if strict:
                if barrier_cum is not None:
                    ok &= barrier_cum[b - 1] == barrier_cum[a]
                if blocked_start is not None:
                    ok &= ~blocked_start[a]
                if blocked_end is not None:
                    ok &= ~blocked_end[b - 1]
            a, b = a[ok], b[ok]
            if not len(a):
                continue
            n_mass = mass_cum[b] - mass_cum[a]
            p = numpy.divide(share_cum[b] - share_cum[a], n_mass, out=numpy.zeros(len(a)), where=n_mass > 0)
            r = recv_cum[b] - recv_cum[a]
            denom = beta ** 2 * p + r
            f = numpy.divide((1 + beta ** 2) * p * r, denom, out=numpy.zeros(len(a)), where=denom > 0)
            out.extend(zip((f * prior(a, b)).tolist(), a.tolist(), b.tolist()))
        return out

    scored = grams(strict=True) or grams(strict=False)
    for a, b in set(extra):
        if 0 <= a < b <= n and seeds_before[b] - seeds_before[a] > 0 and (taken_cum is None or taken_cum[b] == taken_cum[a]):
            scored.append((score_candidate(ev, a, b, source_len, beta, 0.0)[0] * float(prior(a, b)), a, b))
    # best first; ties: shorter, then leftmost
    scored.sort(key=lambda x: (-x[0], x[2] - x[1], x[1]))
    chosen: List[DecodedSpan] = []
    for score, a, b in scored:
        if len(chosen) >= max_spans or score < min_score:
            break
        if all(b <= c.start or a >= c.end for c in chosen):
            chosen.append(DecodedSpan(a, b, float(score)))
    return chosen


def extra_spans(spans: Sequence[Span]) -> List[Tuple[int, int]]:
    return [(s.start, s.end) for s in spans]
