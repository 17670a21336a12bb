"""`quantize = "int8"` on clinical_aligner: int8 inference copy, float32 saving, refusal in training; and
length-bucketed encoder calls (same vectors, input order kept)."""
import pickle

import numpy
import pytest
import spacy
import torch

from spacy_clinalign import make_pair
from spacy_clinalign.models.length_buckets import length_groups, predict_by_length
from spacy_clinalign.models.quantize import Int8HFShim, QuantizedTrainingError, quantization_of
from spacy_clinalign.models.safe_shim import SafeHFShim
from spacy_clinalign.pipelines import align_word_pairs
from spacy_clinalign.io.readers import make_pair_example
from tests.conftest import initialized_aligner

PAIRS = [
    ("La prueba reveló una deficiencia de calcio y potasio .", "The test revealed a calcium and potassium deficiency ."),
    ("dolor abdominal .", "abdominal pain ."),
    ("paciente de 67 años con neumonía grave y fiebre alta desde hace tres días .",
     "patient aged 67 with severe pneumonia and high fever for three days ."),
    ("fiebre .", "fever ."),
]


def _shim(nlp):
    return next(shim for node in nlp.get_pipe("clinical_aligner").model.walk() for shim in node.shims
                if isinstance(shim, SafeHFShim))


def _n_int8_linears(module):
    return sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in module.modules())


@pytest.fixture(scope="module")
def fp32_docs(tiny_encoder):
    nlp = initialized_aligner(tiny_encoder)
    return align_word_pairs(nlp, [(s.split(), t.split()) for s, t in PAIRS], progress=False)


def test_int8_aligns_through_a_quantized_copy_and_leaves_float32_weights(tiny_encoder, fp32_docs):
    nlp = initialized_aligner(tiny_encoder, quantize="int8")
    shim = _shim(nlp)
    before = {k: v.clone() for k, v in shim._model.state_dict().items()}
    docs = align_word_pairs(nlp, [(s.split(), t.split()) for s, t in PAIRS], progress=False)
    assert isinstance(shim, Int8HFShim) and quantization_of(nlp.get_pipe("clinical_aligner").model) == "int8"
    int8 = shim._int8_model()
    assert _n_int8_linears(int8) > 0
    assert _n_int8_linears(shim._model) == 0  # the float32 model is untouched
    assert all(torch.equal(before[k], v) for k, v in shim._model.state_dict().items())
    # the embedding table is shared, not copied
    assert int8.embeddings.word_embeddings.weight is shim._model.embeddings.word_embeddings.weight
    for d8, d32 in zip(docs, fp32_docs):
        assert d8._.alignment.matrix.shape == d32._.alignment.matrix.shape
        numpy.testing.assert_allclose(d8._.alignment.matrix, d32._.alignment.matrix, atol=0.1)
        assert not numpy.array_equal(d8._.alignment.matrix, d32._.alignment.matrix)  # it did run in int8


def test_int8_copy_is_rebuilt_when_the_weights_change(tiny_encoder):
    nlp = initialized_aligner(tiny_encoder, quantize="int8")
    shim = _shim(nlp)
    first = shim._int8_model()
    assert shim._int8_model() is first
    with torch.no_grad():
        next(shim._model.parameters()).add_(1.0)
    assert shim._int8_model() is not first


def test_int8_pipeline_saves_float32_and_loads_safely(tiny_encoder, tmp_path):
    nlp = initialized_aligner(tiny_encoder, quantize="int8")
    doc = nlp(make_pair(spacy.blank("es")(PAIRS[0][0]), PAIRS[0][1], nlp))
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("clinical_aligner").cfg["quantize"] == "int8"
    saved = _shim(loaded)._model.state_dict()
    assert all(v.dtype == torch.float32 for v in saved.values() if v.is_floating_point())
    assert all(torch.equal(saved[k], v) for k, v in _shim(nlp)._model.state_dict().items())
    again = loaded(make_pair(spacy.blank("es")(PAIRS[0][0]), PAIRS[0][1], loaded))
    numpy.testing.assert_allclose(again._.alignment.matrix, doc._.alignment.matrix, atol=1e-5)
    assert isinstance(_shim(loaded), Int8HFShim)
    # pickling carries the float32 model only; the copy is rebuilt on first use
    _shim(loaded)._int8_model()
    clone = pickle.loads(pickle.dumps(loaded))
    assert "_int8_cache" not in _shim(clone).__dict__
    third = clone(make_pair(spacy.blank("es")(PAIRS[0][0]), PAIRS[0][1], clone))
    numpy.testing.assert_allclose(third._.alignment.matrix, doc._.alignment.matrix, atol=1e-5)


def test_int8_refuses_training_and_none_trains(tiny_encoder):
    nlp = initialized_aligner(tiny_encoder, quantize="int8")
    aligner = nlp.get_pipe("clinical_aligner")
    eg = make_pair_example(nlp.vocab, "dolor abdominal .".split(), "abdominal pain .".split(), [(0, 1, True), (1, 0, True), (2, 2, True)])
    with pytest.raises(QuantizedTrainingError, match="quantize = \"none\""):
        nlp.update([eg], sgd=nlp.create_optimizer())
    aligner.cfg["quantize"] = "none"
    losses = nlp.update([eg], sgd=nlp.create_optimizer())
    assert losses["clinical_aligner"] > 0
    assert type(_shim(nlp)) is SafeHFShim


def test_unknown_quantize_value_is_an_error(tiny_encoder):
    with pytest.raises(ValueError, match="quantize must be one of"):
        initialized_aligner(tiny_encoder, quantize="int4")


