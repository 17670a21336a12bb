"""`align`, `evaluate-alignment`, `evaluate-gold-sets`: word alignment of parallel files and its AER."""
import argparse
import sys
from pathlib import Path

from ..pipelines import DEFAULT_BATCH, align_word_pairs, load_aligner
from .arguments import LAYER_HELP, non_negative_int, positive_int
from ..io.atomic import atomic_write_text
from .ray_options import add_ray_arguments, run_task


def cmd_align(args: argparse.Namespace) -> None:
    from ..distributed import pharaoh_line
    from ..io.alignment_files import read_parallel, write_pharaoh

    if args.ray is not None:
        from ..distributed import AlignTask

        if args.html:
            raise ValueError("align: --html is not available with --ray")
        task = AlignTask(args.model, args.input, args.output, layer=args.layer, method=args.method, probs=args.probs)
        run_task(task, args.parts_dir or f"{args.output}.parts", args)
        print(f"Wrote the alignments to {args.output}", file=sys.stderr)
        return
    pairs = read_parallel(args.input)
    nlp = load_aligner(args.model, layer=args.layer, method=args.method, gpu_id=args.gpu_id)
    docs = align_word_pairs(nlp, pairs, batch_size=args.batch_size)
    write_pharaoh(args.output, [pharaoh_line(d, args.probs) for d in docs])
    print(f"Wrote {len(docs)} alignments to {args.output}", file=sys.stderr)
    if args.html:
        from ..render import render_alignment, render_page

        atomic_write_text(args.html, render_page([render_alignment(d) for d in docs[: args.html_limit]]))
        print(f"Wrote HTML view of {min(len(docs), args.html_limit)} pairs to {args.html}", file=sys.stderr)


def cmd_evaluate_alignment(args: argparse.Namespace) -> None:
    from ..io.alignment_files import read_links
    from ..scoring.alignment import score_link_sets

    gold = read_links(args.gold, one_based=args.one_based)
    pred = read_links(args.pred, one_based=args.pred_one_based)
    if len(gold) != len(pred):
        raise SystemExit(f"error: {args.pred} has {len(pred)} lines but {args.gold} has {len(gold)}")
    scores = score_link_sets([[(j, i) for j, i, _ in p] for p in pred], gold)
    for key in ("align_aer", "align_p", "align_r", "align_f"):
        print(f"{key}\t{100 * scores[key]:.1f}")


def cmd_evaluate_gold_sets(args: argparse.Namespace) -> None:
    import srsly

    from ..scoring.gold_sets import evaluate_gold_sets, format_rows

    nlp = load_aligner(args.model, layer=args.layer, gpu_id=args.gpu_id)
    nlp.get_pipe("clinical_aligner").cfg["store_matrix"] = True  # every method re-extracts from the scores
    rows = evaluate_gold_sets(nlp, Path(args.data_dir), args.sets, args.methods, args.batch_size, args.limit,
                              skip_malformed=args.skip_malformed)
    print(format_rows(rows))
    if args.output:
        atomic_write_text(args.output, srsly.json_dumps(rows, indent=2) + "\n")


def add_commands(sub) -> None:
    p = sub.add_parser("align", help="align a `source ||| target` file, write Pharaoh links")
    p.add_argument("model", help="spaCy pipeline folder with clinical_aligner, or a local Hugging Face encoder folder")
    p.add_argument("input", help="parallel file, one `source ||| target` pair a line, tokens split by spaces")
    p.add_argument("output", help="Pharaoh output, 0-based `source-target` links")
    p.add_argument("--method", choices=["argmax", "itermax", "threshold"], default=None)
    p.add_argument("--layer", type=positive_int, default=None, help=LAYER_HELP)
    p.add_argument("--probs", action="store_true", help="append `:probability` to each link")
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH)
    p.add_argument("--html", help="also write an HTML heatmap view of the first pairs here")
    p.add_argument("--html-limit", type=positive_int, default=20)
    p.add_argument("--parts-dir", help="with --ray: one file per input line here (default OUTPUT.parts); reruns resume")
    add_ray_arguments(p)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("evaluate-alignment", help="AER / precision / recall / F1 of Pharaoh links against gold")
    p.add_argument("pred")
    p.add_argument("gold")
    p.add_argument("--one-based", action="store_true", help="the gold file counts from 1")
    p.add_argument("--pred-one-based", action="store_true", help="the prediction file counts from 1")
    p.set_defaults(func=cmd_evaluate_alignment)

    p = sub.add_parser("evaluate-gold-sets", help="AER per gold set and extraction method, beside published rows")
    p.add_argument("model", help="spaCy pipeline folder with clinical_aligner, or a local Hugging Face encoder folder")
    p.add_argument("data_dir", help="folder holding awesome-align/ and binaryalign/ (../shared/data/alignment)")
    p.add_argument("--sets", nargs="+", default=["en-fr", "ro-en", "en-es", "en-cs", "en-sv"])
    p.add_argument("--methods", nargs="+", default=["argmax", "itermax", "threshold"])
    p.add_argument("--layer", type=positive_int, default=None, help=LAYER_HELP)
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH)
    p.add_argument("--limit", type=non_negative_int, default=0, help="first N pairs of each set (0 = all)")
    p.add_argument("--skip-malformed", action="store_true",
                   help="leave out gold records whose links fall outside their pair (listed after the table) instead of stopping")
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--output", help="also write the rows as JSON")
    p.set_defaults(func=cmd_evaluate_gold_sets)
