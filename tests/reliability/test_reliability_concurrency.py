"""Threads sharing one `nlp`: inference must give the single-thread result, with dropout in the encoder."""
import threading

import numpy
import pytest
import spacy

from spacy_clinalign import make_pair
from tests.conftest import encoder_with_dropout, initialized_aligner

SRC = "La prueba reveló una deficiencia de calcio y potasio , probablemente resultado de su dieta ."
TGT = "The test revealed a calcium and potassium deficiency , probably a result of her diet ."
N_THREADS, N_PAIRS = 4, 16


@pytest.fixture(scope="module")
def dropout_encoder(tiny_encoder, tmp_path_factory):
    """The tiny encoder with strong dropout, so any forward pass in train mode changes the vectors."""
    return encoder_with_dropout(tiny_encoder, tmp_path_factory.mktemp("dropout_bert") / "encoder", 0.5)


@pytest.fixture(scope="module")
def nlp(dropout_encoder):
    return initialized_aligner(dropout_encoder)


def _pairs(nlp):
    words_src, words_tgt = SRC.split(), TGT.split()
    es = spacy.blank("es")
    return [make_pair(es(" ".join(words_src[k % 5:] + words_src[:k % 5])), " ".join(words_tgt[k % 7:] + words_tgt[:k % 7]), nlp)
            for k in range(N_PAIRS)]


def _result(doc):
    return doc._.alignment.links.tolist(), doc._.alignment.matrix.copy()


def _run_threads(target):
    barrier = threading.Barrier(N_THREADS)
    results, errors = [None] * N_THREADS, []

    def work(t):
        try:
            barrier.wait()
            results[t] = target()
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(N_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_threads_give_the_single_thread_alignments(nlp):
    single = [_result(nlp(doc)) for doc in _pairs(nlp)]
    per_thread = _run_threads(lambda: [_result(nlp(doc)) for doc in _pairs(nlp)])
    for results in per_thread:
        for (links, matrix), (links1, matrix1) in zip(results, single):
            assert links == links1
            numpy.testing.assert_allclose(matrix, matrix1, atol=1e-6)


def test_threads_with_nlp_pipe_batches(nlp):
    single = [_result(d) for d in nlp.pipe(_pairs(nlp), batch_size=4)]
    per_thread = _run_threads(lambda: [_result(d) for d in nlp.pipe(_pairs(nlp), batch_size=4)])
    for results in per_thread:
        assert [r[0] for r in results] == [r[0] for r in single]


def test_inference_leaves_the_encoder_in_eval_mode(nlp):
    """PyTorchShim.predict switches back to train mode after each call: the next call's dropout depends on timing."""
    nlp(_pairs(nlp)[0])
    torch_model = nlp.get_pipe("clinical_aligner").model.layers[0].layers[0].shims[0]._model
    assert not torch_model.training


def test_training_after_inference_still_uses_dropout(nlp):
    """The eval mode of inference must not leak into training: begin_update runs in train mode."""
    transformer = nlp.get_pipe("clinical_aligner").model.layers[0]
    doc = _pairs(nlp)[0]
    a = transformer.predict([doc]).model_output.last_hidden_state.detach().numpy()
    b, _ = transformer.begin_update([doc])
    assert not numpy.allclose(a, b.model_output.last_hidden_state.detach().numpy())
    c = transformer.predict([doc]).model_output.last_hidden_state.detach().numpy()
    numpy.testing.assert_allclose(a, c, atol=1e-6)
