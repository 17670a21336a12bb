"""spacy-clinalign: spaCy components for multilingual clinical text (word alignment, span projection,
BIO NER, ICD-10 linking). Importing the package registers its factories, architectures, readers,
scorers and Doc extensions; spaCy's entry points do the same without an import."""
from .alignment import Alignment
from .pairs import make_pair, register_extensions, spans_of
from .msgpack_hooks import register_msgpack_hooks
from .torch_runtime import install_fork_guard
from .models import aligner_model, cnn_tagger, span_getters  # noqa: F401  (register architectures, span getters)
from .pipeline import BioNerCnn, ClinicalAligner, IcdLinker, SpanProjector
from .scoring import alignment as _alignment_scoring  # noqa: F401  (register scorers)
from .scoring import linking as _linking_scoring  # noqa: F401
from .scoring import spans as _span_scoring  # noqa: F401
from .render import render
from .io import readers as _readers  # noqa: F401  (register readers)
from .io import multiclinai as _multiclinai  # noqa: F401
from .io import ner_corpora as _ner_corpora  # noqa: F401
from .training import optimizers as _optimizers  # noqa: F401  (register optimizers)

register_extensions()
register_msgpack_hooks()
install_fork_guard()

__version__ = "0.1.0"
__all__ = ["Alignment", "BioNerCnn", "ClinicalAligner", "IcdLinker", "SpanProjector", "make_pair", "render",
           "register_extensions", "spans_of", "__version__"]
