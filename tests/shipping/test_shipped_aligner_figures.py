"""The shipped aligner, built from its delta over the real multilingual-e5-small (not a trimmed encoder),
projects the first 20 MultiClinAI dev pairs at the F1 its card states (within 0.01). Skipped where the
encoder, the data or the shipped weights are absent (CI without the e5 import)."""
import json

import pytest

from spacy_clinalign.cli import main
from spacy_clinalign.encoders import default_encoder_dir
from spacy_clinalign.encoders.e5 import is_complete_import
from spacy_clinalign.shipping.build import PIPELINES, pipeline_from_part, save_pipeline
from spacy_clinalign.shipping.cards import read_card
from spacy_clinalign.shipping.checksums import iter_parts
from spacy_clinalign.weights import WEIGHTS_DIR


def test_shipped_aligner_projects_20_dev_pairs_at_its_card_f1(shared_data, tmp_path):
    data = shared_data / "multiclinai" / "paired_es_en.dev.jsonl"
    if "es_en_aligner" not in iter_parts(WEIGHTS_DIR):
        pytest.skip("no trained aligner is shipped yet")
    if not is_complete_import(default_encoder_dir()) or not data.is_file():
        pytest.skip("needs multilingual-e5-small (encoder import-e5) and the MultiClinAI dev pairs")
    figures = read_card(WEIGHTS_DIR / "es_en_aligner").get("figures") or {}
    if "dev20/proj_char_f" not in figures:
        pytest.skip("the card has no dev20 figures (spacy project run score-aligner-delta)")
    spec = PIPELINES["es_en_clinical_aligner"]
    path = save_pipeline(pipeline_from_part(WEIGHTS_DIR / "es_en_aligner", default_encoder_dir(), spec),
                         tmp_path / spec.name)
    main(["evaluate-projection", str(path), str(data), "--limit", "20", "--output", str(tmp_path / "scores.json")])
    scores = json.loads((tmp_path / "scores.json").read_text())
    for key in ("proj_char_f", "proj_strict_f"):
        assert abs(scores[key] - figures[f"dev20/{key}"]) <= 0.01, (key, scores[key], figures[f"dev20/{key}"])
