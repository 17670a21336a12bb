"""fp16 deltas over a base encoder: the encoder parameters that training changed, stored with
safetensors (tensors only, never pickle) under their Hugging Face state_dict names.

`extract_delta` diffs a trained encoder (a saved pipeline, a Language, a Hugging Face encoder folder, or a
state dict) against its base;
from a pipeline it also keeps the pipeline's config and its components' non-encoder bytes (the "heads":
spaCy's own msgpack, data only). `apply_delta` refuses before it changes anything when the part's files do
not match SHA256SUMS, when the base encoder is another model (model type, vocabulary size, hidden size,
layer count, or the numbers of its untouched tensors), or when a tensor's name or shape is not the base's.
A delta holds the trained values themselves, so applying it twice gives the same encoder; except for the
matrices a low-rank training changed (LoRA): with `rank`, a 2-D change that is of that rank (within
`LOW_RANK_TOL`) is stored as two factors U (out x r) and V (r x in), W = W_base + U V, and the card keeps the
base matrix's statistics, so such a delta is refused by any encoder whose matrix is not the base's (another
model, or one the delta was already applied to). A reranker (a sequence classifier) ships the same way over
the bi-encoder it was trained from, its classification head stored in full."""
import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import srsly
import torch
from spacy.language import Language
from spacy_transformers.layers.transformer_model import TransformerModel
from thinc.api import Config

from ..encoders import DEFAULT_ENCODER, resolve_encoder
from .cards import BASE_KEYS, flat_figures, read_card, write_card
from .checksums import SUMS_NAME, read_sums, sha256_file, data_files, verify_checksums

DELTA_NAME = "delta.safetensors"
CONFIG_NAME = "config.cfg"
HEADS_NAME = "heads.msgpack"
DELTA_FORMAT = "spacy-clinalign-delta/1"
LOW_RANK_FORMAT = "spacy-clinalign-delta/2"  # /1 plus low-rank factor pairs
LOW_RANK_U, LOW_RANK_V = ".low_rank_u", ".low_rank_v"
# A change is shipped as factors only if the rank-r truncation keeps it to this relative Frobenius error
# (a merged LoRA change is exactly rank r: its error is float32 round-off); otherwise it is stored in full.
LOW_RANK_TOL = 1e-3
SEQUENCE_CLASSIFIER = "ForSequenceClassification"
# Trained parameters a base may lack without harm: the pooler is never read (tokens are pooled from
# the hidden states), position_ids are buffers some transformers versions save and others recompute.
IGNORED_PREFIXES = ("pooler.",)
IGNORED_SUFFIXES = ("position_ids",)
ENCODER_ARCHITECTURES = ("spacy-clinalign.AlignerModel.v1", "spacy-clinalign.TransformerModel.v1",
                         "spacy-transformers.TransformerModel.v3")
FINGERPRINT_TENSORS = 4


class DeltaMismatchError(ValueError):
    """A delta that does not belong to the encoder it would be applied to."""


# --- the encoder inside a pipeline ---------------------------------------------------------------------
def find_encoder(nlp: Language) -> Tuple[str, TransformerModel]:
    """The pipeline's one Hugging Face encoder: (component name, its TransformerModel node)."""
    found = [(name, node) for name, pipe in nlp.components if getattr(pipe, "model", None) is not None
             for node in pipe.model.walk() if isinstance(node, TransformerModel)]
    if len(found) != 1:
        raise ValueError(f"a shipped part holds exactly one transformer encoder; this pipeline has {len(found)} "
                         f"({[name for name, _ in found]})")
    return found[0]


def _ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES) or name.endswith(IGNORED_SUFFIXES)


def _thinc_params(model) -> List[str]:
    return [f"{node.name}.{p}" for node in model.walk() for p in node.param_names if node.has_param(p)]


