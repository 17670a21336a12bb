"""Reliability, memory (issue 12, item 8): links are extracted in row blocks with the dense results, no
(n x m) temporary is made beyond the stored float32 matrix, and a pair over `max_matrix_gib` warns first."""
import itertools
import tracemalloc
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import Doc

from spacy_clinalign import make_pair
from spacy_clinalign.alignment.blockwise import estimate_pair_bytes, links_from_scores
from spacy_clinalign.alignment.matrix import extract_links, link_probabilities, pair_scores, sinkhorn
from tests.conftest import aligner_config


def _dense(pair, method, threshold, temperature, sinkhorn_iterations=0):
    """What clinical_aligner did before issue 12: full-matrix extraction (the reference)."""
    logits = pair.dot()
    probs = link_probabilities(logits, temperature)
    if sinkhorn_iterations:
        balanced = sinkhorn(logits, n_iter=sinkhorn_iterations, temperature=temperature)
        mask = balanced > threshold if method == "threshold" else extract_links(balanced, method)
        probs = balanced
    elif method == "threshold":
        mask = extract_links(logits, "threshold", threshold, temperature)
    else:
        mask = extract_links(pair.cosine, method)
    rows, cols = numpy.nonzero(mask)
    return numpy.stack([rows, cols], axis=1), probs[rows, cols]


def _sorted(links, probs):
    order = numpy.lexsort((links[:, 1], links[:, 0]))
    return links[order], probs[order]


def _random_pair(rng, n, m, store=True, width=16):
    t = rng.standard_normal((n, width)).astype("float32") * rng.uniform(0.5, 3.0, size=(n, 1)).astype("float32")
    s = rng.standard_normal((m, width)).astype("float32") * rng.uniform(0.5, 3.0, size=(m, 1)).astype("float32")
    s[: min(n, m) // 2] += t[: min(n, m) // 2]  # some structure, so methods disagree and itermax adds links
    return pair_scores(t, s, store=store)


@pytest.mark.parametrize("method,temperature", list(itertools.product(["argmax", "itermax", "threshold"], [1.0, 0.25])))
def test_blockwise_links_equal_the_dense_ones_on_random_matrices(method, temperature):
    rng = numpy.random.default_rng(12)
    for n, m in [(1, 1), (2, 5), (37, 23), (64, 90), (120, 7)]:
        pair = _random_pair(rng, n, m)
        links, probs = _dense(pair, method, 0.001, temperature)
        for block_rows in (1, 5, None):
            got_links, got_probs = _sorted(*links_from_scores(pair, method, 0.001, temperature, block_rows=block_rows))
            numpy.testing.assert_array_equal(got_links, links)
            numpy.testing.assert_allclose(got_probs, probs, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", ["argmax", "itermax", "threshold"])
def test_links_without_a_stored_matrix_equal_the_stored_ones(method):
    rng = numpy.random.default_rng(3)
    t = rng.standard_normal((80, 16)).astype("float32")
    s = rng.standard_normal((60, 16)).astype("float32")
    stored, lazy = pair_scores(t, s), pair_scores(t, s, store=False)
    assert lazy.cosine is None
    a_links, a_probs = _sorted(*links_from_scores(stored, method, 0.001, 0.5))
    b_links, b_probs = _sorted(*links_from_scores(lazy, method, 0.001, 0.5, block_rows=7))
    numpy.testing.assert_array_equal(a_links, b_links)
    numpy.testing.assert_allclose(a_probs, b_probs, rtol=1e-4)


@pytest.mark.parametrize("method", ["argmax", "itermax", "threshold"])
def test_blockwise_sinkhorn_equals_the_dense_one(method):
    rng = numpy.random.default_rng(5)
    pair = _random_pair(rng, 30, 41)
    links, probs = _dense(pair, method, 0.01, 0.5, sinkhorn_iterations=30)
    got_links, got_probs = _sorted(*links_from_scores(pair, method, 0.01, 0.5, sinkhorn_iterations=30, block_rows=4))
    numpy.testing.assert_array_equal(got_links, links)
    numpy.testing.assert_allclose(got_probs, probs, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["argmax", "itermax", "threshold"])
def test_extraction_makes_no_matrix_sized_temporaries(method):
    """tracemalloc sees numpy's buffers: extraction over a stored 1500 x 1200 float32 matrix (6.9 MiB)
    must stay within a fraction of one matrix (the dense code took about 6 matrices, in float64 for itermax)."""
    rng = numpy.random.default_rng(0)
    pair = _random_pair(rng, 1500, 1200, width=8)
    matrix_bytes = pair.cosine.nbytes
    tracemalloc.start()
    try:
        links_from_scores(pair, method, 0.001, 1.0, block_rows=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * matrix_bytes, (peak, matrix_bytes)


def test_store_matrix_off_keeps_no_matrix_and_gives_the_same_links(tiny_encoder):
    source = spacy.blank("es")("La prueba reveló una deficiencia de calcio y potasio , probablemente resultado de su dieta .")
    text = "The test revealed a calcium and potassium deficiency , probably a result of her diet ."
    results = {}
    for store in (True, False):
        nlp = spacy.blank("en")
        nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder, store_matrix=store, method="itermax"))
        nlp.initialize()
        results[store] = nlp(make_pair(source, text, nlp))._.alignment
    assert results[True].matrix is not None and results[False].matrix is None
    numpy.testing.assert_array_equal(results[True].links, results[False].links)
    numpy.testing.assert_allclose(results[True].probs, results[False].probs, rtol=1e-4)


def test_a_pair_over_max_matrix_gib_warns_before_aligning(tiny_encoder):
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder, max_matrix_gib=0.001))
    nlp.initialize()
    words = ["calcium", "potassium", "deficiency", "test"] * 150  # 600 x 600 float32 = 1.4 MiB > 1 MiB
    pair = make_pair(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words), nlp)
    with pytest.warns(UserWarning, match=r"600 target x 600 source tokens needs about .* above max_matrix_gib=0.001"):
        nlp(pair)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp(make_pair(Doc(nlp.vocab, words=words[:10]), Doc(nlp.vocab, words=words[:10]), nlp))
    assert not [w for w in caught if "max_matrix_gib" in str(w.message)]
    assert estimate_pair_bytes(20000, 20000, store_matrix=True) <= 20000 * 20000 * 4 + 200 * 2**20
    assert estimate_pair_bytes(20000, 20000, store_matrix=False) < 200 * 2**20
    with pytest.raises(ValueError, match="max_matrix_gib must be > 0"):
        spacy.blank("en").add_pipe("clinical_aligner", config=aligner_config(tiny_encoder, max_matrix_gib=0))


