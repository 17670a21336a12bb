"""es_icd_linker ships its bi-encoder as an fp16 delta of the trained top layer(s): `pipelines build` applies
it to the base encoder before indexing the catalogue, refuses it on another base, and puts the card's
figures in meta only for the index they were measured on; the shipped delta itself is small and complete."""
import json

import numpy
import pytest
import spacy
import torch

from spacy_clinalign.cli import main
from spacy_clinalign.encoders.tiny import build_tiny_bert
from spacy_clinalign.linking.bi_encoder import BiEncoder
from spacy_clinalign.shipping.build import linker_pipeline
from spacy_clinalign.shipping.checksums import iter_parts, part_digest
from spacy_clinalign.shipping.deltas import load_base_encoder, read_delta, update_checksums
from spacy_clinalign.weights import WEIGHTS_DIR
from tests.shipping.conftest import LINKER_CATALOG

pytest.importorskip("faiss")  # the linker's dense index (the [linking] extra)
QUERIES = ["neumonía", "fiebre alta", "quiste renal", "diabetes"]


def write_catalog(path):
    path.write_text("".join(json.dumps({"code": c, "descriptions": d}) + "\n" for c, d in LINKER_CATALOG),
                    encoding="utf8")
    return path


def build_linker(out, encoder, weights, catalog):
    main(["pipelines", "build", str(out), "--encoder", str(encoder), "--catalog", str(catalog),
          "--weights", str(weights), "--only", "es_icd_linker", "--no-progress"])
    return out / "es_icd_linker"


def test_linker_delta_holds_only_the_trained_top_layer(made_weights):
    card, tensors = read_delta(made_weights / "es_icd_linker")
    assert tensors and all(name.startswith("encoder.layer.1.") for name in tensors)  # --train-layers 1
    assert all(t.dtype == torch.float16 for t in tensors.values())
    assert sorted(p.name for p in (made_weights / "es_icd_linker").iterdir()) == \
        ["MODEL_CARD.md", "card.json", "delta.safetensors"]  # a bare encoder: no spaCy config, no heads
    assert card["base"]["num_hidden_layers"] == 2 and card["figures"]["bi.exact.f1"] == 0.25


def test_build_applies_the_linker_delta_before_indexing(made_weights, tiny_encoder, trained_linker, tmp_path):
    path = build_linker(tmp_path / "out", tiny_encoder, made_weights, write_catalog(tmp_path / "catalog.jsonl"))
    nlp = spacy.load(path)
    bi = nlp.get_pipe("icd_linker").linker.bi_encoder
    built, base = bi.model.state_dict(), load_base_encoder(tiny_encoder).transformer.state_dict()
    trained = load_base_encoder(trained_linker).transformer.state_dict()
    _, tensors = read_delta(made_weights / "es_icd_linker")
    for name, tensor in base.items():
        if name in tensors:
            assert torch.equal(built[name], tensors[name].float())
            torch.testing.assert_close(built[name], trained[name], atol=2e-3, rtol=1e-3)  # fp16 rounding
        elif tensor.is_floating_point():
            assert torch.equal(built[name], tensor), name
    want = BiEncoder(trained_linker).encode(QUERIES)
    numpy.testing.assert_allclose(bi.encode(QUERIES), want, atol=5e-3)
    assert numpy.abs(BiEncoder(tiny_encoder).encode(QUERIES) - want).max() > 0.02  # training moved the outputs
    index = nlp.get_pipe("icd_linker").linker
    # dense by default (chosen on DisTEMIST dev); the BM25 index is there too, for channels "bm25" / "hybrid"
    assert nlp.get_pipe("icd_linker").cfg["channels"] == "dense" and index.lexical is not None
    indexed = index.dense.index.reconstruct_n(0, index.dense.size)  # what the catalogue was indexed with
    numpy.testing.assert_allclose(indexed, BiEncoder(trained_linker).encode(index.texts, kind="passage"), atol=5e-3)
    meta = nlp.meta
    assert meta["name"] == "icd_linker" and meta["version"] == "0.0.2" and "tests linker" in meta["sources"]
    assert meta["spacy_clinalign"]["weights_sha256"] == part_digest(made_weights, "es_icd_linker")
    assert meta["performance"] == {}  # another catalogue than the card's: its figures do not apply
    assert "do not apply" in meta["spacy_clinalign"]["figures"]


def test_linker_meta_has_the_card_figures_for_the_catalogue_they_were_measured_on(weights, tiny_encoder, tmp_path):
    catalog = write_catalog(tmp_path / "catalog.jsonl")
    card_path = weights / "es_icd_linker" / "card.json"
    card = json.loads(card_path.read_text())
    card["index"] = {"catalog": str(catalog), "synonyms": []}
    card_path.write_text(json.dumps(card))
    update_checksums(weights, "es_icd_linker")
    nlp = linker_pipeline(weights / "es_icd_linker", tiny_encoder, str(catalog), progress=False)
    assert nlp.meta["performance"] == {"bi.exact.f1": 0.25}
    assert nlp.meta["spacy_clinalign"]["figures"]["command"] == "link evaluate"


@pytest.mark.parametrize("kwargs,field", [({"vocab_size": 100}, "vocab_size"), ({"layers": 3}, "num_hidden_layers")])
def test_linker_delta_on_another_base_is_refused(made_weights, tmp_path, kwargs, field):
    other = build_tiny_bert(tmp_path / "other", **kwargs)
    with pytest.raises(SystemExit, match=rf"es_icd_linker: refused.*{field}: the delta was made for \d+, "
                                         rf"this encoder has \d+"):
        build_linker(tmp_path / "out", other, made_weights, write_catalog(tmp_path / "catalog.jsonl"))
    assert not (tmp_path / "out" / "es_icd_linker").exists()


def test_make_delta_takes_the_bi_encoder_folder(trained_linker, tiny_encoder, tmp_path, capsys):
    out = tmp_path / "weights" / "es_icd_linker"
    main(["pipelines", "make-delta", str(trained_linker), "--base", str(tiny_encoder), "--out", str(out)])
    assert "tensors" in capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    assert card["pipeline"] == "es_icd_linker" and "encoder_component" not in card
    main(["pipelines", "verify", "--weights", str(tmp_path / "weights")])
    assert "3 file(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="neither a saved spaCy pipeline .* nor a Hugging Face encoder folder"):
        main(["pipelines", "make-delta", str(tmp_path), "--base", str(tiny_encoder), "--out", str(out)])


def test_the_shipped_linker_delta_is_small_and_has_its_figures():
    if "es_icd_linker" not in iter_parts(WEIGHTS_DIR):
        pytest.skip("es_icd_linker is not shipped in this checkout")
    card, tensors = read_delta(WEIGHTS_DIR / "es_icd_linker")  # checks its files against SHA256SUMS first
    layers = {int(name.split(".")[2]) for name in tensors}
    assert all(name.startswith("encoder.layer.") for name in tensors) and min(layers) >= 9  # top 3 of 12 trained
    assert (WEIGHTS_DIR / "es_icd_linker" / "delta.safetensors").stat().st_size < 15 * 2**20
    figures = card["figures"]
    for key in ("command", "rows.bi.exact.f", "rows.bi.category.f", "rows.bi.exact.map@10"):
        assert key in figures, f"the shipped linker card lacks {key}"
    assert card["training"]["steps"] > 0 and card["index"]["catalog"] == "icd10cm+cie10"