def test_length_groups_sort_and_cut():
    assert length_groups([5, 1, 3, 1, 9], 2) == [[1, 3], [2, 0], [4]]
    assert length_groups([5, 1, 3, 1, 9], 16, max_total=6) == [[1, 3, 2], [0], [4]]  # 9 > 6: alone
    with pytest.raises(ValueError):
        length_groups([1], 0)


def test_bucketed_prediction_keeps_order_and_vectors(tiny_encoder):
    nlp = initialized_aligner(tiny_encoder)
    model = nlp.get_pipe("clinical_aligner").model
    docs = [nlp.make_doc(t) for pair in PAIRS for t in pair]
    whole = model.predict(docs)
    grouped = predict_by_length(model.predict, docs, group_size=3, max_chars=60)
    assert len(grouped) == len(docs)
    for a, b, doc in zip(whole, grouped, docs):
        assert a.shape == b.shape == (len(doc), a.shape[1])
        numpy.testing.assert_allclose(a, b, atol=1e-5)


def test_align_word_pairs_returns_the_input_order(tiny_encoder):
    nlp = initialized_aligner(tiny_encoder)
    docs = align_word_pairs(nlp, [(s.split(), t.split()) for s, t in PAIRS], batch_size=2, progress=False)
    assert [d.text.split() for d in docs] == [t.split() for _, t in PAIRS]
    assert [[w.text for w in d._.source] for d in docs] == [s.split() for s, _ in PAIRS]


def test_each_encoder_call_holds_at_most_the_character_budget(tiny_encoder):
    """Memory: long Docs are not encoded all in one call (the call's activations hold every window)."""
    nlp = initialized_aligner(tiny_encoder)
    docs = [nlp.make_doc(" ".join(["palabra"] * n)) for n in (3, 40, 5, 60, 2, 80)]
    calls = []

    def predict(batch):
        calls.append(sum(len(d.text) for d in batch))
        return [len(d) for d in batch]

    assert predict_by_length(predict, docs, group_size=16, max_chars=500) == [len(d) for d in docs]
    assert len(calls) > 1 and all(c <= 500 or c == max(len(d.text) for d in docs) for c in calls)


def test_aligner_config_streams_its_training_corpus():
    """configs/aligner.cfg: max_epochs = -1 makes spaCy stream the corpus instead of holding it in a list."""
    from pathlib import Path

    from thinc.api import Config

    cfg = Config().from_disk(Path(__file__).resolve().parents[2] / "configs" / "aligner.cfg", interpolate=False)
    assert cfg["training"]["max_epochs"] == -1


def test_smoothed_linear_keeps_the_float_product():
    """x / s through W * s is the same product: smoothing moves scale between input and weight, nothing else."""
    from spacy_clinalign.models.quantize import SmoothedLinear

    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 4)
    scale = torch.rand(6) * 10 + 0.1
    moved = torch.nn.Linear(6, 4)
    with torch.no_grad():
        moved.weight.copy_(linear.weight * scale)
        moved.bias.copy_(linear.bias)
    x = torch.randn(3, 5, 6)
    torch.testing.assert_close(SmoothedLinear(moved, 1.0 / scale)(x), linear(x), rtol=1e-5, atol=1e-5)


def _outlier_encoder(tiny_encoder):
    """The tiny BERT with an outlier channel: the embeddings LayerNorm's gamma x 60 on channel 3 (the kind of
    channel that per-tensor int8 activations clip, as in XLM-R / e5's LayerNorm outputs)."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(tiny_encoder)).eval()
    with torch.no_grad():
        model.embeddings.LayerNorm.weight[3] *= 60
    return model, AutoTokenizer.from_pretrained(str(tiny_encoder))


def test_smoothing_reduces_int8_error_on_outlier_channels(tiny_encoder):
    from spacy_clinalign.models.quantize import Int8Recipe, int8_copy

    model, tokenizer = _outlier_encoder(tiny_encoder)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = tokenizer([t for pair in PAIRS for t in pair], padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**batch).last_hidden_state
        errors = {}
        for alpha in (None, 0.8):
            copy = int8_copy(model, tokenizer, Int8Recipe(smooth_alpha=alpha))
            assert _n_int8_linears(copy) > 0
            errors[alpha] = float((copy(**batch).last_hidden_state - ref).abs().mean())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # float32 weights untouched
    assert errors[0.8] < 0.7 * errors[None], errors


def test_float_last_layers_stay_float32(tiny_encoder):
    from spacy_clinalign.models.quantize import Int8Recipe, int8_copy

    model, tokenizer = _outlier_encoder(tiny_encoder)
    copy = int8_copy(model, tokenizer, Int8Recipe(smooth_alpha=0.8, float_last_layers=1))
    last = copy.encoder.layer[-1]
    assert _n_int8_linears(last) == 0 and _n_int8_linears(copy.encoder.layer[0]) > 0


def test_default_recipe_keeps_the_last_layer_float32(tiny_encoder):
    """The default int8 copy (chosen on binaryalign en-ja) quantizes every layer but the one the aligner reads."""
    from spacy_clinalign.models.quantize import int8_copy

    model, tokenizer = _outlier_encoder(tiny_encoder)
    copy = int8_copy(model, tokenizer)
    assert _n_int8_linears(copy.encoder.layer[-1]) == 0
    assert all(_n_int8_linears(layer) > 0 for layer in copy.encoder.layer[:-1])


def test_smoothing_needs_the_tokenizer(tiny_encoder):
    from spacy_clinalign.models.quantize import Int8Recipe, int8_copy

    model, _ = _outlier_encoder(tiny_encoder)
    with pytest.raises(ValueError, match="tokenizer"):
        int8_copy(model, None, Int8Recipe(smooth_alpha=0.8))
