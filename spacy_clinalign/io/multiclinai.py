"""The paired MultiClinAI jsonl (../shared/data/multiclinai): one Spanish paragraph and its English
translation per line, whitespace tokens with BIO tags for one entity type on each side."""
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from ..pairs import register_extensions
from .bio import bio_to_spans
from .text_lines import check_limit, iter_jsonl

REQUIRED = ("es_tokens", "es_tags", "en_tokens", "en_tags")
SPLITS = ("tune", "report")


def multiclinai_split(pair_id: int) -> str:
    """The fixed tuning discipline for the dev pairs: pair id = 0-based line number in the jsonl; even ids
    are the `tune` half (choose settings there), odd ids the `report` half (publish figures only from it).
    Alternating keeps both halves' label mix equal, since the file groups pairs by entity type."""
    return "tune" if pair_id % 2 == 0 else "report"


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


def retokenize(doc: Doc, tokenizer: Callable[[str], Doc], where: str) -> Doc:
    """The same text cut by another tokenizer (e.g. spaCy's, which splits attached punctuation), with the
    span groups and ents carried over by characters. A span edge inside a new token widens to that token's
    edge, so nothing is lost; an edge that would have to move raises, naming the span."""
    new = tokenizer(doc.text)
    if new.text != doc.text:
        raise ValueError(f"{where}: the tokenizer changed the text")
    for key, group in doc.spans.items():
        moved = []
        for span in group:
            copy = new.char_span(span.start_char, span.end_char, label=span.label_, alignment_mode="expand")
            if copy is None:
                raise ValueError(f"{where}: span {span.text!r} ({span.start_char}-{span.end_char}) has no tokens after retokenizing")
            moved.append(copy)
        new.spans[key] = moved
    new.ents = [new.char_span(e.start_char, e.end_char, label=e.label_, alignment_mode="expand") for e in doc.ents]
    return new


def read_multiclinai_examples(vocab, path: Path, spans_key: str = "projected", limit: int = 0,
                              split: Optional[str] = None,
                              tokenizer_langs: Optional[Sequence[str]] = None) -> Iterator[Example]:
    """Examples whose predicted target Doc carries the annotated source (`_.source.ents`) and whose
    reference holds the gold target spans in `spans[spans_key]` and `ents`. `split` ("tune" or "report",
    see `multiclinai_split`) keeps one half; `limit` counts the pairs kept. `tokenizer_langs` (source, target),
    e.g. ("es", "en"), re-tokenizes the source and the predicted target with those languages' spaCy
    tokenizers: the text and the gold stay the same, the projection then works on other tokens. Both Docs get
    `user_data["filename"]` (`pair_name`), the document name the shared-task TSV uses."""
    register_extensions()
    check_limit(limit, "MultiClinAI reader")
    tokenizers = None
    if tokenizer_langs is not None:
        import spacy

        src_lang, tgt_lang = tokenizer_langs
        tokenizers = (spacy.blank(src_lang).tokenizer, spacy.blank(tgt_lang).tokenizer)
    if split is not None and split not in SPLITS:
        raise ValueError(f"MultiClinAI split must be one of {SPLITS} or None, got {split!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MultiClinAI pairs not found: {path}")
    kept = 0
    for n, row in iter_jsonl(path, "MultiClinAI pairs"):
        if split is not None and multiclinai_split(n - 1) != split:
            continue
        if limit and kept >= limit:
            break
        kept += 1
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: missing fields {missing}")
        source = _doc_with_spans(vocab, row["es_tokens"], row["es_tags"], "gold", f"{path}:{n} (es)")
        reference = _doc_with_spans(vocab, row["en_tokens"], row["en_tags"], spans_key, f"{path}:{n} (en)")
        predicted = Doc(vocab, words=row["en_tokens"])
        if tokenizers is not None:
            source = retokenize(source, _in_vocab(tokenizers[0], vocab), f"{path}:{n} (es)")
            predicted = retokenize(predicted, _in_vocab(tokenizers[1], vocab), f"{path}:{n} (en)")
        predicted.user_data["filename"] = reference.user_data["filename"] = pair_name(path, n, row)
        predicted._.source = source
        reference._.source = source
        yield Example(predicted, reference)


def _in_vocab(tokenizer, vocab) -> Callable[[str], Doc]:
    """Cut with `tokenizer`, but build the Doc in `vocab` (the pipeline's), so the aligner can read it."""
    def cut(text: str) -> Doc:
        tokens = tokenizer(text)
        return Doc(vocab, words=[t.text for t in tokens], spaces=[bool(t.whitespace_) for t in tokens])

    return cut


@registry.readers("spacy-clinalign.MultiClinAIPairs.v1")
def create_multiclinai_reader(path: Path, spans_key: str = "projected", limit: int = 0,
                              split: Optional[str] = None) -> Callable[[Language], Iterable[Example]]:
    check_limit(limit, "spacy-clinalign.MultiClinAIPairs.v1")
    def read(nlp: Language) -> Iterator[Example]:
        yield from read_multiclinai_examples(nlp.vocab, path, spans_key, limit, split)

    return read
