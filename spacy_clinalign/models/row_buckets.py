"""One encoder call run as sub-batches of windows of similar length, so padding costs (almost) nothing.

spacy-transformers pads every window of a call to the call's longest window. The aligner already groups
Docs by length (length_buckets.py), but a Doc holds one window per sentence, so a group of similar Docs
still mixes 5- and 40-wordpiece windows: on the first 100 awesome-align en-fr gold pairs, 26 % of the rows
the encoder computed were padding (5,986 padded ids for 4,411 real ones). At inference the shim therefore
sorts a call's windows by real length, runs them in sub-batches trimmed to their own longest window, and
puts each output row back where it was. Attention is masked, so a window's real positions get the same
vectors whatever else shares its sub-batch (equal up to float summation order); positions past a
sub-batch's width get zeros, which nothing reads (spacy-transformers' alignment points at real wordpieces only).

Only outputs shaped (windows, positions, ...) or (windows, ...) are reassembled (`last_hidden_state`,
`hidden_states`, `pooler_output`, a classifier's `logits`); a call asking for anything else (attention maps) runs unsplit.
"""
from typing import Any, Callable, Dict, List, Sequence

import numpy
import torch

# What one more encoder call costs, in padded positions: a forward pass streams every weight matrix from
# memory whatever its size (multilingual-e5-small cut at layer 8: about 14 ms for a 2 x 4 call on the 2-core
# CI machine, where each position costs about 0.23 ms), so splitting off a sub-batch pays only when it saves
# more padding than this.
CALL_COST_POSITIONS = 64
# No sub-batch above this many padded positions (unless one window is longer): bounds one forward pass's
# activations, whatever the size of the call.
MAX_POSITIONS = 4096
_REASSEMBLED = {"last_hidden_state", "hidden_states", "pooler_output", "logits"}


def row_groups(lengths: Sequence[int], call_cost: int = CALL_COST_POSITIONS,
               max_positions: int = MAX_POSITIONS) -> List[List[int]]:
    """Row indices sorted by length and cut into contiguous groups that minimise the total cost, padded
    positions (rows x longest row) plus `call_cost` per group, with at most `max_positions` padded positions
    per group of two or more rows. Exact (dynamic programming over the sorted rows)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    if n == 0:
        return []
    sorted_lengths = numpy.array([lengths[i] for i in order], dtype=numpy.float64)
    best = numpy.zeros(n + 1)
    cut = numpy.zeros(n + 1, dtype=numpy.int64)
    for j in range(1, n + 1):
        starts = numpy.arange(j)
        padded = (j - starts) * sorted_lengths[j - 1]
        cost = best[:j] + call_cost + padded
        cost[(padded > max_positions) & (starts < j - 1)] = numpy.inf
        cut[j] = int(numpy.argmin(cost))
        best[j] = cost[cut[j]]
    groups: List[List[int]] = []
    j = n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def _take(value: Any, rows: torch.Tensor, width: int, shape: torch.Size) -> Any:
    """The rows `rows` of a (windows, positions) input, trimmed to `width` positions; other values as they are."""
    if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == shape:
        return value.index_select(0, rows)[:, :width]
    return value


def forward_by_length(forward: Callable[..., Any], kwargs: Dict[str, Any]) -> Any:
    """`forward(**kwargs)` computed in length-sorted sub-batches (see the module docstring); the output has
    the same type, keys and shapes as one call's."""
    mask = kwargs.get("attention_mask")
    ids = kwargs.get("input_ids")
    if (not isinstance(mask, torch.Tensor) or not isinstance(ids, torch.Tensor) or mask.dim() != 2
            or ids.shape != mask.shape or kwargs.get("output_attentions")):
        return forward(**kwargs)
    lengths = mask.sum(dim=1).tolist()
    groups = row_groups([max(1, int(n)) for n in lengths], CALL_COST_POSITIONS, MAX_POSITIONS)  # read per call
    if len(groups) < 2:
        return forward(**kwargs)
    parts = []
    for group in groups:
        rows = torch.tensor(group, dtype=torch.long, device=ids.device)
        width = max(1, int(max(lengths[i] for i in group)))
        output = forward(**{k: _take(v, rows, width, ids.shape) for k, v in kwargs.items()})
        if not parts and not (hasattr(output, "keys") and set(output.keys()) <= _REASSEMBLED):
            return forward(**kwargs)  # an output we do not know how to put back together: one call
        parts.append((rows, output))
    first = parts[0][1]
    out = {}
    for key in first.keys():
        if isinstance(first[key], tuple):  # hidden_states: one tensor per layer
            out[key] = tuple(_assemble([(rows, p[key][layer]) for rows, p in parts], ids.shape)
                             for layer in range(len(first[key])))
        else:
            out[key] = _assemble([(rows, p[key]) for rows, p in parts], ids.shape)
    return type(first)(**out)


def _assemble(pieces: List, shape: torch.Size) -> torch.Tensor:
    """One (windows, positions, ...) tensor from per-sub-batch parts trimmed in width (zeros past each
    part's width), or one (windows, ...) tensor from pooled parts."""
    sample = pieces[0][1]
    per_position = sample.dim() >= 3
    full = sample.new_zeros((shape[0], shape[1], *sample.shape[2:]) if per_position else (shape[0], *sample.shape[1:]))
    for rows, part in pieces:
        if per_position:
            full[rows, : part.shape[1]] = part
        else:
            full[rows] = part
    return full


def run_by_length(model: torch.nn.Module, inputs: Any) -> Any:
    """A shim's inference call (thinc ArgsKwargs `inputs`) through `forward_by_length`; positional inputs
    run unsplit."""
    if inputs.args:
        return model(*inputs.args, **inputs.kwargs)
    return forward_by_length(model, dict(inputs.kwargs))
