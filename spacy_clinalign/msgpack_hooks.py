"""msgpack hooks so a target Doc's `_.source` Doc and `_.alignment` survive DocBin.

spaCy stores extension values in `doc.user_data` and DocBin packs that with srsly's msgpack, which knows
numpy arrays but not Docs or our objects. The hooks are registered when the package is imported, which
spaCy does itself whenever it loads one of our components. (Not through srsly's entry points: those are
re-scanned on every msgpack call and would be imported while spaCy itself is still importing.)
"""
from typing import Any, Callable, Optional

import srsly

from spacy.language import BaseDefaults
from spacy.tokens import Doc
from spacy.util import get_lang_class
from spacy.vocab import Vocab, create_vocab

from .alignment.alignment import Alignment
from .span_refs import SourceSlot

DOC_KEY = "__clinalign_doc__"
ALIGNMENT_KEY = "__clinalign_alignment__"
LANG_KEY = "lang"


def vocab_for(lang: Optional[str]) -> Vocab:
    """A fresh Vocab for a decoded source Doc that keeps its language (`doc._.source.lang_`); fresh, so
    decoding never grows a shared StringStore in a long-running service (about 0.05 ms)."""
    if not lang:
        return Vocab()
    try:
        defaults = get_lang_class(lang).Defaults
    except (ImportError, KeyError, ValueError):  # a language spaCy does not know: keep its code anyway
        defaults = BaseDefaults
    return create_vocab(lang, defaults)


def encode_pair_objects(obj: Any, chain: Optional[Callable] = None) -> Any:
    if isinstance(obj, SourceSlot):
        obj = obj.doc
    if isinstance(obj, Doc):
        return {DOC_KEY: obj.to_bytes(), LANG_KEY: obj.lang_}
    if isinstance(obj, Alignment):
        return {ALIGNMENT_KEY: obj.to_dict()}
    return obj if chain is None else chain(obj)


def decode_pair_objects(obj: Any, chain: Optional[Callable] = None) -> Any:
    if isinstance(obj, dict):
        if DOC_KEY in obj:
            return Doc(vocab_for(obj.get(LANG_KEY))).from_bytes(obj[DOC_KEY])
        if ALIGNMENT_KEY in obj:
            return Alignment.from_dict(obj[ALIGNMENT_KEY])
    return obj if chain is None else chain(obj)


def register_msgpack_hooks() -> None:
    srsly.msgpack_encoders.register("spacy_clinalign", func=encode_pair_objects)
    srsly.msgpack_decoders.register("spacy_clinalign", func=decode_pair_objects)
