"""`project`, `evaluate-projection`: carry source annotations onto translations, and score it on MultiClinAI."""
import argparse
import sys
from pathlib import Path

from ..io.atomic import atomic_write_text
from ..pipelines import add_ner_support, load_projection_pipeline
from ..scoring.spans import format_span_scores
from .arguments import LAYER_HELP, non_negative_int, positive_float, positive_int
from .ray_options import add_ray_arguments, run_task


def cmd_evaluate_projection(args: argparse.Namespace) -> None:
    import srsly

    from ..io.multiclinai import read_multiclinai_examples
    from ..scoring.spans import evaluate_in_place

    nlp = load_projection_pipeline(args.model, args.layer, args.gpu_id, threshold=args.threshold,
                                   temperature=args.temperature, max_gap=args.max_gap, decoder=args.decoder,
                                   symmetrize=None if args.symmetrize == "none" else args.symmetrize, target_lang=args.target_lang,
                                   source_lang=args.source_lang)
    if args.symmetrize == "none":
        nlp.get_pipe("span_projector").cfg["symmetrize"] = None
    examples = list(read_multiclinai_examples(nlp.vocab, Path(args.data), limit=args.limit, split=args.split,
                                              tokenizer_langs=args.retokenize))
    if args.ner:
        label_map = dict(item.split("=", 1) for item in args.ner_label_map)
        add_ner_support(args.ner, [eg.predicted for eg in examples], batch_size=args.batch_size)
        nlp.get_pipe("span_projector").cfg.update(support_spans_key="ner", support_label_map=label_map)
    scores = evaluate_in_place(nlp, examples, batch_size=args.batch_size, keep_matrices=False)
    print(format_span_scores(scores))
    if args.errors:
        from ..io.multiclinai import multiclinai_split
        from ..scoring.projection_errors import classify_examples, errors_to_tsv, format_error_counts

        ids = [str(i) for i in range(sum(1 for _ in srsly.read_jsonl(args.data)))
               if args.split is None or multiclinai_split(i) == args.split][:len(examples)]
        errors = classify_examples(examples, doc_ids=ids)
        print("errors per label (rows in %s):" % args.errors)
        print(format_error_counts(errors))
        atomic_write_text(args.errors, errors_to_tsv(errors, {i: eg.reference.text for i, eg in zip(ids, examples)}))
    if args.pred_tsv:
        write_pred_tsv(args.pred_tsv, [(eg.predicted.user_data["filename"], eg.predicted.spans.get("projected", []))
                                       for eg in examples])
    if args.output:
        atomic_write_text(args.output, srsly.json_dumps({k: v for k, v in scores.items() if k.startswith(("proj_", "align_"))}, indent=2) + "\n")


def write_pred_tsv(path: str, named_spans) -> None:
    """`--pred-tsv`: (document name, spans) pairs in the shared task's TSV format."""
    from ..io.shared_task_tsv import write_doc_spans

    n = write_doc_spans(path, named_spans)
    print(f"Wrote {n} predicted spans of {len(named_spans)} documents to {path}", file=sys.stderr)


def write_pred_tsv_from_ann(path: str, out_dir: Path) -> None:
    """`project --pred-tsv`: the projected .ann files of OUTPUT_DIR (whoever wrote them: this process or
    the distributed workers) as one shared-task TSV, one row per fragment."""
    from ..io.shared_task_tsv import TsvSpan, write_shared_task_tsv
    from ..io.standoff import read_ann

    rows = [TsvSpan(ann.stem, ent.label, start, end, ent.text if len(ent.fragments) == 1 else "")
            for ann in sorted(Path(out_dir).glob("*.ann")) for ent in read_ann(ann) for start, end in ent.fragments]
    n = write_shared_task_tsv(path, rows)
    print(f"Wrote {n} projected spans to {path}", file=sys.stderr)


