"""The aligner's encoder: an inline spacy-transformers TransformerModel whose subword vectors are
mean-pooled onto spaCy tokens, one (n_tokens, width) array per Doc."""
from typing import Callable, List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.architectures import create_TransformerModel_v3
from spacy_transformers.layers import split_trf_batch, trfs2arrays
from thinc.api import Model, chain, reduce_mean
from thinc.types import Floats2d

from ..encoders import resolve_encoder
from .safe_shim import make_safe, set_frozen_layers
from .span_getters import bind_span_getter


@registry.architectures("spacy-clinalign.AlignerModel.v1")
def build_aligner_model(
    name: str,
    get_spans: Callable,
    layer: Optional[int] = None,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    frozen_layers: int = 0,
    frozen_cache_size: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    """name: local Hugging Face folder (or the alias `clinalign-e5-small`).
    get_spans: window getter, e.g. `spacy-clinalign.wordpiece_strided_spans.v1` (the default: windows cut by
        wordpiece count, bound here to this model's tokenizer), so documents of any length work.
    layer: hidden layer to read (aligners read a middle one, e.g. 8 of 12). The transformer is cut after
        that layer (`num_hidden_layers`), so its last state is the layer wanted, gradients reach it
        through spacy-transformers' normal backprop, and the upper layers cost nothing.
    frozen_layers: train only the layers above this many (embeddings and the first `frozen_layers` layers
        frozen); frozen_cache_size: how many windows' frozen output training keeps, so later epochs skip the
        frozen layers (models/frozen_layers.py). 0 and 0: train the whole encoder, as before.
    """
    if layer is not None and frozen_layers >= layer:
        raise ValueError(f"AlignerModel: frozen_layers ({frozen_layers}) must be below layer ({layer}), "
                         "or nothing is left to train")
    trf_config = dict(transformer_config)
    if layer is not None:
        if layer < 1:
            raise ValueError(f"AlignerModel: layer must be >= 1 (1 = first transformer layer), got {layer}")
        trf_config["num_hidden_layers"] = layer
    transformer = create_TransformerModel_v3(
        name=resolve_encoder(name),
        get_spans=get_spans,
        tokenizer_config=tokenizer_config,
        transformer_config=trf_config,
        mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
    )
    make_safe(transformer)  # saved pipelines load without running code; threads may share the model
    set_frozen_layers(transformer, frozen_layers, frozen_cache_size)
    bind_span_getter(transformer)
    model = chain(transformer, split_trf_batch(), trfs2arrays(reduce_mean(), 1.0))
    model.name = "clinalign_aligner_encoder"
    model.attrs["encoder_name"] = name
    model.attrs["layer"] = layer
    return model