def test_document_band_is_applied_in_place_and_on_the_fly_as_the_dense_mask():
    from spacy_clinalign.alignment.matrix import OUTSIDE_BAND, rectangles_mask
    from spacy_clinalign.alignment.relink import alignment_from_scores, restrict_to

    rng = numpy.random.default_rng(7)
    t = rng.standard_normal((40, 8)).astype("float32")
    s = rng.standard_normal((30, 8)).astype("float32")
    rectangles = numpy.array([[0, 15, 0, 12], [15, 40, 10, 30], [10, 20, 25, 30]])
    mask = rectangles_mask(rectangles, 0, 40, 30)
    dense = restrict_to(pair_scores(t, s), mask)  # the copy the dense code made
    in_place = pair_scores(t, s)
    in_place.restrict_to_band(rectangles)
    numpy.testing.assert_array_equal(in_place.cosine, dense.cosine)
    lazy = pair_scores(t, s, store=False)
    lazy.restrict_to_band(rectangles)
    numpy.testing.assert_allclose(lazy.cosine_rows(0, 40), dense.cosine, atol=1e-6)
    for method in ("argmax", "itermax", "threshold"):
        expected = alignment_from_scores(dense, method)
        assert (in_place.cosine[tuple(expected.links.T)] > OUTSIDE_BAND).all()
        assert alignment_from_scores(in_place, method) == expected
        numpy.testing.assert_array_equal(alignment_from_scores(lazy, method).links, expected.links)
