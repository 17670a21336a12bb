"""`python -m spacy_clinalign link ...`: build catalogues, train both encoders, build and evaluate a
linking pipeline. project.yml's `train-linker` and `evaluate-linking` workflows call these."""
import argparse
import time
from pathlib import Path
from typing import List

import srsly

from ..io.linking_mentions import mention_pairs, read_mentions
from ..linking.catalog import load_catalog
from ..scoring.linking import evaluate_linking_systems, format_table
from .arguments import non_negative_int, positive_int
from .ray_options import add_ray_arguments, run_task
from ..io.atomic import atomic_write_text


def _catalog_with_synonyms(spec: str, synonym_files: List[str]):
    catalog = load_catalog(spec)
    for path in synonym_files or ():
        counts = catalog.add_synonyms(mention_pairs(read_mentions(path)), add_unknown=True)
        print(f"synonyms from {path}: {counts}")
    return catalog


def cmd_build_catalog(args: argparse.Namespace) -> None:
    catalog = _catalog_with_synonyms(args.spec, args.synonyms)
    catalog.to_jsonl(args.output)
    print(f"{len(catalog)} codes, {len(catalog.flat_descriptions()[0])} descriptions -> {args.output}")


def cmd_train_bi_encoder(args: argparse.Namespace) -> None:
    from ..linking.training import catalog_training_pairs, mention_training_pairs, train_bi_encoder

    catalog = _catalog_with_synonyms(args.catalog, [])
    mentions = [m for path in args.train for m in read_mentions(path)]
    pairs, skipped = mention_training_pairs(mentions, catalog)
    pairs += catalog_training_pairs(catalog, limit=args.catalog_pairs, seed=args.seed)
    print(f"{len(pairs)} training pairs ({skipped} mention codes not in the catalogue skipped)")
    stats = train_bi_encoder(args.encoder, args.output, pairs, catalog, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, max_steps=args.max_steps, device=args.device, seed=args.seed,
                             train_layers=args.train_layers)
    print(srsly.json_dumps(stats))


def cmd_train_cross_encoder(args: argparse.Namespace) -> None:
    """Train a reranker from PIPELINE's bi-encoder (its index gives the dense hard negatives), then save
    PIPELINE plus the reranker as OUTPUT (a pipeline) and the bare reranker under OUTPUT/cross_encoder."""
    import spacy

    from ..linking.cross_encoder import CrossEncoder
    from ..linking.training import hard_negative_groups, mention_training_pairs, train_cross_encoder

    nlp = spacy.load(args.pipeline)
    component = nlp.get_pipe("icd_linker")
    linker = component._require()
    if linker.bi_encoder is None:
        raise ValueError(f"{args.pipeline}: its icd_linker has no bi-encoder to start the reranker from")
    mentions = [m for path in args.train for m in read_mentions(path)]
    pairs, skipped = mention_training_pairs(mentions, linker.catalog)
    groups = hard_negative_groups(pairs, linker, n_negatives=args.negatives, seed=args.seed)
    print(f"{len(groups)} listwise groups of up to {args.negatives + 1} ({skipped} codes not in the catalogue)")
    start_dir = Path(args.pipeline) / component.name / "bi_encoder"
    reranker_dir = Path(args.output) / "cross_encoder"
    stats = train_cross_encoder(start_dir, reranker_dir, groups, epochs=args.epochs, group_batch=args.group_batch,
                                lr=args.lr, max_steps=args.max_steps, device=args.device, seed=args.seed,
                                train_layers=args.train_layers, lora_rank=args.lora_rank)
    print(srsly.json_dumps(stats))
    linker.cross_encoder = CrossEncoder(reranker_dir, device=args.device)
    nlp.to_disk(Path(args.output) / "pipeline")
    print(f"saved {Path(args.output) / 'pipeline'} (bi-encoder + reranker)")


