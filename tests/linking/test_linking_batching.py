"""Linking inference: batching and length sorting give the same scores and rankings as one item at a time
in float32; the reranker's input cap; the opt-in int8 copy (CPU) never replaces the saved float32 model."""
import pickle

import numpy
import pytest
import spacy
import torch

from spacy_clinalign.linking.bi_encoder import BiEncoder
from spacy_clinalign.linking.cross_encoder import CrossEncoder
from spacy_clinalign.linking.inference import inference_model
from spacy_clinalign.linking.linker import CodeLinker
from tests.pipeline.test_icd_linker import ENTRIES, MENTIONS, NO_PREFIX, catalog, link_encoder, make_doc  # noqa: F401

QUERIES = MENTIONS + ["dolor torácico opresivo irradiado al brazo izquierdo", "tos", "hipertensión arterial esencial"]


def _linker(encoder, batch_size):
    bi = BiEncoder(encoder, "", "", batch_size=batch_size)
    cross = CrossEncoder(encoder, batch_size=batch_size)
    return CodeLinker(catalog(), bi, cross).build()


def test_batched_and_sorted_scores_equal_one_at_a_time(link_encoder):
    one = _linker(link_encoder, batch_size=1)
    many = _linker(link_encoder, batch_size=4)
    many.cross_encoder.model.load_state_dict(one.cross_encoder.model.state_dict())  # same random head
    numpy.testing.assert_allclose(many.bi_encoder.encode(QUERIES), one.bi_encoder.encode(QUERIES), atol=1e-5)
    pairs = [(q, d) for q in QUERIES for d in one.texts[:6]]
    numpy.testing.assert_allclose(many.cross_encoder.score(pairs), one.cross_encoder.score(pairs), atol=1e-4)
    for rerank in (False, True):
        a = one.link(QUERIES, k=5, rerank=rerank)
        b = many.link(QUERIES, k=5, rerank=rerank)
        assert [[c.code for c in per] for per in a] == [[c.code for c in per] for per in b]


def test_reranker_input_is_capped(link_encoder):
    cross = CrossEncoder(link_encoder, max_length=16)
    short = ("neumonía", "Pneumonia, unspecified organism")
    long = ("neumonía", "Pneumonia, unspecified organism " + "with many more words " * 40)
    scores = cross.score([short, long])
    assert scores[0] != scores[1]  # the long description still changes the score within the cap
    capped = cross.score([long, (long[0], long[1] + " and even more")])
    assert capped[0] == pytest.approx(capped[1], abs=1e-6)  # beyond the cap nothing is read
    linker = CodeLinker(catalog(), BiEncoder(link_encoder, "", ""), cross)
    linker.configure(rerank_max_length=32)
    assert cross.max_length == 32
    with pytest.raises(ValueError, match="rerank_max_length"):
        linker.configure(rerank_max_length=2)


def test_int8_is_an_inference_copy_and_never_saved(link_encoder, tmp_path):
    linker = _linker(link_encoder, batch_size=8)
    fp32 = linker.link(QUERIES, k=5, rerank=True)
    fp32_vectors = linker.bi_encoder.encode(QUERIES)
    before = {k: v.clone() for k, v in linker.bi_encoder.model.state_dict().items()}
    linker.configure(quantize="int8")
    int8 = linker.link(QUERIES, k=5, rerank=True)
    copy = inference_model(linker.bi_encoder)
    assert copy is not linker.bi_encoder.model
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in copy.modules())
    assert all(torch.equal(before[k], v) for k, v in linker.bi_encoder.model.state_dict().items())
    assert len(int8) == len(fp32) and all(len(a) == len(b) for a, b in zip(int8, fp32))
    linker.bi_encoder.save(tmp_path / "bi")  # writes the float32 model: reloaded, it encodes as before int8
    numpy.testing.assert_allclose(BiEncoder(tmp_path / "bi", "", "").encode(QUERIES), fp32_vectors, atol=1e-6)
    clone = pickle.loads(pickle.dumps(linker.bi_encoder))
    assert "_int8" not in clone.__dict__ and clone.quantize == "int8"
    linker.configure(quantize="none")
    assert inference_model(linker.bi_encoder) is linker.bi_encoder.model
    assert [[c.code for c in per] for per in linker.link(QUERIES, k=5, rerank=True)] == [[c.code for c in per] for per in fp32]


