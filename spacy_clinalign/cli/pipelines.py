"""`pipelines ...`: ship trained weights with the package and build ready pipelines from them.

  make-delta TRAINED --out spacy_clinalign/weights/NAME --card-json card.json   (who trained it)
  build OUT_DIR [--only NAME ...] [--encoder PATH] [--catalog SPEC]              (every user, offline)
  add-reranker BUILT_LINKER [--out DIR]                                         (the shipped reranker, no re-indexing)
  verify                                                                        (checksums of the shipped files)
  package BUILT_DIR OUT_DIR [--only NAME ...]                                   (spacy package + a wheel each)"""
import argparse
import json
from pathlib import Path


def cmd_make_delta(args: argparse.Namespace) -> None:
    from ..shipping.build import PIPELINES
    from ..shipping.checksums import sha256_file
    from ..shipping.deltas import DELTA_NAME, extract_delta, git_commit, update_checksums

    card = {}
    if args.card_json:
        try:
            card = json.loads(Path(args.card_json).read_text(encoding="utf8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{args.card_json} is not valid JSON ({err})") from None
        if not isinstance(card, dict):
            raise ValueError(f"{args.card_json} must hold a JSON object (the card's fields)")
    out = Path(args.out)
    pipeline = next((s.name for s in PIPELINES.values() if s.part == out.name), None)
    if pipeline:
        card.setdefault("pipeline", pipeline)
    training = card.setdefault("training", {})
    if not isinstance(training, dict):
        raise ValueError(f"{args.card_json}: `training` must be a JSON object")
    training.setdefault("commit", git_commit())
    card = extract_delta(args.trained, args.base, out, card, atol=args.atol, rank=args.rank)
    sums = update_checksums(out.parent, out.name)
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    low_rank = card["delta"].get("low_rank")
    print(f"{out}: {card['delta']['tensors']} tensors, {card['delta']['parameters']:,} parameters "
          f"(fp16), {size:.2f} MiB; delta sha256 {sha256_file(out / DELTA_NAME)[:12]}; {sums} updated"
          + (f"; {low_rank['matrices']} matrices as rank-{low_rank['rank']} factors (largest relative error "
             f"{low_rank['max_relative_error']:.2e})" if low_rank else ""))


def cmd_set_figures(args: argparse.Namespace) -> None:
    from ..shipping.deltas import set_figures

    try:
        scores = json.loads(Path(args.scores).read_text(encoding="utf8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{args.scores} is not valid JSON ({err})") from None
    card = set_figures(args.part, scores, args.command, prefix=args.prefix)
    print(f"{args.part}: {len(card['figures'])} figure(s) and command(s) on the card; SHA256SUMS updated")


def cmd_build(args: argparse.Namespace) -> None:
    from ..shipping.build import build_pipelines
    from ..weights import WEIGHTS_DIR

    built = build_pipelines(args.out_dir, only=args.only, encoder=args.encoder, catalog=args.catalog,
                            synonyms=args.synonyms, weights_dir=Path(args.weights or WEIGHTS_DIR),
                            progress=not args.no_progress, reranker=not args.no_reranker)
    print(f"{len(built)} pipeline(s) in {args.out_dir}: " + ", ".join(built)
          + ". Load one with spacy.load(PATH); no other folder is needed.")


def cmd_add_reranker(args: argparse.Namespace) -> None:
    from ..shipping.build import add_reranker
    from ..weights import WEIGHTS_DIR

    path = add_reranker(args.pipeline, args.out, weights_dir=Path(args.weights or WEIGHTS_DIR))
    print(f"{path}: icd_linker now reranks its top k with the shipped reranker")


def cmd_verify(args: argparse.Namespace) -> None:
    from ..shipping.checksums import iter_parts, part_digest, verify_checksums
    from ..weights import WEIGHTS_DIR

    root = Path(args.weights or WEIGHTS_DIR)
    files = verify_checksums(root)
    parts = iter_parts(root)
    print(f"{len(files)} file(s) in {root} match SHA256SUMS; parts: "
          + (", ".join(f"{p} ({part_digest(root, p)[:12]})" for p in parts) or "none shipped yet"))


def cmd_package(args: argparse.Namespace) -> None:
    from ..shipping.packaging import package_pipeline

    built = Path(args.built_dir)
    if not built.is_dir():
        raise ValueError(f"{built} is not a folder of built pipelines (run `pipelines build {built}` first)")
    names = args.only or sorted(p.name for p in built.iterdir() if (p / "meta.json").is_file())
    if not names:
        raise ValueError(f"{built} holds no built pipeline (run `pipelines build {built}` first)")
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    for name in names:
        wheel = package_pipeline(built / name, Path(args.out_dir), version=args.version)
        print(f"{name}: {wheel}")


def add_commands(sub) -> None:
    group = sub.add_parser("pipelines", help="trained pipelines shipped with the package: build, verify, package")
    cmds = group.add_subparsers(dest="pipelines_command", required=True)

    p = cmds.add_parser("make-delta", help="ship a trained pipeline as an fp16 delta over its base encoder")
    p.add_argument("trained", help="trained spaCy pipeline folder (e.g. training/aligner/model-best), or a "
                   "Hugging Face encoder folder (the linker's bi-encoder from `link train-bi-encoder`), or a "
                   "reranker folder (`link train-cross-encoder` OUT/cross_encoder; --base: the bi-encoder it "
                   "started from)")
    p.add_argument("--base", default="clinalign-e5-small", help="the base encoder it was trained from")
    p.add_argument("--out", required=True, help="part folder, e.g. spacy_clinalign/weights/es_en_aligner")
    p.add_argument("--card-json", default=None, help="JSON with the card's fields: description, training "
                   "(data, steps, command, commit), figures (with `command`), sources, version")
    p.add_argument("--atol", type=float, default=0.0, help="keep tensors that moved by more than this")
    p.add_argument("--rank", type=int, default=None, help="store 2-D changes of at most this rank as two factors "
                   "(a LoRA-trained reranker: `link train-cross-encoder --lora-rank R`); others in full")
    p.set_defaults(func=cmd_make_delta)

    p = cmds.add_parser("set-figures", help="put scores measured on the pipeline built from a part on its card")
    p.add_argument("part", help="part folder, e.g. spacy_clinalign/weights/es_en_aligner")
    p.add_argument("scores", help="the --output JSON of evaluate-projection / evaluate-ner / link evaluate")
    p.add_argument("--command", required=True, help="the exact command that printed the scores")
    p.add_argument("--prefix", default="", help="name the figures PREFIX/NAME (e.g. dev20 for a 20-pair check)")
    p.set_defaults(func=cmd_set_figures)

    p = cmds.add_parser("build", help="materialise the shipped pipelines into OUT_DIR (spacy.load-able, offline)")
    p.add_argument("out_dir")
    p.add_argument("--only", nargs="+", default=None, help="es_en_clinical_aligner, es_clinical_ner, es_icd_linker")
    p.add_argument("--encoder", default=None, help="base encoder folder (default: the imported multilingual-e5-small, "
                   "imported now if missing)")
    p.add_argument("--catalog", default="icd10cm+cie10", help="es_icd_linker's catalogue (built-ins joined by +, "
                   "or a JSONL/TSV file)")
    p.add_argument("--synonyms", nargs="*", default=[], help="mention files whose surface forms join the catalogue")
    p.add_argument("--weights", default=None, help="weights folder (default: the package's)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-reranker", action="store_true", help="es_icd_linker without its shipped reranker "
                   "(dense retrieval only: ~10x faster, lower exact-code F1)")
    p.set_defaults(func=cmd_build)

    p = cmds.add_parser("add-reranker", help="give a built es_icd_linker the shipped reranker (no re-indexing)")
    p.add_argument("pipeline", help="a pipeline from `pipelines build --only es_icd_linker [--no-reranker]`")
    p.add_argument("--out", default=None, help="save here (default: in place)")
    p.add_argument("--weights", default=None, help="weights folder (default: the package's)")
    p.set_defaults(func=cmd_add_reranker)

    p = cmds.add_parser("verify", help="check every shipped weight file against SHA256SUMS")
    p.add_argument("--weights", default=None, help="weights folder (default: the package's)")
    p.set_defaults(func=cmd_verify)

    p = cmds.add_parser("package", help="`spacy package` each built pipeline and build its wheel")
    p.add_argument("built_dir")
    p.add_argument("out_dir")
    p.add_argument("--only", nargs="+", default=None)
    p.add_argument("--version", default=None, help="package version (default: the pipeline's meta version)")
    p.set_defaults(func=cmd_package)
