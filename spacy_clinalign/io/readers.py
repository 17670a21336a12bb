"""spaCy corpus readers (`@registry.readers`) that yield paired Examples for training and evaluation."""
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import registry
from spacy.vocab import Vocab

from ..alignment.alignment import Alignment
from ..pairs import pair_from_words
from .alignment_files import Link, read_gold_set
from .text_lines import check_limit


def gold_alignment(n_target: int, n_source: int, links: List[Link]) -> Alignment:
    """Gold links (source_j, target_i, sure) as an Alignment (rows = target)."""
    return Alignment(n_target, n_source, [(i, j) for j, i, _ in links], sure=[s for _, _, s in links], method="gold")


def make_pair_example(vocab: Vocab, source_words: List[str], target_words: List[str], links: Optional[List[Link]]) -> Example:
    """An Example whose predicted and reference target Docs share one source Doc; the reference holds the gold."""
    predicted = pair_from_words(vocab, source_words, target_words)
    reference = pair_from_words(vocab, source_words, target_words)
    reference._.source = predicted._.source
    if links is not None:
        reference._.alignment = gold_alignment(len(target_words), len(source_words), links)
    return Example(predicted, reference)


@registry.readers("spacy-clinalign.ParallelCorpus.v1")
def create_parallel_corpus_reader(
    path: Path, gold_path: Optional[Path] = None, one_based: bool = True, limit: int = 0
) -> Callable[[Language], Iterable[Example]]:
    """Read `source ||| target` pairs (with an optional Pharaoh/talp gold file), binaryalign `.jsonl`, or
    a `.spacy` DocBin of pairs (target Docs with `_.source`, and `_.teacher` for training, from build-teacher).

    one_based: whether the gold file counts from 1 (awesome-align's `.gold` files do).
    limit: read at most this many pairs (0 = all).
    """
    check_limit(limit, "spacy-clinalign.ParallelCorpus.v1")

    def read(nlp: Language) -> Iterator[Example]:
        if str(path).endswith(".spacy"):
            yield from read_pair_docbin(nlp, path, limit)
            return
        rows: List[Tuple[List[str], List[str], Optional[List[Link]]]] = read_gold_set(path, gold_path, one_based)
        if limit:
            rows = rows[:limit]
        for src, tgt, links in rows:
            yield make_pair_example(nlp.vocab, src, tgt, links)

    return read


@registry.readers("spacy-clinalign.PairCorpora.v1")
def create_pair_corpora_reader(
    paths: List[str], one_based: bool = True, limit: int = 0, exclude_sentences_of: List[str] = [],
) -> Callable[[Language], Iterable[Example]]:
    """Several pair corpora as one training stream, for mixing distillation and supervision: each entry is
    a teacher DocBin (`.spacy`, from build-teacher), a binaryalign `.jsonl` gold file, or a talp pair
    `PARALLEL_FILE|GOLD_FILE`. `exclude_sentences_of` lists evaluation files (same forms) whose
    sentences must not be trained on: a training pair sharing a source or target sentence with them is
    dropped (binaryalign's en-fr hansards and en-ro train files hold the awesome-align gold sentences).
    `limit` applies to each corpus."""
    from ..training.contamination import sentence_key, sentence_keys

    if not paths:
        raise ValueError("PairCorpora.v1: `paths` is empty; give at least one corpus")

    def split(entry: str) -> Tuple[str, Optional[str]]:
        path, _, gold = str(entry).partition("|")
        return path, gold or None

    def read(nlp: Language) -> Iterator[Example]:
        banned = set()
        for entry in exclude_sentences_of:
            path, gold = split(entry)
            banned |= sentence_keys(read_gold_set(path, gold, one_based))
        for entry in paths:
            path, gold = split(entry)
            corpus = create_parallel_corpus_reader(Path(path), Path(gold) if gold else None, one_based, limit)
            for eg in corpus(nlp):
                source = eg.reference._.source
                if banned and (sentence_key([t.text for t in eg.reference]) in banned
                               or sentence_key([t.text for t in source]) in banned):
                    continue
                yield eg

    return read


def read_pair_docbin(nlp: Language, path: Path, limit: int = 0) -> Iterator[Example]:
    """Examples from a DocBin of target Docs carrying `_.source` (and `_.teacher` / `_.alignment` gold)."""
    check_limit(limit, "read_pair_docbin")
    if not Path(path).exists():
        raise FileNotFoundError(f"Pair corpus not found: {path}")
    for n, reference in enumerate(DocBin().from_disk(path).get_docs(nlp.vocab)):
        if limit and n >= limit:
            break
        if reference._.source is None:
            raise ValueError(f"{path}: document {n} has no `_.source`; was it written with store_user_data=True?")
        predicted = Doc(nlp.vocab, words=[t.text for t in reference], spaces=[bool(t.whitespace_) for t in reference])
        predicted._.source = reference._.source
        yield Example(predicted, reference)
