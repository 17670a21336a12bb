"""fp16 deltas: extract -> apply gives the trained encoder; a delta is refused on another base, with a
tampered, missing or extra file, or with a tensor the base lacks; the package's own weights match SHA256SUMS."""
import json

import numpy
import pytest
import spacy
import torch

from spacy_clinalign.cli import main
from spacy_clinalign.encoders.tiny import build_tiny_bert
from spacy_clinalign.pairs import make_pair
from spacy_clinalign.shipping.build import PIPELINES, pipeline_from_part
from spacy_clinalign.shipping.checksums import ChecksumError, iter_parts, verify_checksums
from spacy_clinalign.shipping.deltas import (DeltaMismatchError, apply_delta, extract_delta, load_base_encoder,
                                             read_delta, update_checksums)
from spacy_clinalign.weights import WEIGHTS_DIR

SRC = "La prueba reveló una deficiencia de calcio y potasio ."
TGT = "The test revealed a calcium and potassium deficiency ."


def matrix(nlp):
    source = spacy.blank("es")(SRC)
    return nlp(make_pair(source, TGT, nlp))._.alignment.matrix


def state_of(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_delta_holds_only_the_trained_layer_in_fp16(made_weights, tiny_encoder):
    card, tensors = read_delta(made_weights / "es_en_aligner")
    assert tensors and all(name.startswith("encoder.layer.1.") for name in tensors)  # layer 0 was frozen
    assert all(t.dtype == torch.float16 for t in tensors.values())
    assert card["delta"]["tensors"] == len(tensors) and card["layer"] == 2
    base = load_base_encoder(tiny_encoder).transformer.config
    assert card["base"]["vocab_size"] == base.vocab_size and card["base"]["num_hidden_layers"] == 2
    assert card["heads"] == ["clinical_aligner"] and card["figures"]["proj_char_f"] == 0.5
    assert "| proj_char_f | 0.5 |" in (made_weights / "es_en_aligner" / "MODEL_CARD.md").read_text()


def test_round_trip_gives_the_trained_alignment(made_weights, tiny_encoder, trained_aligner):
    trained = matrix(spacy.load(trained_aligner))
    rebuilt = pipeline_from_part(made_weights / "es_en_aligner", tiny_encoder, PIPELINES["es_en_clinical_aligner"])
    base = spacy.blank("en")
    base.add_pipe("clinical_aligner", config={"model": {"name": str(tiny_encoder), "layer": 2}})
    base.initialize()
    numpy.testing.assert_allclose(matrix(rebuilt), trained, atol=2e-3)  # fp16 rounding of the trained layer
    assert numpy.abs(matrix(base) - trained).max() > 0.02  # the training did change the outputs
    assert rebuilt.pipe_names == ["clinical_aligner", "span_projector"]


def test_round_trip_ner_restores_the_head_and_labels(made_weights, tiny_encoder, trained_ner):
    text = "Paciente con neumonía y fiebre alta ."
    want = spacy.load(trained_ner)(text)
    got = pipeline_from_part(made_weights / "es_clinical_ner", tiny_encoder)
    got.to_disk(made_weights.parent / "ner_rebuilt")  # listeners are wired when spaCy loads the folder
    doc = spacy.load(made_weights.parent / "ner_rebuilt")(text)
    assert spacy.load(made_weights.parent / "ner_rebuilt").get_pipe("bio_ner_cnn").labels == \
        spacy.load(trained_ner).get_pipe("bio_ner_cnn").labels
    for label, probs in want._.bio_probs.items():
        numpy.testing.assert_allclose(doc._.bio_probs[label], probs, atol=2e-3)


@pytest.mark.parametrize("kwargs,field", [({"vocab_size": 100}, "vocab_size"), ({"layers": 3}, "num_hidden_layers")])
def test_delta_for_another_base_is_refused(made_weights, tmp_path, kwargs, field):
    other = load_base_encoder(build_tiny_bert(tmp_path / "other", **kwargs)).transformer
    before = state_of(other)
    with pytest.raises(DeltaMismatchError, match=rf"refused.*{field}: the delta was made for \d+, this encoder has \d+"):
        apply_delta(other, made_weights / "es_en_aligner")
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_same_shapes_but_other_weights_are_refused(made_weights, tmp_path):
    other = load_base_encoder(build_tiny_bert(tmp_path / "other", seed=1)).transformer
    with pytest.raises(DeltaMismatchError, match="the base's shape but other weights"):
        apply_delta(other, made_weights / "es_en_aligner")


def test_apply_is_idempotent_and_matches_the_stored_tensors(made_weights, tiny_encoder):
    model = load_base_encoder(tiny_encoder).transformer
    apply_delta(model, made_weights / "es_en_aligner")
    once = state_of(model)
    apply_delta(model, made_weights / "es_en_aligner")  # values, not increments: the same encoder again
    _, tensors = read_delta(made_weights / "es_en_aligner")
    state = model.state_dict()
    assert all(torch.equal(once[k], state[k]) for k in state)
    assert all(torch.equal(state[k], t.float()) for k, t in tensors.items())


def test_tampered_delta_is_refused_before_anything_is_applied(weights, tiny_encoder):
    path = weights / "es_en_aligner" / "delta.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one bit pattern inside the last tensor
    path.write_bytes(bytes(data))
    model = load_base_encoder(tiny_encoder).transformer
    before = state_of(model)
    with pytest.raises(ChecksumError, match=r"es_en_aligner/delta\.safetensors does not match its checksum"):
        apply_delta(model, weights / "es_en_aligner")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    verify_checksums(weights, "es_clinical_ner")  # the other part is untouched and still usable


def test_missing_and_unlisted_files_are_named(weights):
    (weights / "es_en_aligner" / "heads.msgpack").unlink()
    with pytest.raises(ChecksumError, match=r"es_en_aligner/heads\.msgpack is listed .* but missing"):
        verify_checksums(weights)
    update_checksums(weights, "es_en_aligner")
    (weights / "es_clinical_ner" / "extra.bin").write_bytes(b"x")
    with pytest.raises(ChecksumError, match=r"es_clinical_ner/extra\.bin is not listed"):
        verify_checksums(weights)
    (weights / "SHA256SUMS").unlink()
    with pytest.raises(ChecksumError, match="SHA256SUMS is missing"):
        verify_checksums(weights)


def test_a_tensor_the_base_lacks_is_refused(weights, tiny_encoder):
    from safetensors.torch import save_file

    part = weights / "es_en_aligner"
    save_file({"encoder.layer.5.output.dense.weight": torch.zeros(32, 64, dtype=torch.float16)},
              str(part / "delta.safetensors"), metadata={"format": "spacy-clinalign-delta/1"})
    update_checksums(weights, "es_en_aligner")  # a consistent, checksummed delta for a deeper model
    with pytest.raises(DeltaMismatchError, match=r"'encoder\.layer\.5\.output\.dense\.weight' is not a parameter"):
        apply_delta(load_base_encoder(tiny_encoder).transformer, part)


def test_extract_refuses_a_trained_encoder_of_another_base(trained_aligner, tmp_path):
    other = build_tiny_bert(tmp_path / "other", vocab_size=100)
    with pytest.raises(DeltaMismatchError, match="of other shapes"):
        extract_delta(trained_aligner, other, tmp_path / "part")


def test_make_delta_and_verify_cli(trained_aligner, tiny_encoder, tmp_path, capsys):
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"training": {"steps": 3}}), encoding="utf8")
    out = tmp_path / "weights" / "es_en_aligner"
    main(["pipelines", "make-delta", str(trained_aligner), "--base", str(tiny_encoder), "--out", str(out),
          "--card-json", str(card)])
    assert "tensors" in capsys.readouterr().out
    assert json.loads((out / "card.json").read_text())["pipeline"] == "es_en_clinical_aligner"
    main(["pipelines", "verify", "--weights", str(tmp_path / "weights")])
    printed = capsys.readouterr().out
    assert "5 file(s)" in printed and "parts: es_en_aligner (" in printed
    (out / "card.json").write_text("{}", encoding="utf8")
    with pytest.raises(SystemExit, match=r"card\.json does not match its checksum"):
        main(["pipelines", "verify", "--weights", str(tmp_path / "weights")])


