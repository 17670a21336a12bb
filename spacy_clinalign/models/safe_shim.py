"""Load Hugging Face encoders from pipeline folders and local model folders without running their code,
and run them from several threads at once.

A pipeline folder is data that someone else may have made. spacy-transformers' `HFShim.from_bytes` passes
the saved tokenizer kwargs to `from_pretrained` (so `trust_remote_code` plus an `auto_map` and a saved .py
file runs that file), writes each saved tokenizer file to `temp_dir / name` unchecked (`../x` or `/x` write
anywhere), and falls back to a non-strict weight load. Our architectures swap its shim for `SafeHFShim`,
which checks the whole payload before anything is written or loaded: tokenizer kwargs from an allow-list,
no remote-code keys in any config, plain file names with tokenizer suffixes only, weights through
`torch.load(weights_only=True)` into a strict, finite state dict.

`PyTorchShim.predict` switches the module to eval and back to train around every call, so a second thread
running at the same time gets dropout half-way through its forward pass. `SafeHFShim` keeps the module in
one mode while any call uses it (inference calls share eval mode) and never leaves inference in train mode.

`spacy-clinalign.TransformerModel.v1` is TransformerModel.v3 with both, for a shared `transformer` component.
"""
import json
import tempfile
import threading
from contextlib import contextmanager
from functools import partial
from io import BytesIO
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

import srsly
import torch
from spacy.util import SimpleFrozenDict, registry
from spacy_transformers.architectures import create_TransformerModel_v3
from spacy_transformers.data_classes import FullTransformerBatch, HFObjects
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.layers.transformer_model import TransformerModel
from thinc.api import Model, get_torch_default_device

from ..encoders import quiet_transformers, resolve_encoder
from .finite_weights import check_finite, check_safetensors_finite, safetensors_files
from .frozen_layers import FrozenLowerLayers
from .heap import release_after_call
from .row_buckets import run_by_length
from .span_getters import bind_span_getter

# Tokenizer keyword arguments a pipeline may carry: behaviour switches only, nothing that fetches or runs code.
ALLOWED_TOKENIZER_KWARGS = frozenset({
    "use_fast", "model_max_length", "do_lower_case", "strip_accents", "tokenize_chinese_chars",
    "add_prefix_space", "padding_side", "truncation_side", "clean_up_tokenization_spaces",
})
# Keys that make transformers import code from the model folder, in any config.
REMOTE_CODE_KEYS = frozenset({"auto_map", "trust_remote_code", "custom_pipelines", "code_revision"})
# What tokenizer.save_pretrained writes: JSON, vocabularies and merges (.txt) and SentencePiece models.
TOKENIZER_FILE_SUFFIXES = (".json", ".txt", ".model")
PAYLOAD_KEYS = frozenset({"config", "state", "tokenizer", "_init_tokenizer_config", "_init_transformer_config"})
# Buffers some transformers versions save and others recompute; absent or extra, they change no output.
TOLERATED_KEY_SUFFIXES = ("position_ids",)


class UnsafeModelError(ValueError):
    """Saved or local encoder data that spacy-clinalign refuses to load."""


def _refuse(where: str, problem: str) -> UnsafeModelError:
    return UnsafeModelError(f"spacy-clinalign refused to load the encoder ({where}): {problem}")


def check_tokenizer_kwargs(kwargs: Any, where: str) -> Dict[str, Any]:
    """Tokenizer kwargs from the allow-list, with plain values; `trust_remote_code` is never accepted."""
    if not isinstance(kwargs, Mapping):
        raise _refuse(where, f"tokenizer settings must be a dict, got {type(kwargs).__name__}")
    bad = sorted(str(k) for k in kwargs if k not in ALLOWED_TOKENIZER_KWARGS)
    if bad:
        raise _refuse(where, f"tokenizer setting(s) {bad} are not allowed (allowed: {sorted(ALLOWED_TOKENIZER_KWARGS)})")
    for key, value in kwargs.items():
        if not isinstance(value, (bool, int, float, str, type(None))):
            raise _refuse(where, f"tokenizer setting {key!r} must be a plain value, got {type(value).__name__}")
    return dict(kwargs)


