"""`project`, `evaluate-projection`: carry source annotations onto translations, and score it on MultiClinAI."""
import argparse
import sys
from pathlib import Path

from ..io.atomic import atomic_write_text
from ..pipelines import add_ner_support, load_projection_pipeline
from ..scoring.spans import format_span_scores
from .arguments import non_negative_int, positive_float, positive_int


def cmd_evaluate_projection(args: argparse.Namespace) -> None:
    import srsly

    from ..io.multiclinai import read_multiclinai_examples

    nlp = load_projection_pipeline(args.model, args.layer, args.gpu_id, threshold=args.threshold,
                                   temperature=args.temperature, max_gap=args.max_gap)
    examples = list(read_multiclinai_examples(nlp.vocab, Path(args.data), limit=args.limit))
    if args.ner:
        label_map = dict(item.split("=", 1) for item in args.ner_label_map)
        add_ner_support(args.ner, [eg.predicted for eg in examples], batch_size=args.batch_size)
        nlp.get_pipe("span_projector").cfg.update(support_spans_key="ner", support_label_map=label_map)
    scores = nlp.evaluate(examples, batch_size=args.batch_size)
    print(format_span_scores(scores))
    if args.output:
        atomic_write_text(args.output, srsly.json_dumps({k: v for k, v in scores.items() if k.startswith(("proj_", "align_"))}, indent=2) + "\n")


def cmd_project(args: argparse.Namespace) -> None:
    import csv
    import io

    import spacy
    from tqdm import tqdm

    from ..io.standoff import entities_to_spans, read_ann, read_spaccc_tsv, read_text_exact, write_ann
    from ..pairs import make_pair

    source_dir, target_dir, out_dir = Path(args.source_dir), Path(args.target_dir), Path(args.output_dir)
    for folder in (source_dir, target_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"project: {folder} is not a folder")
    for folder, role in ((source_dir, "SOURCE_DIR"), (target_dir, "TARGET_DIR")):
        if out_dir.resolve() == folder.resolve():
            raise ValueError(f"project: OUTPUT_DIR {out_dir} is the {role}; writing there would overwrite its "
                             ".txt and .ann files. Choose a new folder")
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
            src = nlp_src(read_text_exact(source_dir / f"{name}.txt"))
            entities = tsv.get(name, []) if tsv is not None else (
                read_ann(source_dir / f"{name}.ann") if (source_dir / f"{name}.ann").exists() else [])
            src.spans["source"] = entities_to_spans(src, entities, f"{source_dir / name}.txt")
            yield make_pair(src, read_text_exact(target_dir / f"{name}.txt"), nlp)

    nlp.get_pipe("span_projector").cfg["source_spans_key"] = "source"
    report = []
    html_fragments = []
    for name, doc in tqdm(zip(names, nlp.pipe(pairs(), batch_size=args.batch_size)), total=len(names), unit="doc"):
        atomic_write_text(out_dir / f"{name}.txt", doc.text)  # the text the .ann offsets index, as read
        write_ann(out_dir / f"{name}.ann", doc.spans["projected"])
        for miss in doc._.unprojected:
            span = miss["span"]
            report.append([name, span.label_, span.start_char, span.end_char, span.text, f"{miss['best_score']:.3f}"])
        if args.html and len(html_fragments) < args.html_limit:
            from ..render import render

            html_fragments.append(render(doc, title=name, page=False))
    table = io.StringIO(newline="")
    writer = csv.writer(table, delimiter="\t", lineterminator="\n")
    writer.writerow(["filename", "label", "source_start", "source_end", "source_text", "best_score"])
    writer.writerows(report)
    atomic_write_text(out_dir / "unprojected.tsv", table.getvalue())
    if args.html:
        from ..render import render_page

        atomic_write_text(args.html, render_page(html_fragments))
    print(f"Projected {len(names)} documents into {out_dir}; {len(report)} source spans could not be projected "
          f"(listed in {out_dir / 'unprojected.tsv'})", file=sys.stderr)


def add_commands(sub) -> None:
    p = sub.add_parser("evaluate-projection", help="strict and character-level P/R/F1 of projected spans (MultiClinAI)")
    p.add_argument("model", help="pipeline folder with clinical_aligner (and span_projector), or an encoder folder")
    p.add_argument("data", help="paired jsonl, e.g. ../shared/data/multiclinai/paired_es_en.dev.jsonl")
    p.add_argument("--layer", type=positive_int, default=8)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--temperature", type=positive_float, default=None)
    p.add_argument("--max-gap", type=int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--limit", type=non_negative_int, default=0)
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--ner", help="an NER pipeline (bio_ner_cnn) whose spans on the targets support decoding")
    p.add_argument("--ner-label-map", nargs="+", default=["DISEASE=DIS", "PROCEDURE=PRO", "SYMPTOM=SYM"],
                   help="NER_LABEL=PROJECTED_LABEL pairs")
    p.add_argument("--output", help="also write the scores as JSON")
    p.set_defaults(func=cmd_evaluate_projection)

    p = sub.add_parser("project", help="project brat/TSV annotations of source documents onto their translations")
    p.add_argument("model", help="pipeline folder with clinical_aligner (and span_projector), or an encoder folder")
    p.add_argument("source_dir", help="source .txt documents, with brat .ann files unless --tsv is given")
    p.add_argument("target_dir", help="translated .txt documents with the same names")
    p.add_argument("output_dir", help="gets each target .txt, its projected .ann and unprojected.tsv")
    p.add_argument("--tsv", nargs="+", type=Path, help="SPACCC-style TSV annotation files instead of .ann")
    p.add_argument("--annotated-only", action="store_true", help="with --tsv: skip documents the TSV does not mention")
    p.add_argument("--source-lang", default="es")
    p.add_argument("--layer", type=positive_int, default=8)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--temperature", type=positive_float, default=None)
    p.add_argument("--batch-size", type=positive_int, default=4)
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--html", help="write an HTML view (heatmap + spans) of the first documents here")
    p.add_argument("--html-limit", type=positive_int, default=10)
    p.set_defaults(func=cmd_project)
