"""The paired MultiClinAI jsonl (../shared/data/multiclinai): one Spanish paragraph and its English
translation per line, whitespace tokens with BIO tags for one entity type on each side."""
from pathlib import Path
from typing import Callable, Iterable, Iterator, List

import srsly
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from ..pairs import register_extensions
from .bio import bio_to_spans

REQUIRED = ("es_tokens", "es_tags", "en_tokens", "en_tags")


def _doc_with_spans(vocab, tokens: List[str], tags: List[str], key: str, where: str) -> Doc:
    if len(tokens) != len(tags):
        raise ValueError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
    doc = Doc(vocab, words=tokens)
    try:
        spans = [Span(doc, s, e, label=label) for s, e, label in bio_to_spans(tags)]
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    doc.spans[key] = spans
    doc.ents = [s for s in spans]  # BIO spans never overlap
    return doc


def pair_name(path: Path, line: int, row: dict) -> str:
    """A pair's document name: its `id` field, else `<file stem>-<line number>` (the dev file has no ids).
    The target text is the tokens joined by single spaces (`Doc(vocab, words=...)`), which TSV offsets index."""
    return str(row["id"]) if row.get("id") is not None else f"{Path(path).stem}-{line}"


def read_multiclinai_examples(vocab, path: Path, spans_key: str = "projected", limit: int = 0) -> Iterator[Example]:
    """Examples whose predicted target Doc carries the annotated source (`_.source.ents`) and whose
    reference holds the gold target spans in `spans[spans_key]` and `ents`. Both Docs get
    `user_data["filename"]` (`pair_name`), the document name the shared-task TSV uses."""
    register_extensions()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MultiClinAI pairs not found: {path}")
    for n, row in enumerate(srsly.read_jsonl(path), start=1):
        if limit and n > limit:
            break
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: missing fields {missing}")
        source = _doc_with_spans(vocab, row["es_tokens"], row["es_tags"], "gold", f"{path}:{n} (es)")
        reference = _doc_with_spans(vocab, row["en_tokens"], row["en_tags"], spans_key, f"{path}:{n} (en)")
        predicted = Doc(vocab, words=row["en_tokens"])
        predicted.user_data["filename"] = reference.user_data["filename"] = pair_name(path, n, row)
        predicted._.source = source
        reference._.source = source
        yield Example(predicted, reference)


@registry.readers("spacy-clinalign.MultiClinAIPairs.v1")
def create_multiclinai_reader(path: Path, spans_key: str = "projected", limit: int = 0) -> Callable[[Language], Iterable[Example]]:
    def read(nlp: Language) -> Iterator[Example]:
        yield from read_multiclinai_examples(nlp.vocab, path, spans_key, limit)

    return read
