"""Length-sorted sub-batches inside one encoder call (models/row_buckets.py): the same vectors as one
padded call, rows back in place, and the sub-batches chosen by the cost model."""
import itertools

import pytest
import torch
from transformers import AutoModel

from spacy_clinalign.models.row_buckets import MAX_POSITIONS, forward_by_length, row_groups
from spacy_clinalign.models.safe_shim import SafeHFShim
from tests.conftest import initialized_aligner


def _cost(lengths, groups, call_cost):
    return sum(call_cost + len(g) * max(lengths[i] for i in g) for g in groups)


def test_row_groups_cover_every_row_once_in_contiguous_length_order():
    lengths = [5, 40, 7, 38, 6, 5, 39, 41, 12, 6]
    groups = row_groups(lengths, call_cost=20)
    assert sorted(itertools.chain(*groups)) == list(range(len(lengths)))
    bounds = [(min(lengths[i] for i in g), max(lengths[i] for i in g)) for g in groups]
    assert all(hi <= lo_next for (_, hi), (lo_next, _) in zip(bounds, bounds[1:]))
    # short and long rows are not padded together: 5-7 apart from 38-41
    assert any(max(lengths[i] for i in g) <= 7 for g in groups)


def test_row_groups_are_the_cheapest_contiguous_cut():
    lengths = [3, 4, 9, 10, 10, 30, 31, 60]
    for call_cost in (0, 8, 64, 1000):
        groups = row_groups(lengths, call_cost=call_cost)
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        best = min(
            _cost(lengths, [order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))], call_cost)
            for k in range(len(order))
            for cuts in itertools.combinations(range(1, len(order)), k)
        )
        assert _cost(lengths, groups, call_cost) == best
    assert len(row_groups(lengths, call_cost=10_000)) == 1  # a call costs more than any padding
    assert len(row_groups(lengths, call_cost=0)) == len(set(lengths))  # padding costs, calls do not


def test_row_groups_keep_sub_batches_under_the_position_cap():
    groups = row_groups([100] * 100, call_cost=10_000)
    assert all(len(g) * 100 <= MAX_POSITIONS for g in groups)
    assert row_groups([MAX_POSITIONS * 2, 3], call_cost=0) == [[1], [0]]  # one too-long window is alone
    assert row_groups([]) == []


@pytest.fixture(scope="module")
def bert(tiny_encoder):
    return AutoModel.from_pretrained(str(tiny_encoder)).eval()


def _padded_batch(lengths, width, vocab=50):
    gen = torch.Generator().manual_seed(0)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(5, vocab, (n,), generator=gen)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_split_call_gives_the_vectors_of_one_padded_call(bert):
    lengths = [3, 30, 4, 29, 5, 31, 3, 12]
    inputs = _padded_batch(lengths, width=32)
    with torch.no_grad():
        whole = bert(**inputs)
        calls = []

        def counting_forward(**kwargs):
            calls.append(tuple(kwargs["input_ids"].shape))
            return bert(**kwargs)

        split = forward_by_length(counting_forward, inputs)
    assert len(calls) >= 2 and all(width < 32 for _, width in calls[:-1])  # it did split and trim
    assert type(split) is type(whole) and split.last_hidden_state.shape == whole.last_hidden_state.shape
    for row, n in enumerate(lengths):
        torch.testing.assert_close(split.last_hidden_state[row, :n], whole.last_hidden_state[row, :n],
                                   atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(split.pooler_output, whole.pooler_output, atol=1e-5, rtol=1e-5)
    # row 0 (3 wordpieces) ran with the short rows (at most 12 wide): the positions past them are zeros
    assert not split.last_hidden_state[0, 12:].any()


def test_hidden_states_are_reassembled_and_attention_maps_run_unsplit(bert):
    lengths = [2, 30, 3, 28]
    inputs = _padded_batch(lengths, width=30)
    with torch.no_grad():
        whole = bert(**inputs, output_hidden_states=True)
        split = forward_by_length(bert, {**inputs, "output_hidden_states": True})
        assert len(split.hidden_states) == len(whole.hidden_states)
        for a, b in zip(split.hidden_states, whole.hidden_states):
            torch.testing.assert_close(a[1, :30], b[1, :30], atol=1e-5, rtol=1e-5)
        calls = []
        with_maps = forward_by_length(lambda **kw: calls.append(1) or bert(**kw), {**inputs, "output_attentions": True})
    assert calls == [1] and with_maps.attentions[0].shape[-1] == 30


def test_aligner_inference_splits_mixed_windows_and_keeps_its_matrices(tiny_encoder, monkeypatch):
    """Through the pipeline: a call mixing short and long sentences runs as several trimmed encoder calls,
    and the alignment matrices are those of the unsplit call."""
    from spacy_clinalign.models import row_buckets
    from spacy_clinalign.pipelines import align_word_pairs

    words = "el paciente presenta fiebre alta y dolor abdominal desde hace tres días".split()
    pairs = [(words[:2], words[:2]), (words * 2, words * 2), (words[:3], words[:3]), (words * 2, words[::-1] * 2)]
    nlp = initialized_aligner(tiny_encoder, store_matrix=True)
    shim = next(s for node in nlp.get_pipe("clinical_aligner").model.walk() for s in node.shims
                if isinstance(s, SafeHFShim))
    widths = []
    real_forward = shim._model.forward

    def recording_forward(*args, **kwargs):
        widths.append(kwargs["input_ids"].shape)
        return real_forward(*args, **kwargs)

    shim._model.forward = recording_forward
    split_docs = align_word_pairs(nlp, pairs, batch_size=8, progress=False)
    assert len(widths) >= 2 and len({w[1] for w in widths}) >= 2
    widths.clear()
    monkeypatch.setattr(row_buckets, "CALL_COST_POSITIONS", 10**9)  # never split: the reference
    whole_docs = align_word_pairs(nlp, pairs, batch_size=8, progress=False)
    assert len(widths) == 1
    for a, b in zip(split_docs, whole_docs):
        torch.testing.assert_close(torch.from_numpy(a._.alignment.matrix), torch.from_numpy(b._.alignment.matrix),
                                   atol=1e-5, rtol=1e-5)
        assert a._.alignment.pairs() == b._.alignment.pairs()
