"""`load_aligner(..., layer=N)`: honoured for an encoder folder; for a saved pipeline, which keeps the layer it
was trained at, a different layer is ignored with a warning that says so."""
import warnings

import pytest

from spacy_clinalign.pipelines import load_aligner
from tests.conftest import initialized_aligner


def test_layer_of_an_encoder_folder_is_honoured(tiny_encoder):
    assert load_aligner(str(tiny_encoder), layer=1).get_pipe("clinical_aligner").model.attrs["layer"] == 1


def test_layer_for_a_saved_pipeline_is_ignored_with_a_warning(tiny_encoder, tmp_path):
    initialized_aligner(tiny_encoder).to_disk(tmp_path / "p")  # layer 2
    with pytest.warns(UserWarning, match="layer 1 is ignored: the saved pipeline .* reads layer 2"):
        nlp = load_aligner(str(tmp_path / "p"), layer=1)
    assert nlp.get_pipe("clinical_aligner").model.attrs["layer"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_aligner(str(tmp_path / "p"))            # no layer given: no warning
        load_aligner(str(tmp_path / "p"), layer=2)   # the same layer: no warning
