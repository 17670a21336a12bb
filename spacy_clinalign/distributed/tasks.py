"""Corpus jobs, one document at a time: what to read, how to run the pipeline, what to write.

A task is a small picklable description (paths and settings). The driver calls `records()` (names and
where to read each document; no document is read there), workers call `load()` once and then
`process()` on chunks of records. The single-process runner and the Ray actors call the same
`process()`, so a document's output files are the same bytes whichever ran it. A document that cannot
be read or parsed becomes an error result (name + reason) and its chunk mates still complete.
"""
import csv
import io
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .outputs import DocResult

# what reading or decoding one document may raise; anything else is a bug and stops the run
DOCUMENT_ERRORS = (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError)


def _absolute(path) -> Path:
    """Workers may run in another folder (or on another node): tasks carry absolute paths."""
    return Path(path).expanduser().resolve()


def _model_ref(model) -> str:
    """A model folder as an absolute path; a name that is not a path (an alias) unchanged."""
    return str(_absolute(model)) if Path(str(model)).expanduser().exists() else str(model)


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


class CorpusTask:
    """Base class: subclasses set `kind` and implement records, marker, load, read, serialize."""

    kind = "task"

    def records(self) -> List[Dict[str, Any]]:
        """One JSON-able dict per document, sorted by `name` (unique), read on the driver."""
        raise NotImplementedError

    def marker(self, name: str) -> str:
        """The output file (relative to the output folder) whose presence means `name` is done."""
        raise NotImplementedError

    def load(self, gpu_id: int = -1) -> Any:
        """The loaded pipeline(s) a worker keeps for all its chunks."""
        raise NotImplementedError

    def read(self, state: Any, record: Dict[str, Any]):
        """The Doc to run for one record; raises one of DOCUMENT_ERRORS for a bad document."""
        raise NotImplementedError

    def serialize(self, state: Any, record: Dict[str, Any], doc) -> Dict[str, bytes]:
        """Output files of one processed document (relative path -> bytes), the marker among them."""
        raise NotImplementedError

    def pipe(self, state: Any, docs: List, batch_size: int) -> Iterable:
        return state.nlp.pipe(docs, batch_size=batch_size)

    def finalize(self, out_dir: Path, names: Sequence[str]) -> None:
        """Corpus-level files built from the per-document ones (after every run, also a resumed one)."""

    def process(self, state: Any, records: List[Dict[str, Any]]) -> List[DocResult]:
        """Read, run (one nlp.pipe batch for the chunk) and serialize each record; bad documents become
        errors. If the batch itself fails, the chunk's documents are retried one by one, so only the
        document that breaks the pipeline fails."""
        results: Dict[str, DocResult] = {}
        good: List[Tuple[Dict[str, Any], Any]] = []
        for record in records:
            if record.get("error"):
                results[record["name"]] = DocResult(record["name"], error=record["error"])
                continue
            try:
                good.append((record, self.read(state, record)))
            except DOCUMENT_ERRORS as err:
                results[record["name"]] = DocResult(record["name"], error=_reason(err))
        try:
            done = list(self.pipe(state, [doc for _, doc in good], max(len(good), 1)))
        except DOCUMENT_ERRORS:
            done = None
        for k, (record, doc) in enumerate(good):
            name = record["name"]
            try:
                if done is None:  # isolate the document that breaks the batch
                    out = list(self.pipe(state, [self.read(state, record)], 1))[0]
                else:
                    out = done[k]
                results[name] = DocResult(name, files=self.serialize(state, record, out))
            except DOCUMENT_ERRORS as err:
                results[name] = DocResult(name, error=_reason(err))
        return [results[r["name"]] for r in records]


class _State:
    """What a worker loads once: the pipeline and, for projection, the source-language tokenizer."""

    def __init__(self, nlp, nlp_src=None):
        self.nlp = nlp
        self.nlp_src = nlp_src


def _tsv_bytes(rows: Iterable[Sequence]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t", lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf8")


def _concat_parts(out_dir: Path, folder: str, names: Sequence[str], marker: Callable[[str], str], suffix: str) -> bytes:
    """The per-document part files of the documents that are done, in name order."""
    data = []
    for name in names:
        part = out_dir / folder / f"{name}{suffix}"
        if (out_dir / marker(name)).exists() and part.exists():
            data.append(part.read_bytes())
    return b"".join(data)