def check_no_remote_code(config: Any, where: str, path: str = "") -> None:
    """Raise if any (nested) key of a Hugging Face config would make transformers import code."""
    if isinstance(config, Mapping):
        for key, value in config.items():
            if key in REMOTE_CODE_KEYS:
                raise _refuse(where, f"{path + str(key)!r} asks transformers to run code shipped with the model")
            check_no_remote_code(value, where, f"{path}{key}.")
    elif isinstance(config, (list, tuple)):
        for value in config:
            check_no_remote_code(value, where, path)


def check_file_name(name: Any, where: str) -> str:
    """A saved tokenizer file name must be a plain name (no folders, no '..', not absolute) with a
    tokenizer suffix: it is written into a temporary folder and nothing else."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise _refuse(where, f"tokenizer file name {name!r} is not a plain file name")
    if (name in (".", "..") or PurePosixPath(name).name != name or PureWindowsPath(name).name != name
            or PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute()):
        raise _refuse(where, f"tokenizer file name {name!r} is not a plain file name (it names a folder or a path)")
    if not name.endswith(TOKENIZER_FILE_SUFFIXES):
        raise _refuse(where, f"tokenizer file {name!r} is not a tokenizer file (allowed: {TOKENIZER_FILE_SUFFIXES})")
    return name


def check_payload(msg: Any, where: str = "saved pipeline bytes") -> None:
    """Validate spacy-transformers' serialized shim before anything is written or loaded."""
    if not isinstance(msg, Mapping) or not set(msg) <= PAYLOAD_KEYS:
        keys = sorted(map(str, msg)) if isinstance(msg, Mapping) else type(msg).__name__
        raise _refuse(where, f"unexpected transformer payload {keys}")
    config = msg.get("config") or {}
    check_no_remote_code(config, where)
    check_no_remote_code(msg.get("_init_transformer_config") or {}, where)
    check_tokenizer_kwargs(msg.get("_init_tokenizer_config") or {}, where)
    tokenizer = msg.get("tokenizer") or {}
    if not isinstance(tokenizer, Mapping):
        raise _refuse(where, "the saved tokenizer is not a dict of files")
    for name, data in tokenizer.items():
        if name == "kwargs":
            check_tokenizer_kwargs(data, where)
            continue
        check_file_name(name, where)
        if not isinstance(data, bytes):
            raise _refuse(where, f"tokenizer file {name!r} holds {type(data).__name__}, not bytes")
        if name.endswith(".json"):
            try:
                check_no_remote_code(json.loads(data.decode("utf8")), f"{where}, {name}")
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise _refuse(where, f"tokenizer file {name!r} is not valid JSON ({err})") from None
    if config and not isinstance(msg.get("state"), bytes):
        raise _refuse(where, "the saved weights are missing")


def load_weights(transformer: torch.nn.Module, data: bytes, where: str) -> None:
    """Load a `torch.save`d state dict with `weights_only=True` (no pickled objects), strictly, finite only."""
    try:
        state = torch.load(BytesIO(data), map_location=get_torch_default_device(), weights_only=True)
    except Exception as err:  # pickle.UnpicklingError, RuntimeError, EOFError...
        raise _refuse(where, f"the saved weights are not a plain tensor state dict ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _refuse(where, "the saved weights are not a dict of tensors")
    # assign: the loaded tensors become the parameters (no second copy of the weights at load)
    result = transformer.load_state_dict(state, strict=False, assign=True)
    del state
    check_loading_info(result.missing_keys, result.unexpected_keys, where)
    check_finite(transformer, where)


def check_loading_info(missing: List[str], unexpected: List[str], where: str,
                       allow_missing: tuple = (), allow_unexpected: bool = False) -> None:
    """Refuse weights that leave parameters at their random initialization, or that belong to another model."""
    missing = [k for k in missing if not k.endswith(TOLERATED_KEY_SUFFIXES) and not k.startswith(allow_missing)]
    unexpected = [] if allow_unexpected else [k for k in unexpected if not k.endswith(TOLERATED_KEY_SUFFIXES)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} parameter(s) have no saved weights and would be randomly initialized "
                         f"(e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} saved weight(s) match no parameter (e.g. {unexpected[:3]})")
        raise ValueError(f"spacy-clinalign: the encoder weights do not match the model ({where}): "
                         + "; ".join(parts) + ". The weights are corrupted or belong to another model.")


