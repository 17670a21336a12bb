"""Trained parts made here from the tiny encoder: an aligner trained 3 steps on teacher matrices, an NER
pipeline (transformer + bio_ner_cnn listener) trained 10 steps and a linker bi-encoder (a bare Hugging
Face folder) trained 6 MNRL steps, all with the lower encoder layer frozen, as the shipped parts are; and a
weights folder holding their deltas with SHA256SUMS."""
import shutil

import pytest
import spacy

from spacy_clinalign.cli import main
from spacy_clinalign.io.readers import create_parallel_corpus_reader
from spacy_clinalign.shipping.deltas import extract_delta, update_checksums
from tests.conftest import aligner_config
from tests.pipeline.test_bio_ner_cnn import make_examples

PAIRS = [
    ("la casa es pequeña .", "the house is small ."),
    ("dolor abdominal y fiebre .", "abdominal pain and fever ."),
    ("paciente de 67 años con neumonía .", "patient aged 67 with pneumonia ."),
]
LINKER_CATALOG = [("J18.9", ["neumonía"]), ("E11.9", ["diabetes mellitus tipo 2"]), ("R50.9", ["fiebre"]),
                  ("N28.1", ["quiste renal"])]
LINKER_CARD = {"description": "test linker", "version": "0.0.2", "index": {"catalog": "tiny.jsonl", "synonyms": []},
               "figures": {"bi.exact.f1": 0.25, "command": "link evaluate"}, "sources": ["tests linker"]}
ALIGNER_CARD = {"description": "test aligner", "version": "0.0.1", "figures": {"proj_char_f": 0.5, "command": "x"},
                "training": {"steps": 3, "command": "tests/shipping/conftest.py"}, "sources": ["tests"]}


def train_and_save(nlp, examples, steps: int, out):
    """Initialize, take `steps` updates at a high learning rate (so training visibly moves the weights), save."""
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 1e-2
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    nlp.to_disk(out)
    return out


@pytest.fixture(scope="session")
def trained_aligner(tmp_path_factory, tiny_encoder):
    folder = tmp_path_factory.mktemp("trained_aligner")
    par = folder / "pairs.src-tgt"
    par.write_text("".join(f"{s} ||| {t}\n" for s, t in PAIRS), encoding="utf8")
    main(["build-teacher", str(par), str(folder / "teacher.spacy"), "--encoder", str(tiny_encoder), "--layer", "2"])
    nlp = spacy.blank("en")
    cfg = aligner_config(tiny_encoder)
    cfg["model"]["frozen_layers"] = 1
    nlp.add_pipe("clinical_aligner", config=cfg)
    examples = list(create_parallel_corpus_reader(folder / "teacher.spacy")(nlp))
    return train_and_save(nlp, examples, 3, folder / "model")


@pytest.fixture(scope="session")
def trained_ner(tmp_path_factory, tiny_encoder):
    folder = tmp_path_factory.mktemp("trained_ner")
    nlp = spacy.blank("es")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-clinalign.TransformerModel.v1", "name": str(tiny_encoder), "frozen_layers": 1,
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24}}})
    nlp.add_pipe("bio_ner_cnn", config={"model": {
        "@architectures": "spacy-clinalign.CNNTagger.v1", "width": 32, "dropout": 0.0,
        "tok2vec": {"@architectures": "spacy-transformers.TransformerListener.v1", "upstream": "*",
                    "pooling": {"@layers": "reduce_mean.v1"}}}})
    return train_and_save(nlp, make_examples(nlp), 10, folder / "model")


@pytest.fixture(scope="session")
def trained_linker(tmp_path_factory, tiny_encoder):
    """`link train-bi-encoder --train-layers 1` on the tiny encoder: a Hugging Face folder, no spaCy config."""
    from spacy_clinalign.linking.catalog import Catalog
    from spacy_clinalign.linking.training import train_bi_encoder

    folder = tmp_path_factory.mktemp("trained_linker")
    pairs = [("neumonía", "J18.9"), ("diabetes", "E11.9"), ("fiebre alta", "R50.9"), ("quiste renal", "N28.1")]
    train_bi_encoder(tiny_encoder, folder / "bi", pairs * 6, Catalog(LINKER_CATALOG), batch_size=4, lr=1e-2,
                     progress=False, train_layers=1)
    return folder / "bi"


@pytest.fixture(scope="session")
def made_weights(tmp_path_factory, tiny_encoder, trained_aligner, trained_ner, trained_linker):
    """A weights folder as `pipelines make-delta` leaves it (never modify it: copy it first)."""
    root = tmp_path_factory.mktemp("weights")
    extract_delta(trained_aligner, tiny_encoder, root / "es_en_aligner", dict(ALIGNER_CARD))
    update_checksums(root, "es_en_aligner")
    extract_delta(trained_ner, tiny_encoder, root / "es_clinical_ner", {"figures": {"ner_strict_f": 0.1}})
    update_checksums(root, "es_clinical_ner")
    extract_delta(trained_linker, tiny_encoder, root / "es_icd_linker", dict(LINKER_CARD))
    update_checksums(root, "es_icd_linker")
    return root


@pytest.fixture
def weights(made_weights, tmp_path):
    """A private copy of the made weights folder, safe to tamper with."""
    return shutil.copytree(made_weights, tmp_path / "weights")
