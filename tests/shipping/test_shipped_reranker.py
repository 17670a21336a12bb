"""es_icd_reranker: the linker's reranker trained with LoRA adapters on its top layer(s), merged, and shipped
as rank-r factor pairs over the bi-encoder it started from (plus its head in full). The factors rebuild the
trained reranker exactly (to fp16), a low-rank change is refused on any matrix that is not its base's (another
encoder, or one it was already added to), and `pipelines build` gives es_icd_linker the reranker."""
import json
import shutil

import numpy
import pytest
import spacy
import torch
from safetensors.torch import load_file, save_file

from spacy_clinalign.cli import main
from spacy_clinalign.linking.cross_encoder import CrossEncoder
from spacy_clinalign.linking.training import train_cross_encoder
from spacy_clinalign.shipping.build import LINKER_RERANK_WEIGHT
from spacy_clinalign.shipping.deltas import (DeltaMismatchError, LOW_RANK_U, apply_delta, load_sequence_classifier,
                                             materialize_reranker, read_delta, update_checksums)
from tests.shipping.test_shipped_linker import build_linker, write_catalog

pytest.importorskip("peft")
pytest.importorskip("faiss")
GROUPS = [("neumonía", ["neumonía", "fiebre", "quiste renal"]),
          ("fiebre alta", ["fiebre", "neumonía", "diabetes mellitus tipo 2"]),
          ("quiste renal", ["quiste renal", "diabetes mellitus tipo 2", "fiebre"]),
          ("diabetes", ["diabetes mellitus tipo 2", "quiste renal", "neumonía"])]
PAIRS = [(q, d) for q, docs in GROUPS for d in docs]
RANK = 2
RERANKER_CARD = {"description": "test reranker", "version": "0.0.3", "base_part": "es_icd_linker",
                 "base_name": "es_icd_linker bi-encoder", "figures": {"bi+cross.exact.f1": 0.5, "command": "x"}}


@pytest.fixture(scope="session")
def trained_reranker(tmp_path_factory, trained_linker):
    """`link train-cross-encoder --lora-rank 2 --train-layers 1` from the tiny linker's bi-encoder."""
    out = tmp_path_factory.mktemp("trained_reranker") / "cross_encoder"
    stats = train_cross_encoder(trained_linker, out, GROUPS * 3, group_batch=2, lr=5e-2, progress=False,
                                lora_rank=RANK, train_layers=1)
    assert stats["steps"] == 6
    return out


@pytest.fixture
def reranker_weights(made_weights, trained_reranker, trained_linker, tmp_path):
    root = shutil.copytree(made_weights, tmp_path / "weights")
    card = tmp_path / "card.json"
    card.write_text(json.dumps(RERANKER_CARD))
    main(["pipelines", "make-delta", str(trained_reranker), "--base", str(trained_linker), "--rank", str(RANK),
          "--out", str(root / "es_icd_reranker"), "--card-json", str(card)])
    return root


def test_lora_training_changes_only_the_top_layer_at_low_rank_and_the_head(trained_reranker, trained_linker):
    assert not list(trained_reranker.glob("adapter_*"))  # merged: a plain Hugging Face folder
    trained, _ = load_sequence_classifier(trained_reranker)
    start, _ = load_sequence_classifier(trained_linker)
    start_state = start.state_dict()
    changed = {}
    for name, tensor in trained.state_dict().items():
        if name.startswith("classifier."):
            continue
        if not torch.equal(tensor, start_state[name]):
            changed[name] = tensor - start_state[name]
    assert changed and all(name.startswith("bert.encoder.layer.1.") and name.endswith(".weight") for name in changed)
    assert len(changed) == 6  # query, key, value, attention output, intermediate, output
    for name, change in changed.items():
        assert torch.linalg.matrix_rank(change.double(), rtol=1e-5) <= RANK, name


def test_make_delta_ships_the_lora_change_as_factors_and_rebuilds_the_reranker(reranker_weights, trained_reranker,
                                                                            trained_linker, tmp_path, capsys):
    part = reranker_weights / "es_icd_reranker"
    card, tensors = read_delta(part)
    assert card["kind"] == "reranker" and card["base"]["name"] == "es_icd_linker bi-encoder"
    low = card["delta"]["low_rank"]
    assert low["rank"] == RANK and low["matrices"] == 6 and low["max_relative_error"] < 1e-4
    factors = [n for n in tensors if n.endswith(LOW_RANK_U)]
    assert len(factors) == 6 and {"classifier.weight", "classifier.bias"} <= set(tensors)  # the head in full
    assert not any(n.startswith("bert.encoder.layer.0.") for n in tensors)
    rebuilt = materialize_reranker(trained_linker, part, tmp_path / "rebuilt")
    want = CrossEncoder(trained_reranker).score(PAIRS)
    got = CrossEncoder(rebuilt).score(PAIRS)
    numpy.testing.assert_allclose(got, want, atol=2e-3)


def test_a_low_rank_change_is_refused_on_another_base_or_twice(reranker_weights, trained_linker, tiny_encoder):
    part = reranker_weights / "es_icd_reranker"
    plain_base, _ = load_sequence_classifier(tiny_encoder)  # not the bi-encoder the reranker was trained over
    with pytest.raises(DeltaMismatchError, match=r"refused, 'bert\.encoder\.layer\.1\..*' is not the delta's base "
                                                 r"matrix .*another model, or a delta already applied"):
        apply_delta(plain_base, part)
    model, _ = load_sequence_classifier(trained_linker)
    apply_delta(model, part)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    with pytest.raises(DeltaMismatchError, match="a delta already applied"):
        apply_delta(model, part)
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())  # refused before any change


