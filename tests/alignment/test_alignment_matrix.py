import numpy
import pytest
import torch

from spacy_clinalign.alignment.matrix import (
    cosine_matrix,
    extract_links,
    itermax_links,
    link_probabilities,
    mutual_argmax,
    sinkhorn,
    threshold_links,
)


def test_cosine_matrix_values_and_zero_rows():
    t = numpy.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype="float32")
    s = numpy.array([[2.0, 0.0], [0.0, 3.0]], dtype="float32")
    sim = cosine_matrix(t, s)
    assert sim.shape == (3, 2)
    numpy.testing.assert_allclose(sim[0], [1.0, 0.0], atol=1e-6)
    numpy.testing.assert_allclose(sim[1], [0.0, 0.0])  # zero vector: 0, not NaN
    numpy.testing.assert_allclose(sim[2], [2 ** -0.5, 2 ** -0.5], atol=1e-6)


def test_mutual_argmax_keeps_only_cells_best_in_row_and_column():
    scores = numpy.array([[0.9, 0.8], [0.95, 0.1]])
    mask = mutual_argmax(scores)
    # row 0 prefers col 0, but col 0 prefers row 1: only (1, 0) is mutual
    assert mask.tolist() == [[False, False], [True, False]]


def test_itermax_adds_links_for_unaligned_tokens():
    scores = numpy.array([
        [0.9, 0.1, 0.1],
        [0.8, 0.2, 0.1],
        [0.1, 0.1, 0.9],
    ])
    first = mutual_argmax(scores)
    more = itermax_links(scores)
    assert first.sum() == 2 and not first[1].any()
    # row 1 was unaligned: its cell with aligned column 0 is discounted by alpha (0.9 * 0.9 = 0.81 after
    # mapping to [0, 1]) but still beats the free column 1 (0.6), so a many-to-one link is added
    assert more[1, 0] and more.sum() == 3
    assert (more | first).sum() == more.sum()  # never drops a first-round link


def test_threshold_links_and_probabilities():
    scores = numpy.array([[0.9, 0.0], [0.0, 0.9]])
    assert threshold_links(scores, threshold=0.5, temperature=0.1).tolist() == [[True, False], [False, True]]
    probs = link_probabilities(scores, temperature=0.1)
    assert probs[0, 0] > 0.99 and probs[0, 1] < 0.01
    with pytest.raises(ValueError, match="Unknown alignment extraction method"):
        extract_links(scores, method="bogus")


def test_extraction_on_empty_matrices():
    for method in ("argmax", "itermax", "threshold"):
        assert extract_links(numpy.zeros((0, 3)), method).shape == (0, 3)


def test_sinkhorn_is_doubly_stochastic_and_stable():
    rng = numpy.random.default_rng(0)
    # an offset that overflows a naive exp(): the log domain must cope
    scores = (1e4 + rng.normal(size=(7, 7))).astype("float64")
    p = sinkhorn(scores, n_iter=100)
    assert numpy.isfinite(p).all()
    assert numpy.isfinite(sinkhorn(rng.normal(size=(6, 6)) * 1e6, n_iter=100)).all()
    numpy.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-4)
    numpy.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-4)
    small = sinkhorn(rng.normal(size=(5, 5)).astype("float32"), n_iter=100)
    numpy.testing.assert_allclose(small.sum(axis=0), 1.0, atol=1e-4)
    numpy.testing.assert_allclose(small.sum(axis=1), 1.0, atol=1e-4)


def test_sinkhorn_rectangular_mask_and_torch_input():
    scores = torch.randn(4, 8)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[0, :4] = False
    p = sinkhorn(scores, n_iter=200, mask=mask)
    assert isinstance(p, torch.Tensor)
    assert torch.allclose(p.sum(dim=1), torch.ones(4), atol=1e-4)
    assert torch.allclose(p.sum(dim=0), torch.full((8,), 0.5), atol=1e-4)
    assert float(p[0, :4].abs().sum()) == 0.0
