"""NER corpora as spaCy readers: SPACCC (clinical case reports with DisTEMIST / MedProcNER / SympTEMIST
TSV mentions over `text_files/`) and BIO CoNLL files."""
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import filter_spans, registry

from .bio import bio_to_spans
from .standoff import entities_to_spans, read_spaccc_tsv
from .text_lines import check_limit, read_lines, read_text

SPACCC_FILES = ("distemist.tsv", "medprocner.tsv", "symptemist.tsv")
SPLIT_PARTS = ("all", "train", "heldout")


def in_part(n: int, part: str, heldout_every: int) -> bool:
    """Whether document `n` (0-based, in file-name order) belongs to `part` of a split cut by `heldout_every`:
    every `heldout_every`-th document (n = 0, k, 2k...) is held out, so model selection can use part of the
    training split and the official dev split is read only once, for the final figures."""
    if part not in SPLIT_PARTS:
        raise ValueError(f"SPACCC reader: part must be one of {SPLIT_PARTS}, got {part!r}")
    if heldout_every < 0 or heldout_every == 1:
        raise ValueError(f"SPACCC reader: heldout_every must be 0 (no held-out slice) or >= 2, got {heldout_every}")
    if part == "all":
        return True
    if not heldout_every:
        raise ValueError(f"SPACCC reader: part={part!r} needs heldout_every >= 2 (which documents to hold out)")
    held = n % heldout_every == 0
    return held if part == "heldout" else not held


def read_spaccc_docs(nlp: Language, path: Path, spans_key: str = "entities", files: Sequence[str] = SPACCC_FILES,
                     limit: int = 0, part: str = "all", heldout_every: int = 0) -> Iterator[Doc]:
    """Gold Docs: every mention in `doc.spans[spans_key]` (overlaps across labels kept), the longest
    non-overlapping ones also in `doc.ents`. Labels are mapped to DISEASE / PROCEDURE / SYMPTOM.
    part / heldout_every: read only the "train" or "heldout" documents of the split (see `in_part`);
    `limit` counts the documents read."""
    check_limit(limit, "SPACCC reader")
    in_part(0, part, heldout_every)  # bad settings fail before any file is read
    path = Path(path)
    text_dir = path / "text_files"
    if not text_dir.is_dir():
        raise FileNotFoundError(f"SPACCC: {text_dir} not found (expected a split folder with text_files/ and TSVs)")
    tsvs = [path / f for f in files]
    missing = [str(t) for t in tsvs if not t.exists()]
    if missing:
        raise FileNotFoundError(f"SPACCC: annotation files not found: {missing}")
    mentions = read_spaccc_tsv(tsvs)
    unknown = sorted(name for name in mentions if not (text_dir / f"{name}.txt").exists())
    if unknown:
        raise ValueError(f"SPACCC: {len(unknown)} annotated documents have no text in {text_dir}, e.g. {unknown[:3]}")
    texts = [txt for n, txt in enumerate(sorted(text_dir.glob("*.txt"))) if in_part(n, part, heldout_every)]
    for n, txt in enumerate(texts):
        if limit and n >= limit:
            break
        doc = nlp.make_doc(read_text(txt, "SPACCC text", translate_newlines=True))
        doc.user_data["filename"] = txt.stem  # the document name the shared-task TSV uses
        spans = entities_to_spans(doc, mentions.get(txt.stem, []), str(txt))
        doc.spans[spans_key] = spans
        doc.ents = filter_spans(spans)
        yield doc


@registry.readers("spacy-clinalign.SpacccCorpus.v1")
def create_spaccc_reader(path: Path, spans_key: str = "entities", limit: int = 0, part: str = "all",
                         heldout_every: int = 0) -> Callable[[Language], Iterable[Example]]:
    """part = "train" / "heldout" with heldout_every = 10: the 90 % / 10 % of a split's documents (every 10th
    in file-name order held out), e.g. SPACCC train's held-out slice for choosing settings and checkpoints."""
    check_limit(limit, "spacy-clinalign.SpacccCorpus.v1")
    in_part(0, part, heldout_every)

    def read(nlp: Language) -> Iterator[Example]:
        for doc in read_spaccc_docs(nlp, path, spans_key, limit=limit, part=part, heldout_every=heldout_every):
            predicted = nlp.make_doc(doc.text)
            predicted.user_data["filename"] = doc.user_data["filename"]
            yield Example(predicted, doc)

    return read


def read_conll_bio(path: Path, vocab, spans_key: Optional[str] = None) -> Iterator[Doc]:
    """Docs from a BIO CoNLL file: one `token ... tag` line per token (tag in the last column), a blank
    line between sentences, `-DOCSTART-` lines ignored."""
    path = Path(path)
    words: List[str] = []
    tags: List[str] = []
    start_line = 1

    def make() -> Doc:
        doc = Doc(vocab, words=words)
        try:
            spans = [Span(doc, s, e, label=label) for s, e, label in bio_to_spans(tags)]
        except ValueError as err:
            raise ValueError(f"{path}:{start_line}: {err}") from None
        doc.ents = spans
        if spans_key:
            doc.spans[spans_key] = spans
        return doc

    for n, line in enumerate(read_lines(path, "CoNLL file"), start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                yield make()
            words, tags, start_line = [], [], n + 1
            continue
        cols = line.split()
        if len(cols) < 2:
            raise ValueError(f"{path}:{n}: expected `token ... tag`, got {line!r}")
        words.append(cols[0])
        tags.append(cols[-1])
    if words:
        yield make()


@registry.readers("spacy-clinalign.ConllBio.v1")
def create_conll_reader(path: Path, spans_key: Optional[str] = None) -> Callable[[Language], Iterable[Example]]:
    def read(nlp: Language) -> Iterator[Example]:
        for doc in read_conll_bio(path, nlp.vocab, spans_key):
            yield Example(Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]), doc)

    return read
