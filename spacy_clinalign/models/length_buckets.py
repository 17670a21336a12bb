"""Length-bucketed encoder calls: spacy-transformers pads every window of a call to the longest one, so a
batch mixing a 5-word and a 60-word sentence spends most of its matrix products on padding. Sorting the
Docs by length and encoding them in groups of similar length removes that padding; results come back in
the input order, and each Doc's vectors do not depend on which group it was in (padding is masked)."""
from typing import Callable, List, Sequence, TypeVar

from spacy.tokens import Doc

T = TypeVar("T")

# Docs per encoder call: large enough that per-call overhead is small, small enough that a group is
# close in length after sorting.
DEFAULT_GROUP_SIZE = 16


def length_groups(lengths: Sequence[int], group_size: int = DEFAULT_GROUP_SIZE) -> List[List[int]]:
    """Indices sorted by length (stable), cut into groups of at most `group_size`."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[k:k + group_size] for k in range(0, len(order), group_size)]


def predict_by_length(predict: Callable[[List[Doc]], List[T]], docs: Sequence[Doc],
                      group_size: int = DEFAULT_GROUP_SIZE) -> List[T]:
    """`predict(docs)` run on length-sorted groups of Docs; one output per Doc, in the input order."""
    out: List = [None] * len(docs)
    for group in length_groups([len(d.text) for d in docs], group_size):
        for i, result in zip(group, predict([docs[i] for i in group])):
            out[i] = result
    return out


def sorted_by_length(items: Sequence[T], length: Callable[[T], int]) -> List[int]:
    """The order that visits `items` by increasing length (stable): for callers that batch whole inputs."""
    return sorted(range(len(items)), key=lambda i: length(items[i]))
