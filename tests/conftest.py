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
