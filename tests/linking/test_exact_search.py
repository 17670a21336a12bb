"""The exact dense search (torch product + top-k over faiss's own vectors) against faiss's search, the
order of equal scores, and each distinct query / pair encoded once with the same rows as before."""
import numpy
import pytest

from spacy_clinalign.linking.indexes import DenseIndex, exact_top
from spacy_clinalign.linking.inference import unique_texts
from tests.linking.test_linking_batching import QUERIES, _linker
from tests.pipeline.test_icd_linker import link_encoder  # noqa: F401


def _unit(rows, dim, seed):
    x = numpy.random.default_rng(seed).standard_normal((rows, dim)).astype("float32")
    return x / numpy.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_matches_faiss_on_distinct_scores():
    vectors, queries = _unit(3000, 32, 0), _unit(150, 32, 1)  # more than one query block
    index = DenseIndex(vectors)
    assert numpy.shares_memory(index.vectors(), index.vectors()) and numpy.array_equal(index.vectors(), vectors)
    scores, rows = exact_top(index.vectors(), queries, 40)
    faiss_scores, faiss_rows = index.index.search(queries, 40)
    numpy.testing.assert_array_equal(rows, faiss_rows)
    numpy.testing.assert_allclose(scores, faiss_scores, atol=1e-5)
    codes = [f"C{i % 700}" for i in range(len(vectors))]
    hits = index.search(queries, codes, k=10)
    assert all(len({c for c, _, _ in per}) == 10 for per in hits)
    assert [h[2] for h in hits[0]][:1] == [int(faiss_rows[0, 0])]


def test_equal_scores_are_ordered_by_row():
    base = _unit(5, 16, 2)
    vectors = numpy.concatenate([base, base, base])  # rows i, i+5 and i+10 score the same
    scores, rows = exact_top(vectors, base[:1], 6)
    assert rows[0].tolist()[:3] == [0, 5, 10]
    assert numpy.all(numpy.diff(scores[0]) <= 0)
    assert exact_top(vectors, base[:1], 100)[1].shape == (1, 15)  # never more than the index holds


def test_hnsw_index_still_searches_with_faiss():
    vectors = _unit(500, 16, 3)
    index = DenseIndex(vectors, kind="hnsw")
    with pytest.raises(ValueError, match="exact"):
        index.vectors()
    hits = index.search(vectors[:3], [f"C{i}" for i in range(500)], k=5)
    assert [per[0][0] for per in hits] == ["C0", "C1", "C2"]


def test_unique_texts_index_every_input():
    unique, index = unique_texts(["fiebre", "tos", "fiebre", "dolor", "tos"])
    assert unique == ["fiebre", "tos", "dolor"]
    assert [unique[i] for i in index] == ["fiebre", "tos", "fiebre", "dolor", "tos"]
    assert unique_texts([])[0] == [] and len(unique_texts([])[1]) == 0


def test_repeated_queries_and_pairs_are_encoded_once_with_the_same_rows(link_encoder):
    linker = _linker(link_encoder, batch_size=4)
    repeated = QUERIES + QUERIES[::-1] + QUERIES[:3]
    seen = []
    real = linker.bi_encoder.tokenizer

    def counting_tokenizer(texts, *args, **kwargs):
        seen.extend(texts)
        return real(texts, *args, **kwargs)

    linker.bi_encoder.tokenizer = counting_tokenizer
    vectors = linker.bi_encoder.encode(repeated)
    linker.bi_encoder.tokenizer = real
    assert len(seen) == len(set(QUERIES))
    numpy.testing.assert_allclose(vectors, linker.bi_encoder.encode(QUERIES)[[QUERIES.index(q) for q in repeated]],
                                  atol=1e-6)
    pairs = [(q, d) for q in QUERIES[:3] for d in linker.texts[:4]]
    doubled = linker.cross_encoder.score(pairs + pairs[::-1])
    numpy.testing.assert_allclose(doubled, numpy.concatenate([linker.cross_encoder.score(pairs),
                                                              linker.cross_encoder.score(pairs[::-1])]), atol=1e-6)
