"""Encoder weights that do not fit, or hold NaN, are refused at initialize and at load; bio_ner_cnn has a
defined result for Docs without wordpieces; pipelines with bio_ner_cnn pickle."""
import io
import pickle
import shutil

import numpy
import pytest
import spacy
import torch
from safetensors.torch import load_file, save_file

from spacy_clinalign import make_pair
from tests.conftest import aligner_config, initialized_ner
from tests.reliability.test_reliability_security import _ner_listener, tamper

SRC = "La prueba reveló una deficiencia de calcio y potasio ."
TGT = "The test revealed a calcium and potassium deficiency ."


def _encoder_variant(tiny_encoder, tmp_path, edit):
    folder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, folder)
    weights = load_file(str(folder / "model.safetensors"))
    edit(weights)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def _aligner(encoder, **cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(encoder, **cfg))
    return nlp


def _drop_layer_1(weights):
    for key in [k for k in weights if k.startswith("encoder.layer.1.")]:
        del weights[key]


def test_initialize_refuses_weights_that_leave_layers_random(tiny_encoder, tmp_path):
    nlp = _aligner(_encoder_variant(tiny_encoder, tmp_path, _drop_layer_1))
    with pytest.raises(ValueError, match=r"randomly initialized.*encoder\.layer\.1\."):
        nlp.initialize()


def test_initialize_refuses_weights_of_another_model(tiny_encoder, tmp_path):
    def rename(weights):
        for key in list(weights):
            weights["other_model." + key] = weights.pop(key)

    nlp = _aligner(_encoder_variant(tiny_encoder, tmp_path, rename))
    with pytest.raises(ValueError, match="do not match the model"):
        nlp.initialize()


def test_initialize_refuses_nan_weights(tiny_encoder, tmp_path):
    def poison(weights):
        weights["encoder.layer.0.attention.self.query.weight"][0, 0] = float("nan")

    nlp = _aligner(_encoder_variant(tiny_encoder, tmp_path, poison))
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.attention\.self\.query\.weight.*NaN"):
        nlp.initialize()


def test_initialize_refuses_a_truncated_weights_file(tiny_encoder, tmp_path):
    folder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot load the encoder weights"):
        _aligner(folder).initialize()


def test_an_encoder_cut_below_its_top_layer_still_loads(tiny_encoder):
    """Layers above `layer` are unused on purpose: their weights are not an error."""
    nlp = _aligner(tiny_encoder, model={**aligner_config(tiny_encoder)["model"], "layer": 1})
    nlp.initialize()
    assert len(nlp(make_pair(spacy.blank("es")(SRC), TGT, nlp))._.alignment) > 0


@pytest.fixture(scope="module")
def saved_aligner(tiny_encoder, tmp_path_factory):
    nlp = _aligner(tiny_encoder)
    nlp.initialize()
    folder = tmp_path_factory.mktemp("saved_aligner") / "pipeline"
    nlp.to_disk(folder)
    return folder


def _edit_state(edit):
    def apply(payload):
        state = torch.load(io.BytesIO(payload["state"]), weights_only=True)
        edit(state)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        payload["state"] = buffer.getvalue()
    return apply


@pytest.mark.parametrize("problem,edit,message", [
    ("missing", lambda s: s.pop("encoder.layer.1.output.dense.weight"), "randomly initialized"),
    ("extra", lambda s: s.__setitem__("classifier.weight", torch.zeros(2, 2)), "match no parameter"),
    ("nan", lambda s: s["embeddings.word_embeddings.weight"].__setitem__((3, 3), float("nan")), "NaN or infinite"),
])
def test_load_refuses_saved_weights_that_do_not_fit_or_hold_nan(saved_aligner, tmp_path, problem, edit, message):
    """spacy-transformers retries a failed strict load with strict=False (a warning, random weights)."""
    folder = tmp_path / "pipeline"
    shutil.copytree(saved_aligner, folder)
    tamper(folder, "clinical_aligner", _edit_state(edit))
    with pytest.raises(ValueError, match=message):
        spacy.load(folder)


@pytest.fixture(scope="module")
def ner_inline(tiny_encoder):
    return initialized_ner(tiny_encoder)


@pytest.fixture(scope="module")
def ner_listener(tiny_encoder):
    return _ner_listener(tiny_encoder)


@pytest.fixture(params=["inline", "listener"])
def ner(request, ner_inline, ner_listener):
    """bio_ner_cnn with its own transformer, and listening to a `transformer` component (configs/ner_cnn.cfg)."""
    return ner_inline if request.param == "inline" else ner_listener


@pytest.mark.parametrize("text", ["\n", " ", "\n\n  \t", "\u200b", "\u0301", ""])
def test_bio_ner_cnn_on_a_doc_without_wordpieces(ner, text):
    doc = ner(text)
    assert len(doc.ents) == 0
    labels = ner.get_pipe("bio_ner_cnn").labels
    assert set(doc._.bio_probs) == set(labels)
    for probs in doc._.bio_probs.values():
        assert probs.shape == (len(doc), 3)
        numpy.testing.assert_array_equal(probs, numpy.tile([1.0, 0.0, 0.0], (len(doc), 1)))


def test_bio_ner_cnn_batch_mixing_empty_and_normal_docs(ner):
    texts = ["Paciente con neumonía y fiebre alta .", "\n", "\u200b", "Dolor abdominal y vómitos ."]
    assert [len(d.ents) for d in ner.pipe(["\n", "\u200b", " "], batch_size=4)] == [0, 0, 0]
    alone = [ner(t) for t in texts]
    batch = list(ner.pipe(texts, batch_size=4))
    assert len(batch[1].ents) == len(batch[2].ents) == 0
    for a, b in zip(alone, batch):  # the untrained model's probabilities are near ties: compare them, not spans
        for label in a._.bio_probs:
            numpy.testing.assert_allclose(a._.bio_probs[label], b._.bio_probs[label], atol=1e-5)


def test_whitespace_tokens_are_never_inside_an_entity(ner):
    doc = ner("Paciente con neumonía \n\n y fiebre alta .\n")
    spaces = [t.i for t in doc if t.is_space]
    assert spaces and not any(e.start <= i < e.end for e in doc.ents for i in spaces)
    for probs in doc._.bio_probs.values():
        numpy.testing.assert_array_equal(probs[spaces], numpy.tile([1.0, 0.0, 0.0], (len(spaces), 1)))


def test_pipelines_with_bio_ner_cnn_pickle(ner, tiny_encoder):
    text = "Paciente con neumonía y fiebre alta ."
    expected = ner(text)
    again = pickle.loads(pickle.dumps(ner))
    doc = again(text)
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [(e.start, e.end, e.label_) for e in expected.ents]
    for label, probs in expected._.bio_probs.items():
        numpy.testing.assert_allclose(doc._.bio_probs[label], probs, atol=1e-5)
    aligner = _aligner(tiny_encoder)
    aligner.initialize()
    pair = make_pair(spacy.blank("es")(SRC), TGT, aligner)
    links = aligner(pair)._.alignment.links.tolist()
    assert pickle.loads(pickle.dumps(aligner))(make_pair(spacy.blank("es")(SRC), TGT, aligner))._.alignment.links.tolist() == links
