"""`spacy-clinalign.TransformerModel.v1`'s `layer`: the shared transformer is cut after that hidden layer, so
listeners (bio_ner_cnn) read a middle layer of the encoder and the layers above it are never run or stored."""
import pytest
import spacy
import torch
from transformers import AutoModel

from spacy_clinalign.models.frozen_layers import transformer_layers

SPANS = {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24}


def transformer_pipeline(encoder, **model):
    nlp = spacy.blank("es")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-clinalign.TransformerModel.v1", "name": str(encoder), "get_spans": SPANS, **model}})
    nlp.initialize()
    return nlp


def test_layer_cuts_the_encoder_and_listeners_read_that_layer(tiny_encoder, tmp_path):
    nlp = transformer_pipeline(tiny_encoder, layer=1)
    hf = nlp.get_pipe("transformer").model.transformer
    assert len(transformer_layers(hf)) == 1 and hf.config.num_hidden_layers == 1
    doc = nlp("dolor abdominal agudo")
    ids = torch.tensor(doc._.trf_data.wordpieces.input_ids)
    full = AutoModel.from_pretrained(str(tiny_encoder)).eval()
    with torch.no_grad():
        want = full(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states
    got = torch.as_tensor(doc._.trf_data.model_output.last_hidden_state)
    torch.testing.assert_close(got, want[1], rtol=1e-4, atol=1e-5)  # hidden layer 1, not the last (2)
    assert (got - want[2]).abs().max() > 1e-3
    nlp.to_disk(tmp_path / "p")  # the cut encoder is what is saved and loaded back
    loaded = spacy.load(tmp_path / "p")
    assert len(transformer_layers(loaded.get_pipe("transformer").model.transformer)) == 1
    torch.testing.assert_close(torch.as_tensor(loaded("dolor abdominal agudo")._.trf_data.model_output.last_hidden_state),
                               got, rtol=1e-4, atol=1e-5)


def test_no_layer_keeps_every_layer(tiny_encoder):
    hf = transformer_pipeline(tiny_encoder).get_pipe("transformer").model.transformer
    assert len(transformer_layers(hf)) == 2


@pytest.mark.parametrize("model,message", [
    ({"layer": 0}, "layer must be >= 1"),
    ({"layer": 1, "frozen_layers": 1}, r"frozen_layers \(1\) must be below layer \(1\)"),
    ({"layer": 1, "transformer_config": {"num_hidden_layers": 2}}, "disagree"),
])
def test_bad_layer_settings_are_refused(tiny_encoder, model, message):
    with pytest.raises(ValueError, match=message):
        transformer_pipeline(tiny_encoder, **model)
