"""A self-contained ``report.html``: inline CSS, images as data URIs, nothing fetched."""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from slimtorch.measure.table import columns, is_lm, rows

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}th{background:#f4f6f8}
td:first-child,th:first-child{text-align:left}.figs{display:flex;flex-wrap:wrap;gap:1rem}
.figs figure{margin:0}figcaption{font-size:.8rem;color:#555}img{max-width:100%;border:1px solid #eee}
code,pre{background:#f6f8fa;padding:.1rem .3rem;border-radius:3px;font-size:.85rem}
pre{padding:.6rem;overflow-x:auto}
"""


def _table(header: list[str], body: list[list[Any]]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def _img(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = html.escape(caption)
    return f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'


def _lm_note(results: dict[str, Any]) -> str:
    from slimtorch.report.build import _note

    return f"<p class='sub'>{html.escape(_note(results))}</p>"


def render_html(
    results: dict[str, Any],
    figures: list[tuple[str, bytes]],
    extra_tables: list[tuple[str, list[str], list[list[Any]]]] = (),
) -> str:
    """The report page. ``figures`` are (caption, PNG bytes); ``extra_tables`` (title, header, rows)."""
    recs = results["records"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>slimtorch report — {html.escape(results['recipe'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(results['recipe'])}</h1>",
        f"<p class='sub'>{html.escape(results.get('description', ''))}</p>",
        "<h2>Stages</h2>",
        _table(list(columns(recs)), rows(recs)),
        _lm_note(results)
        if is_lm(recs)
        else "<p class='sub'>Size: the stage's artifact if it wrote one (e.g. <code>.slim</code>), else the "
        "sparse-aware model file. Ratio: first row's dense fp32 size / this size. Latency: median ms, eager PyTorch, "
        "fixed threads; each stage is timed right after it ran, so on a busy machine rows are not comparable: "
        "speed-ups are claimed only from the side-by-side runs in <code>bench/</code>.</p>",
    ]
    for title, header, body in extra_tables:
        parts += [f"<h2>{html.escape(title)}</h2>", _table(header, body)]
    if figures:
        parts.append("<h2>Figures</h2><div class='figs'>")
        parts += [_img(png, cap) for cap, png in figures]
        parts.append("</div>")
    env = results.get("environment")
    if env:
        parts += ["<h2>Environment</h2>", f"<pre>{html.escape(json.dumps(env, indent=1))}</pre>"]
    parts.append("</body></html>")
    return "\n".join(parts)