def test_the_shipped_weights_match_their_checksums():
    if not iter_parts(WEIGHTS_DIR) and not (WEIGHTS_DIR / "SHA256SUMS").exists():
        pytest.skip("no trained weights are shipped yet")
    files = verify_checksums(WEIGHTS_DIR)
    for part in iter_parts(WEIGHTS_DIR):
        assert f"{part}/delta.safetensors" in files and f"{part}/card.json" in files
    size = sum((WEIGHTS_DIR / name).stat().st_size for name in files)
    assert size <= 30 * 2**20, f"shipped weights take {size / 2**20:.1f} MiB, above the 30 MiB budget"


def test_set_figures_updates_the_card_and_its_checksums(weights, tmp_path):
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"proj_char_f": 0.91, "proj_per_type": {"DIS": {"f": 0.9}}, "n": "x"}))
    main(["pipelines", "set-figures", str(weights / "es_en_aligner"), str(scores), "--command", "evaluate-projection X"])
    card, _ = read_delta(weights / "es_en_aligner")  # checks SHA256SUMS again
    assert card["figures"] == {"proj_char_f": 0.91, "proj_per_type.DIS.f": 0.9, "command": "evaluate-projection X"}
    main(["pipelines", "set-figures", str(weights / "es_en_aligner"), str(scores), "--command", "Y --limit 20",
          "--prefix", "dev20"])
    card, _ = read_delta(weights / "es_en_aligner")
    assert card["figures"]["proj_char_f"] == 0.91 and card["figures"]["dev20/proj_char_f"] == 0.91
    text = (weights / "es_en_aligner" / "MODEL_CARD.md").read_text()
    assert "Figures printed by `evaluate-projection X`" in text and "`dev20/...` figures printed by `Y --limit 20`" in text
    (weights / "es_en_aligner" / "heads.msgpack").write_bytes(b"\x80")  # a changed part is never re-blessed
    with pytest.raises(SystemExit, match=r"heads\.msgpack does not match"):
        main(["pipelines", "set-figures", str(weights / "es_en_aligner"), str(scores), "--command", "x"])