def test_icd_linker_quantize_setting(link_encoder, tmp_path):
    nlp = spacy.blank("es")
    pipe = nlp.add_pipe("icd_linker", config={**NO_PREFIX, "quantize": "int8", "rerank_max_length": 48})
    pipe.initialize(catalog=catalog(), bi_encoder=str(link_encoder), cross_encoder=str(link_encoder))
    doc = nlp(make_doc(nlp))
    assert all(e.kb_id_ for e in doc.ents)
    assert pipe.linker.bi_encoder.quantize == "int8" and pipe.linker.cross_encoder.max_length == 48
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("icd_linker").cfg["quantize"] == "int8"
    with pytest.raises(ValueError, match="quantize must be one of"):
        spacy.blank("es").add_pipe("icd_linker", config={"quantize": "fp8"})


def test_rerank_probabilities_mix_reranker_and_retrieval_log_linearly():
    from spacy_clinalign.linking.linker import RETRIEVAL_SCALE, rerank_probabilities

    logits, cosines = [2.0, 0.0, -1.0], [0.80, 0.90, 0.85]
    numpy.testing.assert_allclose(rerank_probabilities(logits, cosines, 0.0), numpy.exp(logits) / numpy.exp(logits).sum(),
                                  rtol=1e-6)
    by_retrieval = rerank_probabilities(logits, cosines, 1.0)
    assert list(numpy.argsort(-by_retrieval)) == [1, 2, 0]  # the bi-encoder's order
    mixed = rerank_probabilities(logits, cosines, 0.5)
    want = numpy.exp(0.5 * numpy.array(logits) + 0.5 * RETRIEVAL_SCALE * numpy.array(cosines))
    numpy.testing.assert_allclose(mixed, want / want.sum(), rtol=1e-5)
    assert mixed.sum() == pytest.approx(1.0)


def test_retrieval_weight_moves_the_ranking_from_the_reranker_to_the_retrieval_order(link_encoder):
    linker = _linker(link_encoder, batch_size=8)
    retrieved = linker.link(QUERIES, k=5, rerank=False)
    reranked = linker.link(QUERIES, k=5, rerank=True)
    kept = linker.link(QUERIES, k=5, rerank=True, retrieval_weight=1.0)
    codes = lambda ranked: [[c.code for c in per] for per in ranked]  # noqa: E731
    assert codes(kept) == codes(retrieved)
    assert codes(reranked) != codes(retrieved)  # the (random-head) reranker reorders, so the weight matters
    with pytest.raises(ValueError, match="retrieval_weight must be within"):
        linker.link(QUERIES, k=5, retrieval_weight=1.5)


def test_icd_linker_rerank_retrieval_weight_setting(link_encoder, tmp_path):
    nlp = spacy.blank("es")
    pipe = nlp.add_pipe("icd_linker", config={**NO_PREFIX, "rerank_retrieval_weight": 1.0})
    pipe.initialize(catalog=catalog(), bi_encoder=str(link_encoder), cross_encoder=str(link_encoder))
    doc = nlp(make_doc(nlp))
    plain = spacy.blank("es")
    bare = plain.add_pipe("icd_linker", config={**NO_PREFIX, "rerank": False})
    bare.initialize(catalog=catalog(), bi_encoder=str(link_encoder))
    want = plain(make_doc(plain))
    assert [e.kb_id_ for e in doc.ents] == [e.kb_id_ for e in want.ents]  # weight 1: the retrieval's best code
    nlp.to_disk(tmp_path / "p")
    assert spacy.load(tmp_path / "p").get_pipe("icd_linker").cfg["rerank_retrieval_weight"] == 1.0
    with pytest.raises(ValueError, match="rerank_retrieval_weight must be within"):
        spacy.blank("es").add_pipe("icd_linker", config={"rerank_retrieval_weight": -0.1})