# ---------------------------------------------------------------------------------------------------
class ProjectTask(CorpusTask):
    """Project brat `.ann` (or SPACCC / CodiEsp-X TSV) annotations of SOURCE_DIR/NAME.txt onto TARGET_DIR/NAME.txt.

    Per document: NAME.txt (the translation), unprojected/NAME.tsv (source spans with no confident
    target) and NAME.ann (the projected spans, the marker). `finalize` joins the parts into unprojected.tsv."""

    kind = "project"
    UNPROJECTED_HEADER = ["filename", "label", "source_start", "source_end", "source_text", "best_score"]

    def __init__(self, model: str, source_dir, target_dir, *, tsv: Optional[Sequence] = None,
                 tsv_format: str = "spaccc", annotated_only: bool = False, source_lang: str = "es", layer: Optional[int] = None,
                 threshold: Optional[float] = None, temperature: Optional[float] = None,
                 target_lang: Optional[str] = None):
        self.model = _model_ref(model)
        self.source_dir, self.target_dir = _absolute(source_dir), _absolute(target_dir)
        self.tsv = [str(_absolute(p)) for p in tsv] if tsv else None
        if tsv_format not in ("spaccc", "codiesp-x"):
            raise ValueError(f"project: tsv_format must be 'spaccc' or 'codiesp-x', got {tsv_format!r}")
        self.tsv_format = tsv_format
        self.annotated_only = annotated_only
        self.source_lang, self.layer = source_lang, layer
        self.threshold, self.temperature = threshold, temperature
        self.target_lang = target_lang  # function words that never start or end a projected span

    def records(self) -> List[Dict[str, Any]]:
        from ..io.standoff import read_codiesp_x, read_spaccc_tsv

        for folder in (self.source_dir, self.target_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"project: {folder} is not a folder")
        names = sorted(p.stem for p in self.source_dir.glob("*.txt"))
        reader = read_codiesp_x if self.tsv_format == "codiesp-x" else read_spaccc_tsv
        tsv = reader([Path(p) for p in self.tsv]) if self.tsv else None
        records = []
        if tsv is not None:
            for name in sorted(set(tsv) - set(names)):
                records.append({"name": name, "error": f"annotated in the TSV but {self.source_dir / name}.txt does not exist"})
            if self.annotated_only:
                names = [n for n in names if n in tsv]
        for name in names:
            record = {"name": name, "source": str(self.source_dir / f"{name}.txt"),
                      "target": str(self.target_dir / f"{name}.txt")}
            if tsv is not None:
                record["entities"] = [[e.id, e.label, e.fragments, e.text] for e in tsv.get(name, [])]
            else:
                record["ann"] = str(self.source_dir / f"{name}.ann")
            records.append(record)
        return sorted(records, key=lambda r: r["name"])

    def marker(self, name: str) -> str:
        return f"{name}.ann"

    def load(self, gpu_id: int = -1) -> _State:
        import spacy

        from ..pipelines import load_projection_pipeline

        nlp = load_projection_pipeline(self.model, self.layer, gpu_id, threshold=self.threshold,
                                       temperature=self.temperature, source_lang=self.source_lang,
                                       target_lang=self.target_lang)
        nlp.get_pipe("span_projector").cfg["source_spans_key"] = "source"
        return _State(nlp, spacy.blank(self.source_lang))

    def read(self, state: _State, record: Dict[str, Any]):
        from ..io.standoff import Entity, entities_to_spans, read_ann, read_text_exact
        from ..pairs import make_pair

        source_text = read_text_exact(Path(record["source"]))
        target_path = Path(record["target"])
        if not target_path.exists():
            raise FileNotFoundError(f"no translation {target_path}")
        target_text = read_text_exact(target_path)
        if "entities" in record:
            entities = [Entity(i, label, [tuple(f) for f in frags], text) for i, label, frags, text in record["entities"]]
        else:
            entities = read_ann(Path(record["ann"])) if Path(record["ann"]).exists() else []
        src = state.nlp_src(source_text)
        src.spans["source"] = entities_to_spans(src, entities, record["source"])
        return make_pair(src, target_text, state.nlp)

    def serialize(self, state: Any, record: Dict[str, Any], doc) -> Dict[str, bytes]:
        from ..io.standoff import format_ann

        name = record["name"]
        rows = [[name, m["span"].label_, m["span"].start_char, m["span"].end_char, m["span"].text, f"{m['best_score']:.3f}"]
                for m in doc._.unprojected]
        return {f"{name}.txt": doc.text.encode("utf8"), f"unprojected/{name}.tsv": _tsv_bytes(rows),
                f"{name}.ann": format_ann(doc.spans["projected"]).encode("utf8")}

    def finalize(self, out_dir: Path, names: Sequence[str]) -> None:
        from ..io.atomic import atomic_write_bytes

        body = _concat_parts(out_dir, "unprojected", names, self.marker, ".tsv")
        atomic_write_bytes(out_dir / "unprojected.tsv", _tsv_bytes([self.UNPROJECTED_HEADER]) + body)


