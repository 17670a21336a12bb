"""CNN BIO tagger head (MultiClinNER, Appendix B): token vectors -> 2 convolution layers (window 5,
width 1024) -> one O/B/I score triple per label."""
from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, LayerNorm, Linear, Maxout, Model, chain, expand_window, residual, with_array
from thinc.types import Floats2d

from .safe_shim import make_safe


@registry.architectures("spacy-clinalign.CNNTagger.v1")
def build_cnn_tagger(
    tok2vec: Model[List[Doc], List[Floats2d]],
    width: int = 1024,
    window_size: int = 2,
    depth: int = 2,
    maxout_pieces: int = 2,
    dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """tok2vec: a TransformerListener or an inline Tok2VecTransformer (any List[Doc] -> List[Floats2d]).
    width: channels of the convolution layers. window_size: tokens on each side (2 = a window of 5).
    depth: convolution layers, each residual: window -> Maxout -> LayerNorm -> Dropout.
    nO: outputs, 3 per label (O, B, I); set by the component from its labels.
    Output: one (n_tokens, nO) array of scores per Doc; the component applies a softmax per label.
    """
    if window_size < 0 or depth < 0 or width < 1:
        raise ValueError(f"CNNTagger: bad sizes width={width} window_size={window_size} depth={depth}")
    conv = [
        residual(chain(expand_window(window_size=window_size), Maxout(nO=width, nP=maxout_pieces),
                       LayerNorm(nI=width), Dropout(dropout)))
        for _ in range(depth)
    ]
    make_safe(tok2vec)  # an inline transformer loads and runs like the aligner's (a listener has none)
    head = chain(Linear(nO=width), *conv, Linear(nO=nO))
    # Padding between Docs as wide as the receptive field: a token's window never reaches into the next
    # Doc of the batch, so a Doc gets the same scores alone or batched.
    model = chain(tok2vec, with_array(head, pad=window_size * depth))
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("output_layer", head.layers[-1])
    model.name = "clinalign_cnn_tagger"
    return model
