"""Which torch module a linker encoder runs for inference: its float32 model, or (`quantize = "int8"`, CPU
only) an int8 copy of it (models/quantize.py: dynamically quantized nn.Linear with smoothed inputs, the
residual projections kept in float32). The copy is made once per encoder and weights version and never saved: `save` writes the
float32 model, so pipelines stay loadable by any setting."""
from typing import Any, Dict, Hashable, List, Sequence, Tuple

import numpy

from ..models.quantize import QUANTIZE_MODES, _weights_version, int8_copy


def inference_model(encoder: Any):
    """`encoder.model`, or its cached int8 copy when `encoder.quantize == "int8"` and it runs on CPU."""
    mode = getattr(encoder, "quantize", "none")
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"icd_linker: quantize must be one of {QUANTIZE_MODES}, got {mode!r}")
    if mode == "none" or str(encoder.device).split(":")[0] != "cpu":
        return encoder.model
    cached = encoder.__dict__.get("_int8")
    version = _weights_version(encoder.model)
    if cached is None or cached[0] != version:
        cached = (version, int8_copy(encoder.model, encoder.tokenizer))  # the tokenizer calibrates the smoothing
        encoder.__dict__["_int8"] = cached
    return cached[1]


def unique_texts(items: Sequence[Hashable]) -> Tuple[List, numpy.ndarray]:
    """Each distinct item once, in first-seen order, and for every input the row of its copy: encoders
    run on the distinct items and `out[index]` gives one row per input."""
    position: Dict[Hashable, int] = {}
    index = numpy.fromiter((position.setdefault(item, len(position)) for item in items), dtype=numpy.int64,
                           count=len(items))
    return list(position), index