# ---------------------------------------------------------------------------------------------------
class AlignTask(CorpusTask):
    """Word-align a `source ||| target` file (tokens split by spaces) or a jsonl of pairs
    (`{"source": ..., "target": ...}`, each a token list or a space-tokenized string).

    Each input line is a document named by its 1-based line number (`000000042`); its Pharaoh line goes
    to NAME.pharaoh (the marker). `finalize` joins them, in input order, into `output` (an empty line for
    a line that failed, so line numbers still match the input)."""

    kind = "align"

    def __init__(self, model: str, input_path, output, *, layer: Optional[int] = None, method: Optional[str] = None,
                 probs: bool = False):
        self.model, self.input_path, self.output = _model_ref(model), _absolute(input_path), _absolute(output)
        self.layer, self.method, self.probs = layer, method, probs

    def records(self) -> List[Dict[str, Any]]:
        if not self.input_path.exists():
            raise FileNotFoundError(f"Alignment file not found: {self.input_path}")
        lines = self.input_path.read_text(encoding="utf8").splitlines()
        return [{"name": f"{n:09d}", "line": line, "line_no": n} for n, line in enumerate(lines, start=1)]

    def marker(self, name: str) -> str:
        return f"{name}.pharaoh"

    def load(self, gpu_id: int = -1) -> _State:
        from ..pipelines import load_aligner

        return _State(load_aligner(self.model, layer=self.layer, method=self.method, gpu_id=gpu_id))

    def read(self, state: _State, record: Dict[str, Any]):
        from ..io.alignment_files import parse_parallel_line, split_tokens
        from ..pairs import pair_from_words

        line = record["line"]
        if self.input_path.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{self.input_path}:{record['line_no']}: not JSON ({err})") from None
            if not isinstance(row, dict) or "source" not in row or "target" not in row:
                raise ValueError(f"{self.input_path}:{record['line_no']}: expected an object with source and target")
            src, tgt = (row[k] if isinstance(row[k], list) else split_tokens(str(row[k])) for k in ("source", "target"))
        else:
            src, tgt = parse_parallel_line(line, self.input_path, record["line_no"])
        if not src or not tgt:
            raise ValueError(f"{self.input_path}:{record['line_no']}: empty source or target")
        return pair_from_words(state.nlp.vocab, src, tgt)

    def serialize(self, state: Any, record: Dict[str, Any], doc) -> Dict[str, bytes]:
        return {self.marker(record["name"]): (pharaoh_line(doc, self.probs) + "\n").encode("utf8")}

    def finalize(self, out_dir: Path, names: Sequence[str]) -> None:
        from ..io.atomic import atomic_write_bytes

        lines = []
        for name in names:
            path = out_dir / self.marker(name)
            lines.append(path.read_bytes() if path.exists() else b"\n")
        atomic_write_bytes(self.output, b"".join(lines))


def pharaoh_line(doc, probs: bool = False) -> str:
    """The alignment of one pair as a Pharaoh line ("" when the pair has none); used by `align` with and
    without Ray."""
    return doc._.alignment.to_pharaoh(probs=probs) if doc._.alignment else ""