def _sanitized_config(nlp: Language, encoder_component: str) -> Tuple[Config, Optional[int]]:
    """The pipeline's [nlp] and [components] (no paths, corpora or training), the encoder named by its
    alias; and the hidden layer the encoder is read at (None: its last)."""
    config = nlp.config.interpolate()
    kept = Config({"nlp": config["nlp"], "components": config["components"]})
    found = []

    def rename(section: Any) -> None:
        if isinstance(section, dict):
            if section.get("@architectures") in ENCODER_ARCHITECTURES and "name" in section:
                section["name"] = DEFAULT_ENCODER
                found.append(section.get("layer"))
            for value in section.values():
                rename(value)

    rename(kept["components"][encoder_component])
    if len(found) != 1:
        raise ValueError(f"cannot find the encoder's `name` in the config of component {encoder_component!r}")
    return kept, found[0]


# --- base identity -------------------------------------------------------------------------------------
def base_identity(hf_model: torch.nn.Module) -> Dict[str, Any]:
    config = hf_model.config
    return {key: getattr(config, key, None) for key in BASE_KEYS}


def _stats(tensor: torch.Tensor) -> Dict[str, Any]:
    t = tensor.detach().double()
    return {"shape": list(tensor.shape), "mean": float(t.mean()), "mean_abs": float(t.abs().mean())}


def fingerprint(state: Mapping[str, torch.Tensor], skip: Any = ()) -> Dict[str, Dict[str, Any]]:
    """Statistics of a few 2-D weights the delta leaves alone: they tell two bases of the same shape apart."""
    names = [n for n, t in state.items()
             if n not in skip and not _ignored(n) and t.dim() == 2 and t.is_floating_point()]
    return {n: _stats(state[n]) for n in names[:FINGERPRINT_TENSORS]}


def _same_stats(got: Dict[str, Any], want: Dict[str, Any]) -> bool:
    """Whether a tensor's statistics are the recorded base's (fp16 and fp32 copies of the base agree this closely)."""
    scale = 1e-3 * want["mean_abs"] + 1e-6
    return abs(got["mean"] - want["mean"]) <= scale and abs(got["mean_abs"] - want["mean_abs"]) <= scale


def _check_base(card: Dict[str, Any], hf_model: torch.nn.Module, where: str) -> None:
    want, have = card["base"], base_identity(hf_model)
    wrong = [f"{key}: the delta was made for {want[key]!r}, this encoder has {have[key]!r}"
             for key in BASE_KEYS if want[key] != have[key]]
    if wrong:
        raise DeltaMismatchError(f"{where}: refused, the encoder is not the delta's base ({want.get('name', '?')}): "
                                 + "; ".join(wrong))
    state = hf_model.state_dict()
    for name, stats in (card["base"].get("fingerprint") or {}).items():
        if name not in state or list(state[name].shape) != stats["shape"]:
            raise DeltaMismatchError(f"{where}: refused, the encoder has no tensor {name!r} of shape {stats['shape']} "
                                     "that the delta's base has")
        got = _stats(state[name])
        if not _same_stats(got, stats):
            raise DeltaMismatchError(
                f"{where}: refused, the encoder has the base's shape but other weights: {name!r} has mean "
                f"{got['mean']:.6g} / mean |w| {got['mean_abs']:.6g}, the delta's base {stats['mean']:.6g} / "
                f"{stats['mean_abs']:.6g}")


# --- loading encoders ----------------------------------------------------------------------------------
def load_base_encoder(path: Union[str, Path]):
    """A local Hugging Face encoder folder (or the alias), loaded without remote code: HFObjects."""
    from ..models.safe_shim import load_local_encoder

    return load_local_encoder(resolve_encoder(str(path)), {"use_fast": True}, {})


