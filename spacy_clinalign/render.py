"""HTML views of an aligned pair: source and target text with their spans highlighted, and the alignment
heatmap (target rows x source columns) with links marked, like the paper's Figure 2."""
import html
from typing import Iterable, Optional

import numpy
from spacy.tokens import Doc

_STYLE = """
<style>
.clinalign table{border-collapse:collapse;font:12px sans-serif}
.clinalign td{width:18px;height:18px;border:1px solid #eee;text-align:center}
.clinalign td.link{outline:2px solid #c0392b}
.clinalign th.src{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;padding:2px}
.clinalign th.tgt{text-align:right;font-weight:normal;padding-right:6px}
.clinalign .text{font:14px/1.8 sans-serif;max-width:60em}
.clinalign mark{padding:1px 3px;border-radius:3px}
.clinalign mark span.lbl{font-size:9px;font-weight:bold;margin-left:3px;opacity:.7}
</style>
"""


def render_alignment(doc: Doc, title: Optional[str] = None, max_tokens: int = 300) -> str:
    """Return an HTML fragment: heatmap of `doc._.alignment.matrix`, extracted links outlined.

    Long documents are cut to the first `max_tokens` tokens on each side (the page says so).
    """
    alignment = doc._.alignment
    source = doc._.source
    if alignment is None or source is None:
        raise ValueError("render_alignment: the Doc has no `_.alignment`/`_.source`; run clinical_aligner on a pair first")
    n_t, n_s = min(len(doc), max_tokens), min(len(source), max_tokens)
    matrix = alignment.matrix if alignment.matrix is not None else numpy.zeros((len(doc), len(source)))
    linked = {(int(i), int(j)) for i, j in alignment.links}
    # colour by min-max scaled similarity: encoders' cosines are often all high (0.7-0.9)
    shown = matrix[:n_t, :n_s]
    low, high = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
    span = high - low if high > low else 1.0
    rows = ["<tr><th></th>" + "".join(f'<th class="src">{html.escape(t.text)}</th>' for t in source[:n_s]) + "</tr>"]
    for i in range(n_t):
        cells = []
        for j in range(n_s):
            raw = float(matrix[i, j])
            cls = ' class="link"' if (i, j) in linked else ""
            cells.append(f'<td{cls} style="background:rgba(41,128,185,{(raw - low) / span:.2f})" title="{raw:.3f}"></td>')
        rows.append(f'<tr><th class="tgt">{html.escape(doc[i].text)}</th>{"".join(cells)}</tr>')
    note = ""
    if n_t < len(doc) or n_s < len(source):
        note = f"<p>Showing the first {n_t} of {len(doc)} target and {n_s} of {len(source)} source tokens.</p>"
    head = f"<h3>{html.escape(title)}</h3>" if title else ""
    return f'<div class="clinalign">{_STYLE}{head}{note}<table>{"".join(rows)}</table></div>'


def render_page(fragments, title: str = "spacy-clinalign") -> str:
    """Wrap fragments into a standalone HTML page."""
    body = "\n".join(fragments)
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>{body}</body></html>"


_COLOURS = ["#f9c74f", "#90be6d", "#f8961e", "#43aa8b", "#f94144", "#577590", "#b5838d", "#9c89b8"]


def _colour(label: str, palette: dict) -> str:
    if label not in palette:
        palette[label] = _COLOURS[len(palette) % len(_COLOURS)]
    return palette[label]


def render_spans(doc: Doc, spans: Iterable, palette: dict) -> str:
    """The Doc's text with the spans highlighted (overlaps: the earlier, longer span wins)."""
    chosen, taken = [], set()
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if not taken & set(range(span.start, span.end)):
            chosen.append(span)
            taken.update(range(span.start, span.end))
    out, pos = [], 0
    for span in chosen:
        out.append(html.escape(doc.text[pos:span.start_char]))
        score = getattr(span._, "score", None) if hasattr(span._, "score") else None
        tip = f' title="score {score:.2f}"' if isinstance(score, float) else ""
        out.append(f'<mark style="background:{_colour(span.label_, palette)}"{tip}>{html.escape(span.text)}'
                   f'<span class="lbl">{html.escape(span.label_)}</span></mark>')
        pos = span.end_char
    out.append(html.escape(doc.text[pos:]))
    return "".join(out)


def render(doc: Doc, title: Optional[str] = None, spans_key: str = "projected", source_spans_key: Optional[str] = None,
           page: bool = True, jupyter: Optional[bool] = None, max_tokens: int = 300):
    """HTML of an aligned pair: source text with its spans, target text with the projected spans, then
    the heatmap. Displayed inline in Jupyter (like displaCy), otherwise returned as a string."""
    from spacy.util import is_in_jupyter

    source = doc._.source
    if source is None:
        raise ValueError("render: the Doc has no `_.source`; build it with make_pair and run the pipeline")
    palette: dict = {}
    src_spans = source.ents if source_spans_key is None and "source" not in source.spans else source.spans[source_spans_key or "source"]
    tgt_spans = doc.spans[spans_key] if spans_key in doc.spans else doc.ents
    parts = [f'<div class="clinalign">{_STYLE}']
    if title:
        parts.append(f"<h3>{html.escape(title)}</h3>")
    parts.append(f'<p><b>Source</b></p><div class="text">{render_spans(source, src_spans, palette)}</div>')
    parts.append(f'<p><b>Target</b></p><div class="text">{render_spans(doc, tgt_spans, palette)}</div>')
    parts.append("</div>")
    if doc._.alignment is not None:
        parts.append(render_alignment(doc, max_tokens=max_tokens))
    fragment = "".join(parts)
    if jupyter if jupyter is not None else is_in_jupyter():
        from IPython.display import HTML, display

        display(HTML(fragment))
        return None
    return render_page([fragment]) if page else fragment
