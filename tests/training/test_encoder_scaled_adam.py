"""`spacy-clinalign.EncoderScaledAdam.v1`: heads train at learn_rate, encoder (PyTorch) parameters at
learn_rate * encoder_lr_scale, in one spaCy optimizer."""
import numpy
import pytest
import spacy
import torch
from spacy.util import registry
from thinc.api import Config

from tests.pipeline.test_bio_ner_cnn import make_examples

SPANS = {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24}


def optimizer(**settings):
    config = Config({"o": {"@optimizers": "spacy-clinalign.EncoderScaledAdam.v1", **settings}})
    return registry.resolve(config)["o"]


def test_encoder_keys_get_the_scaled_rate():
    opt = optimizer(learn_rate=0.1, encoder_lr_scale=0.25, L2=0.0, grad_clip=0.0)
    steps = {}
    for key in [(1, "W"), (2, "encoder.layer.7.output.dense.weight")]:
        weights, gradient = numpy.ones(4, dtype="f"), numpy.full(4, 0.5, dtype="f")
        new, _ = opt(key, weights.copy(), gradient)
        steps[key[1]] = float(numpy.abs(1.0 - new).mean())
    assert steps["W"] == pytest.approx(0.1, rel=1e-3)  # Adam's first step is learn_rate per weight
    assert steps["encoder.layer.7.output.dense.weight"] == pytest.approx(0.025, rel=1e-3)


def test_bad_scale_is_refused():
    with pytest.raises(ValueError, match="encoder_lr_scale must be >= 0"):
        optimizer(encoder_lr_scale=-1.0)


@pytest.mark.parametrize("scale", [0.0, 1.0])
def test_spacy_update_moves_the_encoder_only_when_its_rate_is_not_zero(tiny_encoder, scale):
    nlp = spacy.blank("es")
    nlp.add_pipe("transformer", config={"model": {"@architectures": "spacy-clinalign.TransformerModel.v1",
                                                  "name": str(tiny_encoder), "get_spans": SPANS}})
    nlp.add_pipe("bio_ner_cnn", config={"model": {
        "@architectures": "spacy-clinalign.CNNTagger.v1", "width": 32, "dropout": 0.0,
        "tok2vec": {"@architectures": "spacy-transformers.TransformerListener.v1", "upstream": "*",
                    "pooling": {"@layers": "reduce_mean.v1"}}}})
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    opt = optimizer(learn_rate=1e-2, encoder_lr_scale=scale)
    encoder = nlp.get_pipe("transformer").model.transformer
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    head = nlp.get_pipe("bio_ner_cnn").model.get_ref("output_layer").get_param("W").copy()
    for _ in range(2):  # the encoder first moves on the second update here
        nlp.update(examples, sgd=opt, drop=0.0)
    moved = [k for k, v in encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert (not moved) if scale == 0.0 else moved
    assert not numpy.array_equal(nlp.get_pipe("bio_ner_cnn").model.get_ref("output_layer").get_param("W"), head)
