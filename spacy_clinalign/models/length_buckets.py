"""Length-bucketed encoder calls: spacy-transformers pads every window of a call to the longest one, so a
batch mixing a 5-word and a 60-word sentence spends most of its matrix products on padding. Sorting the
Docs by length and encoding them in groups of similar length removes that padding; results come back in
the input order, and each Doc's vectors do not depend on which group it was in (padding is masked)."""
from typing import Callable, List, Sequence, TypeVar

from spacy.tokens import Doc

from ..token_arrays import char_length

T = TypeVar("T")

# Docs per encoder call. Inside a call the shim runs the windows in length-sorted sub-batches
# (models/row_buckets.py), so a larger group no longer pads more: it gives the sub-batches more windows to
# choose from, and fewer calls.
DEFAULT_GROUP_SIZE = 64
# Characters per encoder call. One call used to hold every window of its Docs in one forward pass (a batch
# of eight 1,400-token paragraphs on both sides reached GiBs; at 6,000 characters a MultiClinAI call took
# 0.2 GiB above the live data), hence a cap of 3,000. Since no sub-batch holds more than
# row_buckets.MAX_POSITIONS padded positions, the cap now only bounds the call's inputs and outputs (a few
# MiB): at 12,000 evaluate-projection peaked at 1.18 GiB against 1.38 at 3,000 (bench/RESULTS.md, session 9).
DEFAULT_GROUP_CHARS = 12000


def length_groups(lengths: Sequence[int], group_size: int = DEFAULT_GROUP_SIZE,
                  max_total: int = 0) -> List[List[int]]:
    """Indices sorted by length (stable), cut into groups of at most `group_size` items and, when
    `max_total` > 0, at most `max_total` summed length (an item longer than that is a group alone)."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: List[List[int]] = []
    total = 0
    for i in order:
        if not groups or len(groups[-1]) >= group_size or (max_total and total + lengths[i] > max_total):
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += lengths[i]
    return groups


def predict_by_length(predict: Callable[[List[Doc]], List[T]], docs: Sequence[Doc],
                      group_size: int = DEFAULT_GROUP_SIZE, max_chars: int = DEFAULT_GROUP_CHARS) -> List[T]:
    """`predict(docs)` run on length-sorted groups of Docs; one output per Doc, in the input order."""
    out: List = [None] * len(docs)
    for group in length_groups([char_length(d) for d in docs], group_size, max_chars):
        for i, result in zip(group, predict([docs[i] for i in group])):
            out[i] = result
    return out


def sorted_by_length(items: Sequence[T], length: Callable[[T], int]) -> List[int]:
    """The order that visits `items` by increasing length (stable): for callers that batch whole inputs."""
    return sorted(range(len(items)), key=lambda i: length(items[i]))