class _ModeGate:
    """Lets any number of calls share the module in one mode (train or eval); a call that needs the
    other mode waits until the module is free, then switches it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._training: Optional[bool] = None
        self._active = 0

    @contextmanager
    def use(self, module: torch.nn.Module, training: bool) -> Iterator[None]:
        with self._cond:
            while self._active and self._training != training:
                self._cond.wait()
            if module.training != training:
                module.train(training)
            self._training = training
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if not self._active:
                    self._cond.notify_all()


class SafeHFShim(HFShim):
    """HFShim that validates saved bytes (see the module docstring) and is safe to call from threads."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._gate = _ModeGate()

    @classmethod
    def from_shim(cls, shim: HFShim) -> "SafeHFShim":
        """The same shim (id, model, optimizer state, settings) with the safe behaviour."""
        safe = cls.__new__(cls)
        safe.__dict__.update(shim.__dict__)
        safe._gate = _ModeGate()
        return safe

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_gate", None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._gate = _ModeGate()

    def predict(self, inputs):
        """Forward pass in eval mode, without gradients; the module stays in eval mode afterwards."""
        with self._gate.use(self._model, training=False), torch.no_grad():
            with torch.autocast(device_type="cuda", enabled=self._mixed_precision):
                output = run_by_length(self._model, inputs)
        release_after_call(self._model)  # freed activations and the embedding rows read go back (models/heap.py)
        return output

    def begin_update(self, inputs):
        with self._gate.use(self._model, training=True):
            frozen: Optional[FrozenLowerLayers] = getattr(self, "frozen", None)
            if frozen is None:
                return super().begin_update(inputs)
            with frozen.installed(self._model, inputs.kwargs):
                return super().begin_update(inputs)

    def from_bytes(self, bytes_data: bytes) -> "SafeHFShim":
        from transformers.modeling_utils import no_init_weights

        where = "saved pipeline bytes"
        try:
            msg = srsly.msgpack_loads(bytes_data)
        except Exception as err:
            raise _refuse(where, f"the transformer bytes are not valid msgpack ({err})") from None
        check_payload(msg, where)
        config_dict = msg.get("config")
        if not config_dict:
            self._hfmodel = HFObjects(None, None, None, dict(msg.get("_init_tokenizer_config") or {}),
                                      dict(msg.get("_init_transformer_config") or {}))
            return self
        files = dict(msg.get("tokenizer") or {})
        tok_kwargs = files.pop("kwargs", {})
        with tempfile.TemporaryDirectory() as temp_name:  # removed on errors too (make_tempdir is not)
            temp_dir = Path(temp_name)
            model_dir, tok_dir = temp_dir / "model", temp_dir / "tokenizer"
            model_dir.mkdir()
            tok_dir.mkdir()
            srsly.write_json(model_dir / "config.json", config_dict)
            config = self.config_cls.from_pretrained(str(model_dir), trust_remote_code=False, local_files_only=True)
            for name, data in files.items():
                (tok_dir / check_file_name(name, where)).write_bytes(data)
            tokenizer = self.tokenizer_cls.from_pretrained(
                str(tok_dir), config=config, trust_remote_code=False, local_files_only=True, **tok_kwargs
            )
            vocab_file_contents = _vocab_file_contents(tokenizer, tok_dir)
        with no_init_weights():  # parameters allocated but never written: the saved weights replace them
            transformer = self.model_cls.from_config(config, trust_remote_code=False)
        state_bytes = msg.pop("state")
        del msg
        load_weights(transformer, state_bytes, where)
        del state_bytes
        transformer.eval()
        self._hfmodel = HFObjects(tokenizer, transformer, vocab_file_contents, SimpleFrozenDict(), SimpleFrozenDict())
        self._model = transformer
        self._model.to(get_torch_default_device())
        return self


