"""Training data that contains evaluation sentences inflates every figure measured on them. binaryalign's
en-fr hansards, en-ro and en-ja train files hold the awesome-align gold sentences, for instance. Sentences
are compared by their lowercased tokens, so tokenisation and case differences do not hide a copy."""
from typing import Iterable, List, Sequence, Set, Tuple

Row = Tuple[Sequence[str], Sequence[str], object]  # (source words, target words, links or None)


def sentence_key(words: Sequence[str]) -> str:
    return " ".join(w.lower() for w in words)


def sentence_keys(rows: Iterable[Row]) -> Set[str]:
    """Both sides of every pair, as keys."""
    keys: Set[str] = set()
    for source, target, _ in rows:
        keys.add(sentence_key(source))
        keys.add(sentence_key(target))
    return keys


def overlapping_pairs(train: Sequence[Row], evaluation: Sequence[Row]) -> List[int]:
    """Indices of evaluation pairs whose source or target sentence also occurs (either side) in `train`."""
    seen = sentence_keys(train)
    return [k for k, (source, target, _) in enumerate(evaluation)
            if sentence_key(source) in seen or sentence_key(target) in seen]
