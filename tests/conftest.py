"""Shared fixtures: a tiny BERT encoder built from scratch (no download), and paths to the shared data."""
import os
from pathlib import Path

import pytest

from spacy_clinalign.encoders.tiny import build_tiny_bert

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def aligner_config(encoder: Path, **overrides) -> dict:
    """Config for `clinical_aligner` over a local encoder folder (small windows so tests stride)."""
    cfg = {
        "model": {
            "@architectures": "spacy-clinalign.AlignerModel.v1",
            "name": str(encoder),
            "layer": 2,
            "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24},
        }
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def encoder_with_dropout(encoder: Path, folder: Path, dropout: float) -> Path:
    """A copy of a local encoder with its dropout set (0 for exact comparisons, high to expose train mode)."""
    import shutil

    import srsly

    shutil.copytree(encoder, folder)
    config = srsly.read_json(folder / "config.json")
    config.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    srsly.write_json(folder / "config.json", config)
    return folder


def initialized_aligner(encoder: Path, lang: str = "en", **overrides):
    """A blank pipeline with an initialized clinical_aligner over `encoder`."""
    import spacy

    nlp = spacy.blank(lang)
    nlp.add_pipe("clinical_aligner", config=aligner_config(encoder, **overrides))
    nlp.initialize()
    return nlp


def initialized_ner(encoder: Path):
    """A Spanish pipeline with bio_ner_cnn (inline transformer) initialized on the test's tiny examples."""
    import spacy

    from tests.pipeline.test_bio_ner_cnn import make_examples, ner_config

    nlp = spacy.blank("es")
    nlp.add_pipe("bio_ner_cnn", config=ner_config(encoder))
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    return nlp
