"""`demo` (what `make demo` runs): align the bundled sample pair, print the links and write an HTML view,
with no download."""
import argparse
from pathlib import Path

import spacy

from ..pairs import make_pair
from ..pipelines import ASSETS, pick_demo_encoder
from ..render import render_alignment, render_page


def cmd_demo(args: argparse.Namespace) -> None:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name, layer = pick_demo_encoder(args.encoder, out_dir)
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config={"model": {"name": name, "layer": layer}})
    nlp.initialize()
    source = spacy.blank("es")((ASSETS / "sample.es.txt").read_text(encoding="utf8").strip())
    doc = nlp(make_pair(source, (ASSETS / "sample.en.txt").read_text(encoding="utf8").strip(), nlp))
    alignment = doc._.alignment
    print(f"{len(source)} source tokens, {len(doc)} target tokens, {len(alignment)} links ({alignment.method}):")
    for (i, j), p in zip(alignment.links, alignment.probs):
        print(f"  {source[int(j)].text:>16} -> {doc[int(i)].text:<16} p={p:.2f}")
    print("Pharaoh:", alignment.to_pharaoh())
    html_path = out_dir / "alignment.html"
    html_path.write_text(render_page([render_alignment(doc, title="Sample pair (es -> en)")]), encoding="utf8")
    print(f"HTML view: {html_path}")


def add_commands(sub) -> None:
    p = sub.add_parser("demo", help="align the bundled sample pair, print links and write an HTML view")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--encoder", default=None, help="encoder folder (default: the imported e5, else a bundled tiny one)")
    p.set_defaults(func=cmd_demo)
