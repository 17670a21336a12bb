"""`evaluate-ner`, `convert-spaccc`: the BIO tagger's data and scores."""
import argparse
import sys
from pathlib import Path

from ..scoring.spans import format_span_scores
from .arguments import non_negative_int, positive_int
from ..io.atomic import atomic_write_bytes, atomic_write_text


def cmd_evaluate_ner(args: argparse.Namespace) -> None:
    import spacy
    import srsly

    from ..io.ner_corpora import create_spaccc_reader

    from ..scoring.spans import evaluate_in_place
    from .project import write_pred_tsv

    nlp = spacy.load(args.model)
    predicted_key = nlp.get_pipe("bio_ner_cnn").cfg["spans_key"]
    spans_key = predicted_key or "entities"
    examples = list(create_spaccc_reader(Path(args.data), spans_key=spans_key, limit=args.limit)(nlp))
    scores = evaluate_in_place(nlp, examples, batch_size=args.batch_size)
    print(format_span_scores(scores, prefix="ner_"))
    if args.pred_tsv:
        write_pred_tsv(args.pred_tsv, [(eg.predicted.user_data["filename"],
                                        eg.predicted.spans.get(predicted_key, []) if predicted_key else eg.predicted.ents)
                                       for eg in examples])
    if args.output:
        atomic_write_text(args.output, srsly.json_dumps({k: v for k, v in scores.items() if k.startswith("ner_")}, indent=2) + "\n")


def cmd_convert_spaccc(args: argparse.Namespace) -> None:
    import spacy
    from spacy.tokens import DocBin

    from ..io.ner_corpora import read_spaccc_docs

    docs = list(read_spaccc_docs(spacy.blank(args.lang), Path(args.split_dir), args.spans_key))
    atomic_write_bytes(args.output, DocBin(docs=docs).to_bytes())
    n = sum(len(d.spans[args.spans_key]) for d in docs)
    print(f"Wrote {len(docs)} documents with {n} mentions to {args.output}", file=sys.stderr)


def add_commands(sub) -> None:
    p = sub.add_parser("evaluate-ner", help="strict and character-level P/R/F1 of an NER pipeline on a SPACCC split")
    p.add_argument("model", help="pipeline folder with bio_ner_cnn")
    p.add_argument("data", help="SPACCC split folder, e.g. ../shared/data/spaccc/dev")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--limit", type=non_negative_int, default=0)
    p.add_argument("--output", help="also write the scores as JSON")
    p.add_argument("--pred-tsv", help="also write the predicted spans in the shared task's TSV format")
    p.set_defaults(func=cmd_evaluate_ner)

    p = sub.add_parser("convert-spaccc", help="a SPACCC split (text_files + TSVs) as a .spacy DocBin")
    p.add_argument("split_dir")
    p.add_argument("output")
    p.add_argument("--spans-key", default="entities")
    p.add_argument("--lang", default="es")
    p.set_defaults(func=cmd_convert_spaccc)
