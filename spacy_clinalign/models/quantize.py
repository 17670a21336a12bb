"""Opt-in int8 inference for the aligner's encoder on CPU (`quantize = "int8"` on `clinical_aligner`).

torch's dynamic quantization (`torch.ao.quantization.quantize_dynamic` on `nn.Linear`) stores the linear
layers' weights as int8 and quantizes activations on the fly; on CPU that is most of the encoder's time.
It quantizes a linear's input with one scale for the whole call, so input channels with outlier values
(LayerNorm outputs of XLM-R / e5 have a few) cost the other channels their precision, and a Doc's vectors
depend on what else is in its call. The inputs of the quantized linears are therefore smoothed first
(`Int8Recipe.smooth_alpha`, SmoothQuant): part of each channel's scale is moved into the weights, measured
once on a fixed calibration sample, never on the documents being aligned.

Why a separate copy rather than quantizing the encoder in place:
- saving: the pipeline keeps saving the float32 weights, so a pipeline aligned in int8 is saved and loaded
  (through the safe shim's strict, `weights_only` load) exactly like any other;
- training: quantized linears have no gradients. The int8 copy is only used by inference; a training step
  with `quantize = "int8"` is refused with an error instead of training the wrong weights.
The copy shares every non-linear tensor (the 250k-row embedding table above all) with the float32 model, so
it costs only the int8 linear weights. It is rebuilt when the float32 weights change (a new model after
`from_disk`, or any in-place update: tensors count their in-place changes in `_version`).
"""
import copy
import re
import threading
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from thinc.api import Model

from ..encoders.tiny import TINY_CORPUS
from .heap import release_after_call
from .row_buckets import run_by_length
from .safe_shim import SafeHFShim

QUANTIZE_MODES = ("none", "int8")


class QuantizedTrainingError(RuntimeError):
    """A training step asked of an encoder set to int8 inference."""


def check_quantize(mode: str, where: str) -> str:
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"{where}: quantize must be one of {QUANTIZE_MODES}, got {mode!r}")
    return mode


def _weights_version(module: torch.nn.Module) -> Tuple[int, int]:
    """(identity, in-place change count) of a module's tensors: changes whenever its weights do."""
    return id(module), sum(t._version for t in module.state_dict(keep_vars=True).values())


# Linear layers left in float32: the projections back into the residual stream (attention output and
# feed-forward output, `*.output.dense` in BERT/XLM-R). Their inputs carry the activation outliers that
# per-tensor int8 activations clip. All linears in int8 cost 1.7 AER points on en-fr (first 200 pairs,
# 7.76 -> 9.45); these two kept in float32, 0.04. Chosen on en-fr; the other gold sets are held out.
FLOAT_LINEARS = re.compile(r"output\.dense$")
_LAYER_INDEX = re.compile(r"(?:^|\.)layer\.(\d+)\.")


@dataclass(frozen=True)
class Int8Recipe:
    """How the int8 copy is made.

    smooth_alpha: SmoothQuant-style migration (Xiao et al. 2023) for the quantized linears. torch's dynamic
        int8 linear quantizes its input with ONE scale per call (the whole batch tensor), so a few input
        channels with large values (LayerNorm outliers) leave the other channels a handful of int8 steps.
        Each input channel c is divided by s_c = a_c^alpha / w_c^(1 - alpha) (a_c: the channel's largest
        |input| on a fixed calibration sample, w_c: the largest |weight| of that input column) and the
        weight column multiplied by it: the float product is unchanged, the int8 input is flatter. BERT is
        post-LayerNorm (a LayerNorm's output also feeds the residual), so the division cannot be folded
        into the LayerNorm: it runs before the linear, one elementwise product. None: no migration.
    float_last_layers: the last transformer layers kept wholly in float32 (the aligner reads the last
        layer's output directly, so its quantization error reaches the vectors without being mixed).
    """

    smooth_alpha: Optional[float] = None
    float_last_layers: int = 0


# alpha 0.8, chosen on the first 120 pairs of binaryalign en-ja (a tune set disjoint from the reported sets;
# binaryalign's en-fr Hansards and en-ro overlap awesome-align's en-fr and ro-en): AER argmax / itermax /
# threshold fp32 66.85 / 62.55 / 70.58, int8 without smoothing 67.72 / 63.95 / 71.86, alpha 0.5
# 67.09 / 62.40 / 70.74, alpha 0.8 66.77 / 62.38 / 70.49, alpha 0.8 with the last layer in float32
# 66.71 / 61.99 / 70.42 (bench/RESULTS.md, "int8"). The last layer in float32 was the best on all three
# methods of that tune set; on the held-out sets alpha 0.8 alone left itermax / threshold 0.5-0.6 above
# float32 (ro-en, en-fr), so the default keeps it (one layer of eight in float32).
DEFAULT_RECIPE = Int8Recipe(smooth_alpha=0.8, float_last_layers=1)
# A fixed multilingual sample (clinical and general sentences, six languages) for the smoothing
# statistics: the int8 copy never depends on the documents being aligned.
CALIBRATION_TEXTS = TINY_CORPUS


def _keep_float(name: str, n_layers: int = 0, float_last_layers: int = 0) -> bool:
    if FLOAT_LINEARS.search(name) is not None:
        return True
    found = _LAYER_INDEX.search(name)
    return bool(float_last_layers and found and int(found.group(1)) >= n_layers - float_last_layers)


