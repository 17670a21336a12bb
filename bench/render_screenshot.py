"""Render an aligned, projected pair as HTML and screenshot it in headless Chromium (needs `chromium`).

    python bench/render_screenshot.py [--encoder DIR] [--out demo_out]
Writes OUT/render.html and OUT/render.png and prints their paths; the PNG is not committed.
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import spacy

HERE = Path(__file__).resolve().parent


def main() -> None:
    from spacy_clinalign import make_pair, render
    from spacy_clinalign.pipelines import ASSETS, pick_demo_encoder

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--out", default="demo_out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name, layer = pick_demo_encoder(args.encoder, out)
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config={"model": {"name": name, "layer": layer}})
    nlp.add_pipe("span_projector")
    nlp.initialize()
    source = spacy.blank("es")((ASSETS / "sample.es.txt").read_text(encoding="utf8").strip())
    source.ents = [source.char_span(*m.span(), label=label, alignment_mode="expand") for label, m in _mentions(source.text)]
    doc = nlp(make_pair(source, (ASSETS / "sample.en.txt").read_text(encoding="utf8").strip(), nlp))
    html_path = out / "render.html"
    html_path.write_text(render(doc, title="Sample pair", jupyter=False, max_tokens=60), encoding="utf8")
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        sys.exit(f"Wrote {html_path}; no Chromium found for the screenshot (apt-get install chromium)")
    png = out / "render.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--window-size=1400,1800", f"--screenshot={png.resolve()}", html_path.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )
    print(f"HTML: {html_path}\nscreenshot: {png} ({png.stat().st_size} bytes)")


def _mentions(text):
    import re

    for label, pattern in (("SYMPTOM", r"dolor torácico"), ("SYMPTOM", r"disnea de esfuerzo"),
                           ("DISEASE", r"deficiencia de calcio y potasio"), ("PROCEDURE", r"tomografía computarizada de tórax"),
                           ("DISEASE", r"derrame pleural derecho")):
        m = re.search(pattern, text)
        if m:
            yield label, m


if __name__ == "__main__":
    main()