def _vocab_file_contents(tokenizer: Any, folder: Path) -> Optional[bytes]:
    if not hasattr(tokenizer, "vocab_file"):
        return None
    path = folder / tokenizer.vocab_files_names["vocab_file"]
    return path.read_bytes() if path.is_file() else None


def load_local_encoder(name: str, tok_config: Dict[str, Any], trf_config: Dict[str, Any]) -> HFObjects:
    """Load a local Hugging Face folder like spacy-transformers' `huggingface_from_pretrained`, but never
    from the hub, never with remote code, and refusing weights that leave parameters randomly initialized
    (transformers only logs that, and the aligner silences its logs) or that hold NaN/inf."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = Path(name)
    where = f"encoder folder {str(folder)!r}"
    if not (folder / "config.json").is_file():
        raise ValueError(f"spacy-clinalign: {where} is not a local Hugging Face model folder (no config.json); "
                         "models load from local folders only")
    tok_kwargs = check_tokenizer_kwargs(tok_config, where)
    check_no_remote_code(trf_config, where)
    for json_name in ("config.json", "tokenizer_config.json"):
        if (folder / json_name).is_file():
            try:
                check_no_remote_code(srsly.read_json(folder / json_name), f"{where}, {json_name}")
            except ValueError as err:
                if isinstance(err, UnsafeModelError):
                    raise
                raise ValueError(f"spacy-clinalign: {folder / json_name} is not valid JSON ({err})") from None
    safe = {"trust_remote_code": False, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **safe, **tok_kwargs)
    vocab_file_contents = None
    if hasattr(tokenizer, "vocab_file") and tokenizer.vocab_file and Path(tokenizer.vocab_file).is_file():
        vocab_file_contents = Path(tokenizer.vocab_file).read_bytes()
    config = AutoConfig.from_pretrained(str(folder), **safe, **{**trf_config, "return_dict": True})
    try:
        with quiet_transformers():
            transformer, info = AutoModel.from_pretrained(str(folder), config=config, output_loading_info=True, **safe)
    except UnsafeModelError:
        raise
    except Exception as err:  # safetensors/torch errors for truncated or foreign files
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"spacy-clinalign: cannot load the encoder weights in {where} "
                         f"({type(err).__name__}: {first}); the weights file is corrupted or incomplete") from None
    # Cutting the encoder at `layer` leaves the upper layers' weights unused: extra weights are expected
    # here. The pooler is never read (tokens are pooled from the last hidden state).
    check_loading_info(info.get("missing_keys", []), info.get("unexpected_keys", []), where,
                       allow_missing=("pooler.",), allow_unexpected=True)
    if info.get("mismatched_keys"):
        raise ValueError(f"spacy-clinalign: weights in {where} have the wrong shapes: {info['mismatched_keys'][:3]}")
    # Weights transformers memory-maps from .safetensors are checked in the file, so that the check does
    # not make the whole embedding table resident (models/finite_weights.py).
    files = safetensors_files(folder)
    if files:
        check_safetensors_finite(files, where)
    else:
        check_finite(transformer, where)
    transformer.eval()
    transformer.to(get_torch_default_device())
    return HFObjects(tokenizer, transformer, vocab_file_contents)


def _safe_transformer_init(model: TransformerModel, X=None, Y=None) -> None:
    """TransformerModel's init, with `load_local_encoder` instead of `huggingface_from_pretrained`."""
    if model.attrs["has_transformer"]:
        return
    hf_model = load_local_encoder(resolve_encoder(model.attrs["name"]), dict(model._init_tokenizer_config),
                                  dict(model._init_transformer_config))
    model.attrs["set_transformer"](model, hf_model)