class SmoothedLinear(torch.nn.Module):
    """`linear(x * inv_scale)`, with the linear's weight columns multiplied by 1 / inv_scale (see Int8Recipe)."""

    def __init__(self, linear: torch.nn.Linear, inv_scale: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("inv_scale", inv_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inv_scale)


def input_channel_maxima(module: torch.nn.Module, names: List[str], tokenizer: Any,
                         texts: Sequence[str] = CALIBRATION_TEXTS) -> Dict[str, torch.Tensor]:
    """Largest |input| per channel of each named linear over the calibration texts (real wordpieces only)."""
    found: Dict[str, torch.Tensor] = {}
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
    keep = batch["attention_mask"].bool()
    hooks = []
    for name in names:
        def hook(_mod, args, name=name):
            x = args[0]
            x = (x[keep] if x.dim() == 3 else x.reshape(-1, x.shape[-1])).abs().amax(dim=0)
            found[name] = torch.maximum(found[name], x) if name in found else x
        hooks.append(module.get_submodule(name).register_forward_pre_hook(hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    return found


def int8_copy(module: torch.nn.Module, tokenizer: Any = None, recipe: Optional[Int8Recipe] = None) -> torch.nn.Module:
    """A dynamically quantized (int8 nn.Linear) copy of `module` in eval mode, sharing all other tensors."""
    recipe = recipe or DEFAULT_RECIPE
    if any(t.device.type != "cpu" for t in module.parameters()):
        raise ValueError("spacy-clinalign: quantize = 'int8' is CPU inference only (torch's dynamic int8 "
                         "kernels); the encoder is on a GPU. Set quantize = 'none' there.")
    n_layers = len(getattr(getattr(module, "encoder", None), "layer", []) or [])
    names = [name for name, m in module.named_modules()
             if isinstance(m, torch.nn.Linear) and not _keep_float(name, n_layers, recipe.float_last_layers)]
    maxima = {}
    if recipe.smooth_alpha is not None:
        if tokenizer is None:
            raise ValueError("spacy-clinalign: int8 smoothing needs the encoder's tokenizer for its calibration")
        maxima = input_channel_maxima(module, names, tokenizer)
    # Share (not copy) every parameter and buffer: quantize_dynamic then replaces the Linear modules of the
    # copy by int8 ones (per output channel) built from the shared weights; the float32 model is untouched.
    memo = {id(t): t for t in module.state_dict(keep_vars=True).values()}
    shallow = copy.deepcopy(module, memo)
    shallow.eval()
    spec = {}
    for name in names:
        if name in maxima:
            linear = shallow.get_submodule(name)
            alpha = recipe.smooth_alpha
            act = maxima[name].clamp(min=1e-5)
            weight = linear.weight.detach().abs().amax(dim=0).clamp(min=1e-5)
            scale = (act.pow(alpha) / weight.pow(1 - alpha)).clamp(min=1e-5)
            smoothed = torch.nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
            with torch.no_grad():
                smoothed.weight.copy_(linear.weight.detach() * scale)  # a new tensor: the float32 model keeps its own
                if linear.bias is not None:
                    smoothed.bias.copy_(linear.bias.detach())
            parent, _, child = name.rpartition(".")
            setattr(shallow.get_submodule(parent) if parent else shallow, child, SmoothedLinear(smoothed, 1.0 / scale))
            name = name + ".linear"
        spec[name] = torch.ao.quantization.per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices, once per build
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(shallow, spec, dtype=torch.qint8, inplace=True)


class Int8HFShim(SafeHFShim):
    """SafeHFShim whose inference runs an int8 copy of the encoder; saving, loading and pickling are the
    float32 shim's (the copy is never stored). Training through it is refused."""

    def _int8_model(self) -> torch.nn.Module:
        cache = self.__dict__.get("_int8_cache")
        version = _weights_version(self._model)
        if cache is None or cache[0] != version:
            lock = self.__dict__.setdefault("_int8_lock", threading.Lock())
            with lock:
                cache = self.__dict__.get("_int8_cache")
                if cache is None or cache[0] != version:
                    cache = (version, int8_copy(self._model, self._hfmodel.tokenizer))
                    self.__dict__["_int8_cache"] = cache
        return cache[1]

    def predict(self, inputs):
        """Forward pass through the int8 copy (always in eval mode), without gradients."""
        model = self._int8_model()
        with torch.no_grad():
            output = run_by_length(model, inputs)
        release_after_call(model)  # as SafeHFShim.predict (the int8 copy shares the float32 embedding table)
        return output

    def begin_update(self, inputs):
        raise QuantizedTrainingError(
            "spacy-clinalign: the aligner's encoder is set to int8 inference (quantize = 'int8'), which "
            "cannot be trained: set [components.clinical_aligner] quantize = \"none\" for training")

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_int8_cache", None)
        state.pop("_int8_lock", None)
        return state


def set_quantization(model: Model, mode: str) -> None:
    """Switch every encoder shim inside `model` to int8 inference (`int8`) or back to float32 (`none`).
    Only the shims' class changes: the float32 weights, their optimizer state and serialization stay."""
    check_quantize(mode, "set_quantization")
    for node in model.walk():
        for shim in node.shims:
            if mode == "int8" and type(shim) is SafeHFShim:
                shim.__class__ = Int8HFShim
            elif mode == "none" and type(shim) is Int8HFShim:
                shim.__dict__.pop("_int8_cache", None)  # free the int8 weights
                shim.__class__ = SafeHFShim


def quantization_of(model: Model) -> Optional[str]:
    """`int8` if some encoder shim of `model` runs int8 inference, `none` if its shims are float32, None
    if it has no SafeHFShim (e.g. a test double)."""
    found = None
    for node in model.walk():
        for shim in node.shims:
            if isinstance(shim, Int8HFShim):
                return "int8"
            if isinstance(shim, SafeHFShim):
                found = "none"
    return found
