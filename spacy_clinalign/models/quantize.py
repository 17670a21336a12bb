"""Opt-in int8 inference for the aligner's encoder on CPU (`quantize = "int8"` on `clinical_aligner`).

torch's dynamic quantization (`torch.ao.quantization.quantize_dynamic` on `nn.Linear`) stores the linear
layers' weights as int8 and quantizes activations on the fly; on CPU that is most of the encoder's time.

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
from typing import Optional, Tuple

import torch
from thinc.api import Model

from .heap import release_free_heap
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


def _keep_float(name: str) -> bool:
    return FLOAT_LINEARS.search(name) is not None


def int8_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A dynamically quantized (int8 nn.Linear) copy of `module` in eval mode, sharing all other tensors."""
    if any(t.device.type != "cpu" for t in module.parameters()):
        raise ValueError("spacy-clinalign: quantize = 'int8' is CPU inference only (torch's dynamic int8 "
                         "kernels); the encoder is on a GPU. Set quantize = 'none' there.")
    # Share (not copy) every parameter and buffer: quantize_dynamic then replaces the Linear modules of the
    # copy by int8 ones (per output channel) built from the shared weights; the float32 model is untouched.
    memo = {id(t): t for t in module.state_dict(keep_vars=True).values()}
    shallow = copy.deepcopy(module, memo)
    shallow.eval()
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices, once per build
        warnings.simplefilter("ignore")
        spec = {name: torch.ao.quantization.per_channel_dynamic_qconfig
                for name, m in shallow.named_modules() if isinstance(m, torch.nn.Linear) and not _keep_float(name)}
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
                    cache = (version, int8_copy(self._model))
                    self.__dict__["_int8_cache"] = cache
        return cache[1]

    def predict(self, inputs):
        """Forward pass through the int8 copy (always in eval mode), without gradients."""
        model = self._int8_model()
        with torch.no_grad():
            output = model(*inputs.args, **inputs.kwargs)
        release_free_heap()  # as SafeHFShim.predict: the call's freed activations go back to the OS
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