def is_sequence_classifier(path: Union[str, Path]) -> bool:
    """A Hugging Face folder saved from a *ForSequenceClassification model (the linker's reranker)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text(encoding="utf8")).get("architectures") or []
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"{config} is not a JSON object") from None
    return any(str(a).endswith(SEQUENCE_CLASSIFIER) for a in architectures)


def load_sequence_classifier(path: Union[str, Path]):
    """(model, tokenizer) of a local folder as a one-logit sequence classifier, safetensors weights only.
    From an encoder folder (a bi-encoder) the head is new (random): a reranker delta replaces all of it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..encoders import check_encoder_folder, quiet_transformers

    folder = check_encoder_folder(str(path), "reranker")
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=1, local_files_only=True,
                                                                   use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model.eval(), tokenizer


def _trained_state(trained: Union[str, Path, Language, Mapping]) -> Tuple[Dict[str, torch.Tensor], Optional[Language]]:
    if isinstance(trained, Mapping):
        return dict(trained), None
    if isinstance(trained, (str, Path)):
        import spacy

        if not (Path(trained) / "config.cfg").is_file():
            if is_sequence_classifier(trained):  # the linker's reranker
                return dict(load_sequence_classifier(trained)[0].state_dict()), None
            if (Path(trained) / "config.json").is_file():  # a bare Hugging Face encoder (the linker's bi-encoder)
                return dict(load_base_encoder(trained).transformer.state_dict()), None
            raise ValueError(f"{trained} is neither a saved spaCy pipeline (config.cfg) nor a Hugging Face "
                             "encoder folder (config.json)")
        trained = spacy.load(trained)
    _, node = find_encoder(trained)
    if not node.attrs.get("has_transformer"):
        raise ValueError("the pipeline's encoder has no weights (it was never initialized or loaded)")
    return dict(node.transformer.state_dict()), trained


# --- extract -------------------------------------------------------------------------------------------
def low_rank_factors(change: torch.Tensor, rank: int) -> Optional[Tuple[torch.Tensor, torch.Tensor, float]]:
    """(U, V, relative error) with U @ V the best rank-`rank` approximation of a 2-D `change`, or None when
    the factors would not be smaller than the matrix."""
    rows, cols = change.shape
    if rank * (rows + cols) >= rows * cols:
        return None
    u, s, vh = torch.linalg.svd(change.double(), full_matrices=False)
    u, v = u[:, :rank] * s[:rank], vh[:rank]
    norm = float(change.double().norm())
    error = float((change.double() - u @ v).norm()) / norm if norm > 0 else 0.0
    return u.float(), v.float(), error


