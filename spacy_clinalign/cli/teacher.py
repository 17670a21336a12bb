"""`build-teacher`: pairs with frozen multi-view teacher matrices, as a DocBin for `spacy train`."""
import argparse
import sys
from pathlib import Path
from .arguments import non_negative_int, positive_float, positive_int
from ..io.atomic import atomic_write_bytes


def _encoder_spec(value: str, default_layer: int):
    """`FOLDER` or `FOLDER:LAYER`."""
    folder, sep, layer = value.rpartition(":")
    if sep and layer.isdigit():
        return folder, int(layer)
    return value, default_layer


def cmd_build_teacher(args: argparse.Namespace) -> None:
    from spacy.tokens import DocBin
    from tqdm import tqdm

    from ..io.alignment_files import read_parallel
    from ..pairs import register_extensions
    from ..training.teacher_corpus import (
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
        from ..pairs import pair_from_words

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
    atomic_write_bytes(args.output, db.to_bytes())
    print(f"Wrote {len(db)} pairs with teacher matrices to {args.output}", file=sys.stderr)


def add_commands(sub) -> None:
    p = sub.add_parser("build-teacher", help="pairs + frozen multi-view teacher matrices, as a DocBin for training")
    p.add_argument("source", help="a `source ||| target` file, or a folder of source .txt documents (with --target)")
    p.add_argument("output", help="output .spacy DocBin")
    p.add_argument("--target", help="folder of translated .txt documents with the same file names")
    p.add_argument("--encoder", required=True, help="encoder folder shared by the views unless overridden")
    p.add_argument("--layer", type=positive_int, default=8)
    for view in ("sentence", "phrase", "token"):
        p.add_argument(f"--{view}-encoder", help=f"FOLDER or FOLDER:LAYER for the {view}-level view")
    p.add_argument("--weights", nargs="+", help="VIEW=WEIGHT for prior, sentence, phrase, token (default 1 each)")
    p.add_argument("--temperature", type=positive_float, default=0.1, help="Sinkhorn temperature on the summed views")
    p.add_argument("--sinkhorn-iterations", type=non_negative_int, default=100)
    p.add_argument("--spans", help="jsonl of manually mapped spans (char offsets) for the span-aware bias")
    p.add_argument("--span-bias", type=float, default=0.0, help="additive bias inside mapped spans (0 = off)")
    p.add_argument("--source-lang", default="es")
    p.add_argument("--target-lang", default="en")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--limit", type=non_negative_int, default=0, help="first N pairs only (0 = all)")
    p.set_defaults(func=cmd_build_teacher)