# ---------------------------------------------------------------------------------------------------
class LinkTask(CorpusTask):
    """ICD-10 codes for the mentions of INPUT_DIR/NAME.txt with a pipeline holding `icd_linker`.

    Mentions come from NAME.ann (`mentions="ann"`, brat entity lines; only icd_linker runs) or from the
    pipeline's own NER (`mentions="pipeline"`). Per document: NAME.ann (the marker) with the mentions as
    T lines and a brat normalisation line `N<k> Reference T<k> ICD10:<code>` per linked (non-NIL) mention;
    `finalize` joins all links into links.tsv (filename, label, start, end, text, code, score)."""

    kind = "link"
    HEADER = ["filename", "label", "start", "end", "text", "code", "score"]

    def __init__(self, pipeline: str, input_dir, *, mentions: str = "ann"):
        if mentions not in ("ann", "pipeline"):
            raise ValueError(f"link: mentions must be 'ann' or 'pipeline', got {mentions!r}")
        self.pipeline, self.input_dir, self.mentions = _model_ref(pipeline), _absolute(input_dir), mentions

    def records(self) -> List[Dict[str, Any]]:
        if not self.input_dir.is_dir():
            raise FileNotFoundError(f"link: {self.input_dir} is not a folder")
        return [{"name": p.stem, "text": str(p), "ann": str(p.with_suffix(".ann"))}
                for p in sorted(self.input_dir.glob("*.txt"))]

    def marker(self, name: str) -> str:
        return f"{name}.ann"

    def load(self, gpu_id: int = -1) -> _State:
        import spacy

        if gpu_id >= 0:
            spacy.require_gpu(gpu_id)
        nlp = spacy.load(self.pipeline)
        if "icd_linker" not in nlp.pipe_names:
            raise ValueError(f"link: the pipeline {self.pipeline} has no icd_linker component")
        return _State(nlp)

    def _spans_key(self, state: _State) -> Optional[str]:
        return state.nlp.get_pipe("icd_linker").cfg["spans_key"]

    def read(self, state: _State, record: Dict[str, Any]):
        from ..io.standoff import entities_to_spans, read_ann, read_text_exact

        doc = state.nlp.make_doc(read_text_exact(Path(record["text"])))
        if self.mentions == "ann":
            entities = read_ann(Path(record["ann"])) if Path(record["ann"]).exists() else []
            spans = entities_to_spans(doc, entities, record["text"])
            key = self._spans_key(state)
            if key is None:
                doc.ents = spans  # overlapping mentions raise ValueError: an error for this document
            else:
                doc.spans[key] = spans
        return doc

    def pipe(self, state: Any, docs: List, batch_size: int) -> Iterable:
        if self.mentions == "ann":
            return state.nlp.get_pipe("icd_linker").pipe(docs, batch_size=batch_size)
        return state.nlp.pipe(docs, batch_size=batch_size)

    def serialize(self, state: Any, record: Dict[str, Any], doc) -> Dict[str, bytes]:
        from ..pipeline.icd_linker import NIL

        spans = state.nlp.get_pipe("icd_linker")._mentions(doc)
        name = record["name"]
        lines, rows = [], []
        for k, span in enumerate(spans, start=1):
            text = span.text.replace("\n", " ")
            lines.append(f"T{k}\t{span.label_} {span.start_char} {span.end_char}\t{text}")
            candidates = span._.icd_candidates or []
            score = f"{candidates[0]['score']:.4f}" if candidates else ""
            code = span.kb_id_ or NIL
            if code != NIL:
                lines.append(f"N{k}\tReference T{k} ICD10:{code}\t{text}")
            rows.append([name, span.label_, span.start_char, span.end_char, text, code, score])
        return {f"links/{name}.tsv": _tsv_bytes(rows), self.marker(name): "".join(l + "\n" for l in lines).encode("utf8")}

    def finalize(self, out_dir: Path, names: Sequence[str]) -> None:
        from ..io.atomic import atomic_write_bytes

        body = _concat_parts(out_dir, "links", names, self.marker, ".tsv")
        atomic_write_bytes(out_dir / "links.tsv", _tsv_bytes([self.HEADER]) + body)