def extract_delta(trained: Union[str, Path, Language, Mapping], base_encoder: Union[str, Path],
                  out_dir: Union[str, Path], card: Optional[Dict[str, Any]] = None,
                  atol: float = 0.0, rank: Optional[int] = None) -> Dict[str, Any]:
    """Write `out_dir` (a part folder): delta.safetensors with the trained tensors that differ from the base by
    more than `atol`, as fp16; from a pipeline also config.cfg and heads.msgpack; card.json + MODEL_CARD.md.
    With `rank`, 2-D changes of at most that rank go as factor pairs (module docstring). A reranker folder
    is diffed against `base_encoder` loaded as a sequence classifier (its head in full).
    Returns the card. Run `update_checksums(out_dir.parent, out_dir.name)` (the CLI does) to ship it."""
    from safetensors.torch import save_file

    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    state, nlp = _trained_state(trained)
    reranker = isinstance(trained, (str, Path)) and is_sequence_classifier(trained)
    base = load_sequence_classifier(base_encoder)[0] if reranker else load_base_encoder(base_encoder).transformer
    base_state = base.state_dict()
    delta, unknown, reshaped, low_rank = {}, [], [], {}
    for name, tensor in state.items():
        if _ignored(name) or not tensor.is_floating_point():
            continue
        if name not in base_state:
            unknown.append(name)
            continue
        if tensor.shape != base_state[name].shape:
            reshaped.append(f"{name} {tuple(tensor.shape)} vs base {tuple(base_state[name].shape)}")
            continue
        change = tensor.detach().float().cpu() - base_state[name].detach().float().cpu()
        if float(change.abs().max()) <= atol:
            continue
        factors = low_rank_factors(change, rank) if rank is not None and change.dim() == 2 else None
        if factors is not None and factors[2] <= LOW_RANK_TOL:
            delta[name + LOW_RANK_U] = factors[0].to(torch.float16).contiguous()
            delta[name + LOW_RANK_V] = factors[1].to(torch.float16).contiguous()
            low_rank[name] = {"error": factors[2], "base": _stats(base_state[name])}
        else:
            delta[name] = tensor.detach().cpu().to(torch.float16).contiguous()
    if unknown or reshaped:
        raise DeltaMismatchError(f"the trained encoder is not built on {base_encoder}: "
                                 + (f"{len(unknown)} tensor(s) the base lacks (e.g. {unknown[:3]}) " if unknown else "")
                                 + (f"{len(reshaped)} tensor(s) of other shapes (e.g. {reshaped[:3]})" if reshaped else ""))
    if not delta:
        raise ValueError(f"the trained encoder equals its base {base_encoder} (within atol={atol}): nothing to ship")
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    delta_format = LOW_RANK_FORMAT if low_rank else DELTA_FORMAT
    save_file(delta, str(out_dir / DELTA_NAME), metadata={"format": delta_format})
    card = dict(card or {})
    card["name"] = out_dir.name
    card["base"] = {"name": card.pop("base_name", None) or Path(resolve_encoder(str(base_encoder))).name,
                    **base_identity(base), "fingerprint": fingerprint(base_state, skip=set(delta) | set(low_rank))}
    card["delta"] = {"file": DELTA_NAME, "dtype": "float16", "tensors": len(delta),
                     "parameters": int(sum(t.numel() for t in delta.values())), "format": delta_format}
    if reranker:
        card["kind"] = "reranker"
    if low_rank:
        card["delta"]["low_rank"] = {"rank": rank, "matrices": len(low_rank),
                                     "max_relative_error": max(v["error"] for v in low_rank.values()),
                                     "base": {name: v["base"] for name, v in low_rank.items()}}
    if nlp is not None:
        encoder_component, _ = find_encoder(nlp)
        heads = {}
        for name, pipe in nlp.components:
            if not hasattr(pipe, "to_bytes"):
                continue  # settings-only components (span_projector): the config holds everything
            if name == encoder_component:
                extra = _thinc_params(pipe.model)
                if extra:
                    raise ValueError(f"component {name!r} holds the encoder and other weights ({extra[:3]}); "
                                     "ship pipelines whose heads listen to a `transformer` component instead")
                heads[name] = pipe.to_bytes(exclude=["vocab", "model"])
            else:
                heads[name] = pipe.to_bytes(exclude=["vocab"])
        config, layer = _sanitized_config(nlp, encoder_component)
        config.to_disk(out_dir / CONFIG_NAME)
        srsly.write_msgpack(out_dir / HEADS_NAME, heads)
        card["encoder_component"] = encoder_component
        card["heads"] = sorted(heads)
        card["lang"] = nlp.lang
        card["layer"] = layer
    write_card(out_dir, card)
    return card


def update_checksums(root: Union[str, Path], part: str) -> Path:
    """Replace the SHA256SUMS entries of one part folder (the other parts' lines are kept as they are)."""
    root = Path(root)
    sums_path = root / SUMS_NAME
    sums = read_sums(sums_path) if sums_path.is_file() else {}
    sums = {name: digest for name, digest in sums.items() if not name.startswith(f"{part}/")}
    sums.update({name: sha256_file(path) for name, path in data_files(root, part).items()})
    sums_path.write_text("".join(f"{sums[name]}  {name}\n" for name in sorted(sums)), encoding="utf8")
    return sums_path


