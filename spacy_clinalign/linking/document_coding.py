"""Code whole documents end to end: mentions (from an NER pipeline, or the gold mentions) -> `icd_linker`
-> per-mention codes with their evidence spans, and per-document code rankings; then the CodiEsp-D and
CodiEsp-X style scores of `scoring.document_coding`. This is what a user running `bio_ner_cnn` +
`icd_linker` over clinical cases gets, measured beside the gold-mention linking figures."""
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..scoring.document_coding import CodedSpan, rank_document_codes, score_document_codes, score_mention_codes
from .codes import normalize_code
from ..io.linking_mentions import Mention, read_codiesp_x
from ..io.standoff import read_text_exact

MENTIONS_KEY = "coding_mentions"
NIL = "NIL"


@dataclass
class CodiEspSplit:
    texts: Dict[str, str]
    doc_codes: Dict[str, Set[str]]  # CodiEsp-D gold: doc -> codes
    mentions: List[Mention]  # CodiEsp-X gold mentions of the kept labels


def read_codiesp_split(split_dir: Union[str, Path], labels: Sequence[str] = ("DIAGNOSTICO",), limit: int = 0,
                       text_subdir: str = "text_files") -> CodiEspSplit:
    """A CodiEsp split folder (`*D.tsv`, `*X.tsv`, `text_files/`): the first `limit` documents of the D file
    (sorted by id; 0 = all), their texts, gold codes and gold X mentions of `labels`."""
    split_dir = Path(split_dir)
    d_files, x_files = sorted(split_dir.glob("*D.tsv")), sorted(split_dir.glob("*X.tsv"))
    if not d_files or not x_files:
        raise FileNotFoundError(f"{split_dir}: a CodiEsp split needs a *D.tsv and a *X.tsv")
    doc_codes: Dict[str, Set[str]] = {}
    with d_files[0].open(encoding="utf8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n\r").split("\t")
            if len(parts) != 2:
                raise ValueError(f"{d_files[0]}:{line_no}: expected 2 tab-separated fields (doc, code), got {len(parts)}")
            try:
                doc_codes.setdefault(parts[0], set()).add(normalize_code(parts[1]))
            except ValueError as err:
                raise ValueError(f"{d_files[0]}:{line_no}: {err}") from None
    names = sorted(doc_codes)[: limit or None]
    doc_codes = {n: doc_codes[n] for n in names}
    texts = {}
    for name in names:
        file = split_dir / text_subdir / f"{name}.txt"
        if not file.exists():
            raise FileNotFoundError(f"{d_files[0]} codes document {name!r}, but its text {file} does not exist")
        texts[name] = read_text_exact(file)  # the text the X offsets index
    mentions = [m for m in read_codiesp_x(x_files[0], labels) if m.doc_id in doc_codes]
    return CodiEspSplit(texts, doc_codes, mentions)


@dataclass
class CodingResult:
    predicted: List[CodedSpan] = field(default_factory=list)  # asserted codes (not NIL), with evidence spans
    ranked: Dict[str, List[Tuple[str, float]]] = field(default_factory=dict)  # doc -> every candidate code
    seconds: float = 0.0
    mentions: int = 0


def _mention_docs(linker_nlp: Language, texts: Dict[str, str], ner: Optional[Language],
                  gold: Optional[Sequence[Mention]], ner_labels: Sequence[str], batch_size: int) -> List[Doc]:
    """One Doc per text with the mentions to link in `doc.spans[MENTIONS_KEY]`."""
    names = list(texts)
    docs = [linker_nlp.make_doc(texts[n]) for n in names]
    if ner is not None:
        key = ner.get_pipe("bio_ner_cnn").cfg.get("spans_key") if "bio_ner_cnn" in ner.pipe_names else None
        for doc, tagged in zip(docs, ner.pipe((texts[n] for n in names), batch_size=batch_size)):
            found = tagged.spans[key] if key else tagged.ents
            doc.spans[MENTIONS_KEY] = [doc.char_span(s.start_char, s.end_char, label=s.label_, alignment_mode="expand")
                                       for s in found if not ner_labels or s.label_ in ner_labels]
    else:
        by_doc: Dict[str, List[Mention]] = {}
        for m in gold or ():
            by_doc.setdefault(m.doc_id, []).append(m)
        for name, doc in zip(names, docs):
            spans = [doc.char_span(m.start, m.end, label=m.label, alignment_mode="expand") for m in by_doc.get(name, ())]
            doc.spans[MENTIONS_KEY] = [s for s in spans if s is not None]
    return docs


def code_documents(linker_nlp: Language, texts: Dict[str, str], ner: Optional[Language] = None,
                   gold_mentions: Optional[Sequence[Mention]] = None, ner_labels: Sequence[str] = (),
                   batch_size: int = 8) -> CodingResult:
    """Find mentions (with `ner`, else `gold_mentions`), link them with `linker_nlp`'s icd_linker, and
    collect asserted codes with their evidence spans and each document's ranking of every candidate code
    by its best score. Timed from text to codes."""
    if ner is None and gold_mentions is None:
        raise ValueError("code_documents needs an NER pipeline or the gold mentions")
    component = linker_nlp.get_pipe("icd_linker")
    saved = dict(component.cfg)
    component.cfg.update(spans_key=MENTIONS_KEY, labels=[])
    start = time.perf_counter()
    try:
        docs = _mention_docs(linker_nlp, texts, ner, gold_mentions, ner_labels, batch_size)
        docs = list(component.pipe(docs, batch_size=batch_size))
    finally:
        component.cfg.clear()
        component.cfg.update(saved)
    result = CodingResult(seconds=time.perf_counter() - start)
    candidates: List[CodedSpan] = []
    for name, doc in zip(texts, docs):
        links = doc._.icd_links or {}
        for span in doc.spans[MENTIONS_KEY]:
            result.mentions += 1
            offsets = ((span.start_char, span.end_char),)
            found = links.get(f"{span.start_char}:{span.end_char}:{span.label_}") or []
            candidates.extend(CodedSpan(name, c["code"], offsets, c["score"]) for c in found)
            if span.kb_id_ and span.kb_id_ != NIL:
                result.predicted.append(CodedSpan(name, span.kb_id_, offsets, found[0]["score"] if found else 0.0))
    result.ranked = rank_document_codes(candidates)
    return result


def evaluate_document_coding(linker_nlp: Language, split: CodiEspSplit, ner: Optional[Language] = None,
                             ner_labels: Sequence[str] = (), batch_size: int = 8) -> Dict:
    """CodiEsp-D and CodiEsp-X style scores of the document pipeline over a split, with time per document."""
    result = code_documents(linker_nlp, split.texts, ner=ner, gold_mentions=None if ner else split.mentions,
                            ner_labels=ner_labels, batch_size=batch_size)
    kept: Dict[str, List[str]] = {}
    for span in result.predicted:
        kept.setdefault(span.doc_id, []).append(span.code)
    gold_spans = [CodedSpan(m.doc_id, code, m.offsets) for m in split.mentions for code in m.codes]
    return {
        "document": score_document_codes(split.doc_codes, result.ranked, kept),
        "mention": score_mention_codes(gold_spans, result.predicted, documents=split.texts),
        "documents": len(split.texts), "mentions_linked": result.mentions, "gold_mentions": len(split.mentions),
        "seconds_per_document": result.seconds / max(1, len(split.texts)),
    }
