"""es_clinical_ner ships as an fp16 delta of the one trained layer of an encoder cut at a middle layer
(`spacy-clinalign.TransformerModel.v1` layer), plus the bio_ner_cnn head: the delta round-trips through
`pipelines build` to the trained pipeline's output, is refused on another base, and the shipped part is
small, matches its checksums and carries figures re-measured from the built pipeline."""
import numpy
import pytest
import spacy

from spacy_clinalign.cli import main
from spacy_clinalign.encoders.tiny import build_tiny_bert
from spacy_clinalign.models.frozen_layers import transformer_layers
from spacy_clinalign.shipping.checksums import iter_parts, verify_checksums
from spacy_clinalign.shipping.deltas import extract_delta, read_delta, update_checksums
from spacy_clinalign.weights import WEIGHTS_DIR
from tests.shipping.conftest import train_and_save
from tests.pipeline.test_bio_ner_cnn import make_examples

TEXT = "Paciente con neumonía y fiebre alta ."
SHIPPED_LAYER = 8  # configs/ner_cnn_shipped.cfg: read layer 8 of 12, train only it


@pytest.fixture(scope="module")
def cut_ner(tmp_path_factory):
    """A 3-layer base; NER reads layer 2 (layer 3 is cut), layer 1 frozen, so only layer 2 (index 1) trains."""
    folder = tmp_path_factory.mktemp("cut_ner")
    base = build_tiny_bert(folder / "base", layers=3)
    nlp = spacy.blank("es")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-clinalign.TransformerModel.v1", "name": str(base), "layer": 2, "frozen_layers": 1,
        "frozen_cache_size": 100,
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24}}})
    nlp.add_pipe("bio_ner_cnn", config={"spans_key": "entities", "model": {
        "@architectures": "spacy-clinalign.CNNTagger.v1", "width": 32, "dropout": 0.0,
        "tok2vec": {"@architectures": "spacy-transformers.TransformerListener.v1", "upstream": "*",
                    "pooling": {"@layers": "reduce_mean.v1"}}}})
    trained = train_and_save(nlp, make_examples(nlp, spans_key="entities"), 10, folder / "model")
    weights = folder / "weights"
    extract_delta(trained, base, weights / "es_clinical_ner", {"figures": {"ner_strict_f": 0.2, "command": "x"}})
    update_checksums(weights, "es_clinical_ner")
    return base, trained, weights


def test_cut_encoder_delta_holds_only_the_trained_layer(cut_ner):
    _, _, weights = cut_ner
    card, tensors = read_delta(weights / "es_clinical_ner")
    assert tensors and all(name.startswith("encoder.layer.1.") for name in tensors)
    assert card["layer"] == 2 and card["base"]["num_hidden_layers"] == 3  # the full base, cut when built
    assert card["heads"] == ["bio_ner_cnn", "transformer"]


def test_build_restores_the_cut_encoder_and_the_trained_output(cut_ner, tmp_path):
    base, trained, weights = cut_ner
    main(["pipelines", "build", str(tmp_path), "--encoder", str(base), "--weights", str(weights),
          "--only", "es_clinical_ner", "--no-progress"])
    built = spacy.load(tmp_path / "es_clinical_ner")
    assert len(transformer_layers(built.get_pipe("transformer").model.transformer)) == 2
    want, got = spacy.load(trained)(TEXT), built(TEXT)
    for label, probs in want._.bio_probs.items():
        numpy.testing.assert_allclose(got._.bio_probs[label], probs, atol=2e-3)  # fp16 rounding of layer 2
    assert built.meta["performance"] == {"ner_strict_f": 0.2}


@pytest.mark.parametrize("kwargs,field", [({"vocab_size": 100}, "vocab_size"), ({"layers": 4}, "num_hidden_layers")])
def test_cut_encoder_delta_on_another_base_is_refused(cut_ner, tmp_path, kwargs, field):
    _, _, weights = cut_ner
    other = build_tiny_bert(tmp_path / "other", **{"layers": 3, **kwargs})
    with pytest.raises(SystemExit, match=rf"es_clinical_ner.*refused.*{field}: the delta was made for \d+, "
                                         rf"this encoder has \d+"):
        main(["pipelines", "build", str(tmp_path / "out"), "--encoder", str(other), "--weights", str(weights),
              "--only", "es_clinical_ner", "--no-progress"])
    assert not (tmp_path / "out" / "es_clinical_ner").exists()


def test_the_shipped_ner_is_small_and_has_its_figures():
    if "es_clinical_ner" not in iter_parts(WEIGHTS_DIR):
        pytest.skip("es_clinical_ner is not shipped in this checkout")
    files = verify_checksums(WEIGHTS_DIR, "es_clinical_ner")
    card, tensors = read_delta(WEIGHTS_DIR / "es_clinical_ner")
    layers = {int(name.split(".")[2]) for name in tensors}
    assert all(name.startswith("encoder.layer.") for name in tensors) and layers == {SHIPPED_LAYER - 1}
    assert card["layer"] == SHIPPED_LAYER and card["base"]["num_hidden_layers"] == 12
    assert card["delta"]["tensors"] == len(tensors) == 16
    size = sum((WEIGHTS_DIR / name).stat().st_size for name in files)
    assert size <= 10 * 2**20, f"es_clinical_ner takes {size / 2**20:.1f} MiB, above its 10 MiB share"
    figures = card["figures"]
    for key in ("command", "ner_strict_f", "ner_char_f", "ner_per_type.DISEASE.strict_f",
                "ner_per_type.PROCEDURE.strict_f", "ner_per_type.SYMPTOM.strict_f"):
        assert key in figures, f"the shipped NER card lacks {key}"
    assert "evaluate-ner" in figures["command"] and "spaccc/dev" in figures["command"]
    assert card["training"]["steps"] > 0 and "held out" in card["training"]["data"]