def set_figures(part_dir: Union[str, Path], scores: Dict[str, Any], command: str, prefix: str = "") -> Dict[str, Any]:
    """Put `scores` (measured by `command` on the pipeline built from this very delta) on a shipped part's
    card as `{prefix}{name}` with `{prefix}command`, replacing the figures of that prefix (prefix "": the
    figures without a "/" prefix); re-render MODEL_CARD.md and update SHA256SUMS. The part is checked
    first, so a changed delta is never re-blessed by new checksums."""
    part_dir = Path(part_dir)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    verify_checksums(part_dir.parent, part_dir.name)
    card = read_card(part_dir)
    figures = flat_figures(scores)
    if not figures:
        raise ValueError("no numeric scores to put on the card")
    kept = {k: v for k, v in (card.get("figures") or {}).items()
            if not (k.startswith(prefix) if prefix else "/" not in k)}
    card["figures"] = {**kept, **{prefix + k: v for k, v in figures.items()}, prefix + "command": command}
    write_card(part_dir, card)
    update_checksums(part_dir.parent, part_dir.name)
    return card


def git_commit(folder: Union[str, Path] = ".") -> Optional[str]:
    """The checked-out commit of `folder`'s repository (None outside a repository or without git)."""
    import subprocess

    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(folder), capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


# --- apply ---------------------------------------------------------------------------------------------
def read_delta(part_dir: Union[str, Path]) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """Check the part's files against SHA256SUMS (in its parent folder), then read its card and tensors."""
    from safetensors import safe_open

    part_dir = Path(part_dir)
    verify_checksums(part_dir.parent, part_dir.name)
    card = read_card(part_dir)
    path = part_dir / DELTA_NAME
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as err:  # safetensors raises its own error types for a malformed header
        raise ValueError(f"{path} is not a safetensors file ({type(err).__name__}: {err})") from None
    if meta.get("format") not in (DELTA_FORMAT, LOW_RANK_FORMAT):
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {DELTA_FORMAT!r} or {LOW_RANK_FORMAT!r}")
    return card, tensors


def apply_delta(hf_model: torch.nn.Module, part_dir: Union[str, Path]) -> Dict[str, Any]:
    """Overwrite `hf_model`'s trained parameters with the part's delta; returns the card. Nothing is changed
    unless the checksums, the base identity and every tensor's name, shape and values check out."""
    card, tensors = read_delta(part_dir)
    return _apply_tensors(hf_model, card, tensors, f"delta {part_dir}")


def _apply_tensors(hf_model: torch.nn.Module, card: Dict[str, Any], tensors: Dict[str, torch.Tensor],
                   where: str) -> Dict[str, Any]:
    """apply_delta once the part is read: every check first, then the writes."""
    _check_base(card, hf_model, where)
    params = dict(hf_model.state_dict(keep_vars=True))
    changes = _low_rank_changes(card, tensors, params, where)
    for name, tensor in tensors.items():
        if name not in params:
            raise DeltaMismatchError(f"{where}: refused, tensor {name!r} is not a parameter of this encoder")
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise DeltaMismatchError(f"{where}: refused, tensor {name!r} has shape {tuple(tensor.shape)}, "
                                     f"the encoder's is {tuple(params[name].shape)}")
        if not bool(torch.isfinite(tensor).all()):
            raise DeltaMismatchError(f"{where}: refused, tensor {name!r} holds NaN or infinite values")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(dtype=params[name].dtype, device=params[name].device))
        for name, change in changes.items():
            params[name].add_(change.to(dtype=params[name].dtype, device=params[name].device))
    return card