def test_a_reranker_delta_without_its_head_is_refused(reranker_weights, trained_linker, tmp_path):
    part = reranker_weights / "es_icd_reranker"
    tensors = load_file(str(part / "delta.safetensors"))
    del tensors["classifier.weight"]
    save_file(tensors, str(part / "delta.safetensors"), metadata={"format": "spacy-clinalign-delta/2"})
    update_checksums(reranker_weights, "es_icd_reranker")
    with pytest.raises(DeltaMismatchError, match=r"lacks the classification head's \['classifier.weight'\]"):
        materialize_reranker(trained_linker, part, tmp_path / "rebuilt")


def test_a_factor_pair_missing_one_half_is_refused(reranker_weights, trained_linker):
    part = reranker_weights / "es_icd_reranker"
    tensors = load_file(str(part / "delta.safetensors"))
    del tensors[next(n for n in tensors if n.endswith(LOW_RANK_U))]
    save_file(tensors, str(part / "delta.safetensors"), metadata={"format": "spacy-clinalign-delta/2"})
    update_checksums(reranker_weights, "es_icd_reranker")
    with pytest.raises(DeltaMismatchError, match="lacks one of its two factors"):
        apply_delta(load_sequence_classifier(trained_linker)[0], part)


def test_build_gives_the_linker_its_shipped_reranker(reranker_weights, tiny_encoder, trained_reranker, tmp_path):
    catalog = write_catalog(tmp_path / "catalog.jsonl")
    nlp = spacy.load(build_linker(tmp_path / "out", tiny_encoder, reranker_weights, catalog))
    pipe = nlp.get_pipe("icd_linker")
    assert pipe.cfg["rerank"] and pipe.linker.cross_encoder is not None
    assert pipe.cfg["rerank_retrieval_weight"] == pytest.approx(LINKER_RERANK_WEIGHT)  # chosen on DisTEMIST dev
    numpy.testing.assert_allclose(pipe.linker.cross_encoder.score(PAIRS), CrossEncoder(trained_reranker).score(PAIRS),
                                  atol=2e-3)
    assert nlp.meta["spacy_clinalign"]["reranker"]["part"] == "es_icd_reranker"
    main(["pipelines", "build", str(tmp_path / "plain"), "--encoder", str(tiny_encoder), "--catalog", str(catalog),
          "--weights", str(reranker_weights), "--only", "es_icd_linker", "--no-progress", "--no-reranker"])
    plain = spacy.load(tmp_path / "plain" / "es_icd_linker")
    assert plain.get_pipe("icd_linker").linker.cross_encoder is None
    assert plain.get_pipe("icd_linker").cfg["rerank_retrieval_weight"] == 0.0
    assert plain.meta["spacy_clinalign"]["reranker"] is None


def test_a_reranker_trained_over_another_part_is_refused(reranker_weights, tiny_encoder, tmp_path):
    card_path = reranker_weights / "es_icd_reranker" / "card.json"
    card = json.loads(card_path.read_text())
    card["base_part"] = "some_other_linker"
    card_path.write_text(json.dumps(card))
    update_checksums(reranker_weights, "es_icd_reranker")
    with pytest.raises(SystemExit, match="trained over 'some_other_linker'"):
        build_linker(tmp_path / "out", tiny_encoder, reranker_weights, write_catalog(tmp_path / "catalog.jsonl"))


@pytest.mark.parametrize("rank", [0, True])
def test_lora_rank_must_be_a_positive_integer(trained_linker, tmp_path, rank):
    with pytest.raises(ValueError, match="--lora-rank must be a positive integer"):
        train_cross_encoder(trained_linker, tmp_path / "x", GROUPS, progress=False, lora_rank=rank)


def test_add_reranker_gives_a_built_linker_the_reranker_without_reindexing(reranker_weights, tiny_encoder,
                                                                          trained_reranker, tmp_path, capsys):
    catalog = write_catalog(tmp_path / "catalog.jsonl")
    main(["pipelines", "build", str(tmp_path / "plain"), "--encoder", str(tiny_encoder), "--catalog", str(catalog),
          "--weights", str(reranker_weights), "--only", "es_icd_linker", "--no-progress", "--no-reranker"])
    plain = tmp_path / "plain" / "es_icd_linker"
    index_file = next(p for p in (plain / "icd_linker").rglob("*") if p.is_file() and "dense" in p.name)
    index_bytes = index_file.read_bytes()
    main(["pipelines", "add-reranker", str(plain), "--out", str(tmp_path / "ranked"), "--weights",
          str(reranker_weights)])
    assert "reranks its top k" in capsys.readouterr().out
    nlp = spacy.load(tmp_path / "ranked")
    pipe = nlp.get_pipe("icd_linker")
    numpy.testing.assert_allclose(pipe.linker.cross_encoder.score(PAIRS), CrossEncoder(trained_reranker).score(PAIRS),
                                  atol=2e-3)
    assert nlp.meta["spacy_clinalign"]["reranker"]["part"] == "es_icd_reranker"
    assert pipe.cfg["rerank_retrieval_weight"] == pytest.approx(LINKER_RERANK_WEIGHT)
    assert (tmp_path / "ranked" / "icd_linker" / index_file.relative_to(plain / "icd_linker")).read_bytes() == index_bytes
    card_path = reranker_weights / "es_icd_linker" / "card.json"  # now another linker part than the pipeline's
    card_path.write_text(card_path.read_text().replace('"0.0.2"', '"0.0.9"'))
    update_checksums(reranker_weights, "es_icd_linker")
    with pytest.raises(SystemExit, match="not built from the shipped es_icd_linker part"):
        main(["pipelines", "add-reranker", str(plain), "--out", str(tmp_path / "x"), "--weights",
              str(reranker_weights)])