def cmd_project(args: argparse.Namespace) -> None:
    from ..distributed import ProjectTask

    out_dir = Path(args.output_dir)
    for folder, role in ((args.source_dir, "SOURCE_DIR"), (args.target_dir, "TARGET_DIR")):
        if out_dir.resolve() == Path(folder).resolve():
            raise ValueError(f"project: OUTPUT_DIR {out_dir} is the {role}; writing there would overwrite its "
                             ".txt and .ann files. Choose a new folder")
    task = ProjectTask(args.model, args.source_dir, args.target_dir, tsv=args.tsv, tsv_format=args.tsv_format,
                       annotated_only=args.annotated_only, source_lang=args.source_lang, layer=args.layer,
                       threshold=args.threshold, temperature=args.temperature, target_lang=args.target_lang)
    summary = run_task(task, out_dir, args, gpu_id=args.gpu_id)
    if args.html:  # the first documents again, in this process
        from ..render import render, render_page

        state = task.load(gpu_id=args.gpu_id)
        records = [r for r in task.records() if (out_dir / task.marker(r["name"])).exists()][: args.html_limit]
        docs = state.nlp.pipe([task.read(state, r) for r in records], batch_size=args.batch_size)
        atomic_write_text(args.html, render_page([render(d, title=r["name"], page=False) for r, d in zip(records, docs)]))
    with (out_dir / "unprojected.tsv").open(encoding="utf8") as report:
        n_unprojected = sum(1 for _ in report) - 1
    print(f"Projected {summary.total - len(summary.errors)} documents into {out_dir}; {n_unprojected} source spans could "
          f"not be projected (listed in {out_dir / 'unprojected.tsv'})", file=sys.stderr)
    if args.pred_tsv:
        write_pred_tsv_from_ann(args.pred_tsv, out_dir)


def add_commands(sub) -> None:
    p = sub.add_parser("evaluate-projection", help="strict and character-level P/R/F1 of projected spans (MultiClinAI)")
    p.add_argument("model", help="pipeline folder with clinical_aligner (and span_projector), or an encoder folder")
    p.add_argument("data", help="paired jsonl, e.g. ../shared/data/multiclinai/paired_es_en.dev.jsonl")
    p.add_argument("--layer", type=positive_int, default=None, help=LAYER_HELP)
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
    p.add_argument("--errors", help="write one row per projection error (missing, spurious, boundary...) to this "
                                    "TSV and print the counts per label")
    p.add_argument("--split", choices=["tune", "report"], help="only that half of the dev pairs (pair id parity)")
    p.add_argument("--decoder", choices=["longest_run", "candidates"], default=None)
    p.add_argument("--symmetrize", choices=["none", "intersection", "union", "grow_diag_final"], default=None)
    p.add_argument("--source-lang", default="es", help="function words of the source for span edges")
    p.add_argument("--target-lang", default="en", help="function words of the target for span edges")
    p.add_argument("--retokenize", nargs=2, metavar=("SOURCE_LANG", "TARGET_LANG"),
                   help="re-tokenize both sides with spaCy's tokenizers (punctuation split off) instead of the "
                        "whitespace tokens; scores stay on characters")
    p.add_argument("--pred-tsv", help="also write the projected spans in the shared task's TSV format")
    p.set_defaults(func=cmd_evaluate_projection)

    p = sub.add_parser("project", help="project brat/TSV annotations of source documents onto their translations")
    p.add_argument("model", help="pipeline folder with clinical_aligner (and span_projector), or an encoder folder")
    p.add_argument("source_dir", help="source .txt documents, with brat .ann files unless --tsv is given")
    p.add_argument("target_dir", help="translated .txt documents with the same names")
    p.add_argument("output_dir", help="gets each target .txt, its projected .ann, unprojected.tsv (parts in "
                                      "unprojected/) and errors.tsv; a rerun skips the documents done")
    p.add_argument("--tsv", nargs="+", type=Path, help="TSV annotation files instead of .ann (see --tsv-format)")
    p.add_argument("--tsv-format", choices=["spaccc", "codiesp-x"], default="spaccc",
                   help="spaccc: filename, mark, label, start, end, text (with header); codiesp-x: CodiEsp X.tsv")
    p.add_argument("--annotated-only", action="store_true", help="with --tsv: skip documents the TSV does not mention")
    p.add_argument("--source-lang", default="es")
    p.add_argument("--target-lang", default=None,
                   help="the translations' language (e.g. en): its function words never start or end a projected span")
    p.add_argument("--layer", type=positive_int, default=None, help=LAYER_HELP)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--temperature", type=positive_float, default=None)
    p.add_argument("--batch-size", type=positive_int, default=4, help="documents per nlp.pipe batch (and per Ray task)")
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--html", help="write an HTML view (heatmap + spans) of the first documents here")
    p.add_argument("--html-limit", type=positive_int, default=10)
    add_ray_arguments(p)
    p.add_argument("--pred-tsv", help="also write every projected span in the shared task's TSV format")
    p.set_defaults(func=cmd_project)
