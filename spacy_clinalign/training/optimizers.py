"""Adam with a smaller learning rate for the encoder than for the heads.

A head trained from scratch (bio_ner_cnn's CNN) wants a learning rate of about 1e-3; a pretrained
transformer layer is damaged by one that high and wants about 1e-4. spaCy's training loop has one optimizer
for every component, so this one scales the rate by `encoder_lr_scale` for the parameters of PyTorch models
(spacy-transformers' shims update them under their dotted state_dict names, e.g.
`encoder.layer.7.output.dense.weight`) and leaves thinc's own layers (names without a dot: W, b, G...) at
`learn_rate`."""
from typing import Tuple

from spacy.util import registry
from thinc.api import Optimizer
from thinc.types import FloatsXd


def is_encoder_key(key: Tuple[int, str]) -> bool:
    """Whether an optimizer key names a PyTorch (encoder) parameter: (shim id, dotted parameter name)."""
    return isinstance(key[1], str) and "." in key[1]


class EncoderScaledAdam(Optimizer):
    """thinc's Adam; `encoder_lr_scale` multiplies the learning rate of encoder parameters."""

    def __init__(self, *args, encoder_lr_scale: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not encoder_lr_scale >= 0:
            raise ValueError(f"encoder_lr_scale must be >= 0, got {encoder_lr_scale}")
        self.encoder_lr_scale = encoder_lr_scale

    def __call__(self, key: Tuple[int, str], weights: FloatsXd, gradient: FloatsXd, *,
                 lr_scale: float = 1.0) -> Tuple[FloatsXd, FloatsXd]:
        if is_encoder_key(key):
            lr_scale *= self.encoder_lr_scale
        return super().__call__(key, weights, gradient, lr_scale=lr_scale)


@registry.optimizers("spacy-clinalign.EncoderScaledAdam.v1")
def make_encoder_scaled_adam(learn_rate=0.001, *, encoder_lr_scale: float = 0.1, L2=1e-6, beta1=0.9, beta2=0.999,
                             eps=1e-8, grad_clip=1.0, L2_is_weight_decay: bool = True,
                             use_averages: bool = False) -> EncoderScaledAdam:
    """`Adam.v1`'s settings plus encoder_lr_scale (e.g. 0.1: heads at learn_rate, encoder at a tenth of it)."""
    return EncoderScaledAdam(learn_rate, encoder_lr_scale=encoder_lr_scale, L2=L2, beta1=beta1, beta2=beta2,
                             eps=eps, grad_clip=grad_clip, L2_is_weight_decay=L2_is_weight_decay,
                             use_averages=use_averages, use_radam=False)