def _low_rank_changes(card: Dict[str, Any], tensors: Dict[str, torch.Tensor], params: Mapping[str, torch.Tensor],
                      where: str) -> Dict[str, torch.Tensor]:
    """Pop the factor pairs out of `tensors` and return their products, once each target matrix is checked
    to be the base's (so a low-rank change is never added to another model, nor added twice)."""
    base_stats = ((card.get("delta") or {}).get("low_rank") or {}).get("base") or {}
    names = {n[:-len(LOW_RANK_U)] for n in tensors if n.endswith(LOW_RANK_U)}
    names |= {n[:-len(LOW_RANK_V)] for n in tensors if n.endswith(LOW_RANK_V)}
    changes = {}
    for name in sorted(names):
        u, v = tensors.pop(name + LOW_RANK_U, None), tensors.pop(name + LOW_RANK_V, None)
        if u is None or v is None:
            raise DeltaMismatchError(f"{where}: refused, the low-rank change of {name!r} lacks one of its two factors")
        if name not in params or name not in base_stats:
            raise DeltaMismatchError(f"{where}: refused, the low-rank change of {name!r} has no matching "
                                     + ("parameter in this encoder" if name not in params else "base statistics on the card"))
        target = params[name]
        if u.dim() != 2 or v.dim() != 2 or (u.shape[0], v.shape[1]) != tuple(target.shape) or u.shape[1] != v.shape[0]:
            raise DeltaMismatchError(f"{where}: refused, the factors of {name!r} ({tuple(u.shape)} x {tuple(v.shape)}) "
                                     f"do not make its shape {tuple(target.shape)}")
        if not (bool(torch.isfinite(u).all()) and bool(torch.isfinite(v).all())):
            raise DeltaMismatchError(f"{where}: refused, the factors of {name!r} hold NaN or infinite values")
        want, got = base_stats[name], _stats(target)
        if not _same_stats(got, want):
            raise DeltaMismatchError(
                f"{where}: refused, {name!r} is not the delta's base matrix (mean |w| {got['mean_abs']:.6g}, the "
                f"base's {want['mean_abs']:.6g}): another model, or a delta already applied")
        changes[name] = u.float() @ v.float()
    return changes


def materialize_reranker(bi_encoder: Union[str, Path], part_dir: Union[str, Path],
                         out_dir: Union[str, Path]) -> Path:
    """The bi-encoder folder as a sequence classifier + a reranker delta, saved at `out_dir`. The delta must
    carry the whole classification head (a new head is random)."""
    card, tensors = read_delta(part_dir)
    if card.get("kind") != "reranker":
        raise ValueError(f"{part_dir} is not a reranker part (its card's kind is {card.get('kind')!r})")
    model, tokenizer = load_sequence_classifier(bi_encoder)
    prefix = model.base_model_prefix + "."
    head = [n for n in model.state_dict() if not n.startswith(prefix)]
    missing = [n for n in head if n not in tensors]
    if missing:
        raise DeltaMismatchError(f"delta {part_dir}: refused, it lacks the classification head's {missing} "
                                 "(a head it does not carry would stay random)")
    _apply_tensors(model, card, tensors, f"delta {part_dir}")
    out_dir = Path(out_dir)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def materialize_encoder(base_encoder: Union[str, Path], part_dir: Union[str, Path],
                        out_dir: Union[str, Path]) -> Path:
    """Base encoder + delta saved as a Hugging Face folder (safetensors + tokenizer) at `out_dir`."""
    hf = load_base_encoder(base_encoder)
    apply_delta(hf.transformer, part_dir)
    out_dir = Path(out_dir)
    hf.transformer.save_pretrained(str(out_dir), safe_serialization=True)
    hf.tokenizer.save_pretrained(str(out_dir))
    return out_dir


def read_heads(part_dir: Union[str, Path]) -> Dict[str, bytes]:
    path = Path(part_dir) / HEADS_NAME
    if not path.is_file():
        return {}
    heads = srsly.read_msgpack(path)
    if not isinstance(heads, dict) or not all(isinstance(v, bytes) for v in heads.values()):
        raise ValueError(f"{path} is not a dict of component bytes")
    return heads


@contextmanager
def with_temporary_encoder(base_encoder: Union[str, Path], part_dir: Union[str, Path]) -> Iterator[Path]:
    """A temporary Hugging Face folder holding base + delta, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="clinalign-encoder-") as tmp:
        yield materialize_encoder(base_encoder, part_dir, Path(tmp) / "encoder")
