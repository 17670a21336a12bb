"""Train only the upper layers of an encoder, and compute the frozen lower ones once per input window.

On a 2-core CPU a training step of the 8-layer aligner costs one forward and one backward pass through every
layer. Freezing the embeddings and the first `frozen_layers` transformer layers removes their backward pass;
caching their output by window (the wordpiece ids of one row) removes their forward pass too after the first
epoch, so later epochs pay only for the trained upper layers. The frozen layers always run in eval mode
(no dropout), so a cached output is exactly what the uncached path would compute.

The cache is used during training only (`begin_update`); inference runs the whole encoder as before, and
nothing here changes the module's parameters or state dict, so saved pipelines are unchanged.
"""
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List

import torch


def transformer_layers(hf_model: torch.nn.Module) -> torch.nn.ModuleList:
    """The encoder's layer list (BERT, XLM-R, RoBERTa, ELECTRA... keep it at `encoder.layer`)."""
    layers = getattr(getattr(hf_model, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or getattr(hf_model, "embeddings", None) is None:
        raise ValueError(f"spacy-clinalign: frozen_layers needs a BERT-like encoder with `embeddings` and "
                         f"`encoder.layer`; {type(hf_model).__name__} has not")
    return layers


class FrozenLowerLayers:
    """Freezes embeddings + the first `n_layers` transformer layers; keeps up to `cache_size` windows'
    frozen output (least recently used dropped first). `cache_size=0` freezes without caching."""

    def __init__(self, n_layers: int, cache_size: int = 0) -> None:
        if n_layers < 0 or cache_size < 0:
            raise ValueError(f"spacy-clinalign: frozen_layers and frozen_cache_size must be >= 0, "
                             f"got {n_layers} and {cache_size}")
        self.n_layers = n_layers
        self.cache_size = cache_size
        self._store: "OrderedDict[bytes, torch.Tensor]" = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = OrderedDict()  # cached activations are a speed-up, never part of a model
        return state

    def clear(self) -> None:
        self._store.clear()

    def __len__(self) -> int:
        return len(self._store)

    def check(self, hf_model: torch.nn.Module) -> None:
        n_total = len(transformer_layers(hf_model))
        if self.n_layers >= n_total:
            raise ValueError(f"spacy-clinalign: frozen_layers={self.n_layers} leaves nothing to train: the encoder "
                             f"has {n_total} layer(s); freeze at most {n_total - 1}")

    def freeze_parameters(self, hf_model: torch.nn.Module) -> None:
        """No gradient for the frozen part: the optimizer, weight decay included, never touches it."""
        if not self.n_layers:
            return
        self.check(hf_model)
        for module in [hf_model.embeddings, *transformer_layers(hf_model)[: self.n_layers]]:
            for param in module.parameters():
                param.requires_grad_(False)

    @contextmanager
    def installed(self, hf_model: torch.nn.Module, kwargs: Dict[str, Any]) -> Iterator[None]:
        """While the block runs, `hf_model`'s frozen part runs without gradients in eval mode, or is skipped
        when every row of this batch is cached."""
        if not self.n_layers:
            yield
            return
        self.freeze_parameters(hf_model)
        input_ids = kwargs.get("input_ids")
        mask = kwargs.get("attention_mask")
        if input_ids is None:
            raise ValueError("spacy-clinalign: frozen_layers needs the encoder to be called with input_ids")
        if mask is None:
            mask = torch.ones_like(input_ids)
        mask = mask.bool()
        keys = [self._key(ids, row_mask) for ids, row_mask in zip(input_ids, mask)] if self.cache_size else []
        cached = bool(keys) and all(key in self._store for key in keys)
        layers = transformer_layers(hf_model)
        frozen = [hf_model.embeddings, *layers[: self.n_layers]]
        last = frozen[-1]

        def run_frozen(module: torch.nn.Module) -> Callable:
            forward = module.forward

            def call(*args, **kw):
                if cached:  # skipped: only the last frozen layer's (cached) output is read
                    return (self._lookup(keys, mask, args[0]) if module is last else args[0],)
                was_training = module.training
                module.eval()
                try:
                    with torch.no_grad():
                        out = forward(*args, **kw)
                finally:
                    module.train(was_training)
                if module is last and keys:
                    self._remember(keys, mask, out[0])
                return out
            return call

        if cached:
            # The embeddings are skipped: hand the layers a placeholder of the right shape.
            width = hf_model.config.hidden_size
            placeholder = torch.zeros(*input_ids.shape, width, device=input_ids.device)
            hf_model.embeddings.forward = lambda *a, **kw: placeholder
            for module in frozen[1:]:
                module.forward = run_frozen(module)
            self.hits += len(keys)
        else:
            for module in frozen:
                module.forward = run_frozen(module)
            self.misses += len(keys)
        try:
            yield
        finally:
            for module in frozen:
                module.__dict__.pop("forward", None)

    @staticmethod
    def _key(ids: torch.Tensor, mask: torch.Tensor) -> bytes:
        """A row's wordpieces and their positions: the same window gets the same key in any batch, however
        long the batch's padding (absolute positions, so a left-padded row is a different key)."""
        positions = mask.nonzero().flatten()
        return ids[mask].cpu().numpy().tobytes() + b"@" + positions.cpu().numpy().tobytes()

    def _remember(self, keys: List[bytes], mask: torch.Tensor, hidden: torch.Tensor) -> None:
        for key, row_mask, row in zip(keys, mask, hidden):
            self._store[key] = row[row_mask].detach().clone()
            self._store.move_to_end(key)
        while len(self._store) > self.cache_size:
            self._store.popitem(last=False)

    def _lookup(self, keys: List[bytes], mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(like)
        for b, (key, row_mask) in enumerate(zip(keys, mask)):
            self._store.move_to_end(key)
            out[b, row_mask] = self._store[key].to(out.dtype)
        return out

