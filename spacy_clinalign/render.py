"""HTML views of an aligned pair: the alignment heatmap (target rows x source columns) with links marked."""
import html
from typing import Optional

import numpy
from spacy.tokens import Doc

_STYLE = """
<style>
.clinalign table{border-collapse:collapse;font:12px sans-serif}
.clinalign td{width:18px;height:18px;border:1px solid #eee;text-align:center}
.clinalign td.link{outline:2px solid #c0392b}
.clinalign th.src{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;padding:2px}
.clinalign th.tgt{text-align:right;font-weight:normal;padding-right:6px}
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
    rows = ["<tr><th></th>" + "".join(f'<th class="src">{html.escape(t.text)}</th>' for t in source[:n_s]) + "</tr>"]
    for i in range(n_t):
        cells = []
        for j in range(n_s):
            v = float(max(0.0, min(1.0, matrix[i, j])))
            cls = ' class="link"' if (i, j) in linked else ""
            cells.append(f'<td{cls} style="background:rgba(41,128,185,{v:.2f})" title="{v:.3f}"></td>')
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