def make_safe(model: Model) -> Model:
    """Give every spacy-transformers TransformerModel inside `model` the safe shim and the safe init."""
    for node in model.walk():
        for k, shim in enumerate(node.shims):
            if isinstance(shim, HFShim) and not isinstance(shim, SafeHFShim):
                node.shims[k] = SafeHFShim.from_shim(shim)
        if isinstance(node, TransformerModel):
            check_tokenizer_kwargs(node._init_tokenizer_config, f"{node.attrs['name']!r} tokenizer_config")
            check_no_remote_code(node._init_transformer_config, f"{node.attrs['name']!r} transformer_config")
            node.init = _safe_transformer_init
    return model


def set_frozen_layers(model: Model, n_layers: int, cache_size: int) -> Model:
    """Train only the layers above `n_layers` (embeddings and the first `n_layers` frozen), caching the frozen
    output of up to `cache_size` windows during training (models/frozen_layers.py). 0 layers: train all."""
    frozen = FrozenLowerLayers(n_layers, cache_size) if n_layers else None
    for node in model.walk():
        for shim in node.shims:
            if isinstance(shim, SafeHFShim):
                shim.frozen = frozen
    return model


def has_wordpieces(tokenizer: Any, text: str) -> bool:
    """Whether `text` gives the tokenizer any wordpiece (whitespace, zero-width and lone combining
    characters give none, and spacy-transformers fails on a batch made only of such texts)."""
    if any(ch.isalnum() for ch in text):
        return True
    if not text.strip():
        return False
    if getattr(tokenizer, "is_fast", False):  # the Rust tokenizer directly: no settings change, thread-safe
        return len(tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids) > 0
    return len(tokenizer.tokenize(text)) > 0


def _forward_skipping_empty_batches(forward: Callable, model: TransformerModel, docs: List, is_train: bool):
    """A batch in which no Doc has a wordpiece gets spacy-transformers' empty batch (one empty
    TransformerData per Doc) instead of an error."""
    if docs and not any(has_wordpieces(model.tokenizer, doc.text) for doc in docs):
        return FullTransformerBatch.empty(len(docs)), lambda d_output: docs
    return forward(model, docs, is_train)


@registry.architectures("spacy-clinalign.TransformerModel.v1")
def build_safe_transformer_model(
    name: str,
    get_spans: Callable,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    frozen_layers: int = 0,
    frozen_cache_size: int = 0,
    layer: Optional[int] = None,
) -> Model:
    """`spacy-transformers.TransformerModel.v3` (same settings) for a shared `transformer` component, with
    the safe shim and init: bio_ner_cnn's listener pipelines load as safely as the inline ones.
    frozen_layers / frozen_cache_size: train only the upper layers (see `set_frozen_layers`).
    layer: the hidden layer listeners read (None: the last). The encoder is cut after it
    (`num_hidden_layers`), as in `spacy-clinalign.AlignerModel.v1`: an embedding model's top layers are tuned
    for sentence vectors, a middle one keeps more token detail, and the cut layers cost nothing."""
    trf_config = dict(transformer_config)
    if layer is not None:
        if layer < 1:
            raise ValueError(f"TransformerModel: layer must be >= 1 (1 = first transformer layer), got {layer}")
        if frozen_layers >= layer:
            raise ValueError(f"TransformerModel: frozen_layers ({frozen_layers}) must be below layer ({layer}), "
                             "or nothing is left to train")
        if trf_config.get("num_hidden_layers", layer) != layer:
            raise ValueError(f"TransformerModel: layer={layer} and transformer_config num_hidden_layers="
                             f"{trf_config['num_hidden_layers']} disagree; set only one")
        trf_config["num_hidden_layers"] = layer
    model = make_safe(create_TransformerModel_v3(
        name=resolve_encoder(name), get_spans=get_spans, tokenizer_config=tokenizer_config,
        transformer_config=trf_config, mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
    ))
    model._func = partial(_forward_skipping_empty_batches, model._func)  # a partial pickles, a closure not
    set_frozen_layers(model, frozen_layers, frozen_cache_size)
    return bind_span_getter(model)  # wordpiece-limited windows read this model's tokenizer
