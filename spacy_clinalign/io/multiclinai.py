"""The paired MultiClinAI jsonl (../shared/data/multiclinai): one Spanish paragraph and its English
translation per line, whitespace tokens with BIO tags for one entity type on each side."""
from pathlib import Path
from typing import Callable, Iterable, Iterator, List

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from ..pairs import register_extensions
from .bio import bio_to_spans
from .text_lines import check_limit, iter_jsonl

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


def read_multiclinai_examples(vocab, path: Path, spans_key: str = "projected", limit: int = 0) -> Iterator[Example]:
    """Examples whose predicted target Doc carries the annotated source (`_.source.ents`) and whose
    reference holds the gold target spans in `spans[spans_key]` and `ents`."""
    register_extensions()
    check_limit(limit, "MultiClinAI reader")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MultiClinAI pairs not found: {path}")
    for count, (n, row) in enumerate(iter_jsonl(path, "MultiClinAI pairs"), start=1):
        if limit and count > limit:
            break
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: missing fields {missing}")
        source = _doc_with_spans(vocab, row["es_tokens"], row["es_tags"], "gold", f"{path}:{n} (es)")
        reference = _doc_with_spans(vocab, row["en_tokens"], row["en_tags"], spans_key, f"{path}:{n} (en)")
        predicted = Doc(vocab, words=row["en_tokens"])
        predicted._.source = source
        reference._.source = source
        yield Example(predicted, reference)


@registry.readers("spacy-clinalign.MultiClinAIPairs.v1")
def create_multiclinai_reader(path: Path, spans_key: str = "projected", limit: int = 0) -> Callable[[Language], Iterable[Example]]:
    check_limit(limit, "spacy-clinalign.MultiClinAIPairs.v1")
    def read(nlp: Language) -> Iterator[Example]:
        yield from read_multiclinai_examples(nlp.vocab, path, spans_key, limit)

    return read