def cmd_build_pipeline(args: argparse.Namespace) -> None:
    import spacy

    nlp = spacy.blank(args.lang)
    linker = nlp.add_pipe("icd_linker", config={"channels": args.channels, "index_kind": args.index_kind,
                                                "top_k": args.top_k})
    start = time.perf_counter()
    linker.initialize(catalog=args.catalog, bi_encoder=args.bi_encoder, cross_encoder=args.cross_encoder,
                      synonyms=args.synonyms or (), progress=True)
    print(f"catalogue {len(linker.linker.catalog)} codes, {len(linker.linker.texts)} descriptions indexed "
          f"in {time.perf_counter() - start:.0f} s")
    nlp.to_disk(args.output)
    print(f"saved {args.output}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import spacy

    nlp = spacy.load(args.pipeline)
    mentions = [m for path in args.mentions for m in read_mentions(path)]
    if args.limit:
        mentions = mentions[: args.limit]
    result = evaluate_linking_systems(nlp, mentions, args.systems.split(","))
    catalog = nlp.get_pipe("icd_linker").linker.catalog
    missing = sum(1 for m in mentions if not all("-" in c or c in catalog for c in m.codes))
    print(f"{len(mentions)} mentions; {missing} have a gold code absent from the catalogue "
          f"({len(catalog)} codes)")
    print(format_table(result["rows"]))
    print("mentions/s: " + ", ".join(f"{s} {v:.0f}" for s, v in result["mentions_per_s"].items()))
    if args.output:
        atomic_write_text(args.output, srsly.json_dumps({**result, "missing_codes": missing}, indent=2) + "\n")


def cmd_corpus(args: argparse.Namespace) -> None:
    from ..distributed import LinkTask

    run_task(LinkTask(args.pipeline, args.input_dir, mentions=args.mentions), args.output_dir, args, gpu_id=args.gpu_id)
    print(f"links of every document in {Path(args.output_dir) / 'links.tsv'}")


def cmd_evaluate_documents(args: argparse.Namespace) -> None:
    import spacy

    from ..scoring.document_coding import format_coding_table
    from ..linking.document_coding import evaluate_document_coding, read_codiesp_split
    from ..pipelines import load_linker_pipeline

    split = read_codiesp_split(args.split_dir, limit=args.limit)
    start = time.perf_counter()
    nlp = load_linker_pipeline(args.pipeline, args.catalog, args.synonyms, args.threshold)
    print(f"linker ready in {time.perf_counter() - start:.0f} s")
    ner = spacy.load(args.ner) if args.ner else None
    result = evaluate_document_coding(nlp, split, ner=ner, ner_labels=args.ner_labels, batch_size=args.batch_size)
    system = f"{'gold mentions' if ner is None else Path(args.ner).name} + {Path(args.pipeline).name}"
    print(f"{result['documents']} documents, {result['mentions_linked']} mentions linked "
          f"({result['gold_mentions']} gold DIAGNOSTICO mentions), {result['seconds_per_document']:.3f} s per document")
    print(format_coding_table({system: result}))
    if args.output:
        atomic_write_text(args.output, srsly.json_dumps({"system": system, **result}, indent=2) + "\n")


def add_commands(sub) -> None:
    link = sub.add_parser("link", help="ICD-10 linking: catalogues, training, pipelines, evaluation")
    cmds = link.add_subparsers(dest="link_command", required=True)

    p = cmds.add_parser("build-catalog", help="write a catalogue as JSONL (built-ins + synonyms from mentions)")
    p.add_argument("spec", help="icd10cm, cie10, icd10cm+cie10, or a JSONL/TSV catalogue")
    p.add_argument("output", type=Path)
    p.add_argument("--synonyms", nargs="*", default=[], help="CodiEsp X.tsv / DisTEMIST files or folders")
    p.set_defaults(func=cmd_build_catalog)

    p = cmds.add_parser("train-bi-encoder", help="MultipleNegativesRankingLoss fine-tuning")
    p.add_argument("encoder", help="local Hugging Face folder to start from")
    p.add_argument("output", type=Path)
    p.add_argument("--catalog", default="icd10cm+cie10")
    p.add_argument("--train", nargs="+", required=True, help="CodiEsp X.tsv / DisTEMIST training mentions")
    p.add_argument("--catalog-pairs", type=positive_int, default=20000, help="pairs drawn from the catalogue itself")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--max-steps", type=positive_int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-layers", type=positive_int, default=None,
                   help="train only the top N encoder layers (embeddings and lower layers frozen; default: all)")
    p.set_defaults(func=cmd_train_bi_encoder)

    p = cmds.add_parser("train-cross-encoder", help="listwise reranker from a pipeline's bi-encoder")
    p.add_argument("pipeline", help="pipeline with a dense icd_linker (from build-pipeline)")
    p.add_argument("output", type=Path, help="folder for cross_encoder/ and pipeline/ (with the reranker)")
    p.add_argument("--train", nargs="+", required=True)
    p.add_argument("--negatives", type=positive_int, default=9)
    p.add_argument("--group-batch", type=positive_int, default=8)
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--max-steps", type=positive_int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-layers", type=positive_int, default=None,
                   help="train only the top N layers and the head (default: all)")
    p.add_argument("--lora-rank", type=positive_int, default=None,
                   help="train rank-R LoRA adapters (on the --train-layers layers) and the head instead of the "
                        "weights; merged before saving, and shippable exactly with `pipelines make-delta --rank R`")
    p.set_defaults(func=cmd_train_cross_encoder)

    p = cmds.add_parser("build-pipeline", help="a blank pipeline with an initialized icd_linker, saved to OUTPUT")
    p.add_argument("output", type=Path)
    p.add_argument("--catalog", default="icd10cm+cie10")
    p.add_argument("--bi-encoder", default=None)
    p.add_argument("--cross-encoder", default=None)
    p.add_argument("--synonyms", nargs="*", default=[])
    p.add_argument("--channels", default="dense", choices=["dense", "bm25", "hybrid"])
    p.add_argument("--index-kind", default="exact", choices=["exact", "hnsw"])
    p.add_argument("--top-k", type=positive_int, default=10)
    p.add_argument("--lang", default="es")
    p.set_defaults(func=cmd_build_pipeline)

    p = cmds.add_parser("evaluate", help="the paper's table: P/R/F1, P@k, R@k, MAP@10 at three levels")
    p.add_argument("pipeline")
    p.add_argument("mentions", nargs="+", help="CodiEsp dev folder / X.tsv, DisTEMIST dev folder")
    p.add_argument("--systems", default="bm25,bi,bi+cross")
    p.add_argument("--limit", type=non_negative_int, default=None)
    p.add_argument("--output", type=Path, default=None)
    p.set_defaults(func=cmd_evaluate)

    p = cmds.add_parser("corpus", help="link the mentions of a folder of documents: one brat .ann per document, "
                                       "links.tsv, errors.tsv; resumable; --ray for a cluster")
    p.add_argument("pipeline", help="pipeline folder with icd_linker (and an NER before it for --mentions pipeline)")
    p.add_argument("input_dir", help="NAME.txt documents, with NAME.ann mentions (brat T lines) for --mentions ann")
    p.add_argument("output_dir", help="gets NAME.ann (T lines + `N Reference Tk ICD10:CODE` lines), links/, links.tsv")
    p.add_argument("--mentions", choices=["ann", "pipeline"], default="ann",
                   help="ann: the documents' .ann entities (only icd_linker runs); pipeline: the pipeline's own NER")
    p.add_argument("--batch-size", type=positive_int, default=16, help="documents per batch (and per Ray task)")
    p.add_argument("--gpu-id", type=int, default=-1)
    add_ray_arguments(p)
    p.set_defaults(func=cmd_corpus)

    p = cmds.add_parser("evaluate-documents", help="code whole CodiEsp documents: NER (or gold mentions) + icd_linker; "
                                                   "CodiEsp-D MAP/P/R/F1 and mention-level (CodiEsp-X style) P/R/F1")
    p.add_argument("pipeline", help="pipeline with icd_linker, or `bm25` for a BM25 linker built on the fly")
    p.add_argument("split_dir", help="CodiEsp split folder with *D.tsv, *X.tsv and text_files/")
    p.add_argument("--ner", default=None, help="NER pipeline (bio_ner_cnn or ents) finding the mentions; "
                                               "default: the gold DIAGNOSTICO mentions")
    p.add_argument("--ner-labels", nargs="*", default=[], help="link only NER spans of these labels")
    p.add_argument("--catalog", default="icd10cm+cie10", help="with `bm25`: the catalogue spec")
    p.add_argument("--synonyms", nargs="*", default=[], help="with `bm25`: training mentions added as descriptions")
    p.add_argument("--threshold", type=float, default=None, help="NIL threshold (default: the pipeline's)")
    p.add_argument("--limit", type=non_negative_int, default=0, help="first N documents by id (0 = all)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--output", type=Path, default=None)
    p.set_defaults(func=cmd_evaluate_documents)
