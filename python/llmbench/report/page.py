"""The report's HTML: tables, sections and the page around them, in one file.

Every number in a table carries its exact value in `data-value` (what the CSV holds) beside
the rounded text a reader sees, so a test can hold the page to `metrics_summary.csv`. The
page loads nothing: styles are here, the charts' script is Bokeh's, inlined, and the fonts
are the reader's own.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _deps

CSS = """
:root { --fg: #1d2330; --muted: #5b6472; --line: #d9dde3; --bg: #ffffff; --band: #f4f6f8;
        --bad: #b42318; --warn: #b54708; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: var(--bg); }
header { padding: 20px 28px 12px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .meta { color: var(--muted); }
nav { position: sticky; top: 0; z-index: 10; background: var(--bg); padding: 6px 28px;
      border-bottom: 1px solid var(--line); font-size: 13px; }
nav a { margin-right: 14px; color: var(--fg); text-decoration: none; }
nav a:hover { text-decoration: underline; }
main { padding: 0 28px 40px; max-width: 1400px; }
section { padding-top: 8px; }
h2 { font-size: 18px; margin: 22px 0 8px; padding-top: 6px; border-top: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 6px; }
p.note { color: var(--muted); margin: 4px 0 10px; }
.banner { padding: 10px 14px; margin: 12px 0; border-radius: 6px; border: 1px solid; }
.banner.bad { color: var(--bad); border-color: var(--bad); background: #fef3f2; }
.banner.warn { color: var(--warn); border-color: var(--warn); background: #fffaeb; }
.table-wrap { overflow-x: auto; margin: 6px 0 12px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: right;
         vertical-align: top; white-space: nowrap; }
th { background: var(--band); position: sticky; top: 0; }
td.text, th.text { text-align: left; white-space: normal; max-width: 42em; }
td .ci { display: block; color: var(--muted); font-size: 11px; }
tr:hover td { background: #fafbfc; }
tr.resolved td { background: #f0f9f4; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 14px; }
.chart { min-height: 340px; border: 1px solid var(--line); border-radius: 6px; padding: 4px; }
details { margin: 6px 0 12px; }
summary { cursor: pointer; color: var(--muted); }
pre { background: var(--band); padding: 10px; overflow-x: auto; font-size: 12px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; }
@media print { nav { display: none; } .chart { break-inside: avoid; } }
"""


@dataclass
class Section:
    """One part of the page: its anchor, heading and body (HTML), then the charts named
    by `charts` (keys of the divs Bokeh makes once every chart is known), then `tail`."""

    id: str
    title: str
    body: str
    charts: list[str] = field(default_factory=list)
    tail: str = ""


def esc(value: Any) -> str:
    """Text for HTML."""
    return html.escape(str(value), quote=True)


def is_missing(v: Any) -> bool:
    """None, NaN or pandas' missing values."""
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return math.isnan(float(v))
    try:
        return bool(_deps.pandas().isna(v)) if np.ndim(v) == 0 else False
    except (TypeError, ValueError):
        return False


def exact(v: Any) -> str:
    """A value as the CSV holds it: floats to the last digit (`repr`), integers and
    booleans plainly, missing values empty."""
    if is_missing(v):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def shown(v: Any) -> str:
    """A value as a reader wants it: thousands separated, 2 decimals down to 1, then
    three significant digits; "–" for a missing one."""
    if is_missing(v):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isinf(f):
            return "∞" if f > 0 else "−∞"
        if f == int(f) and abs(f) < 1e15:
            return f"{int(f):,}"
        a = abs(f)
        if a >= 1000:
            return f"{f:,.0f}"
        if a >= 100:
            return f"{f:.1f}"
        if a >= 1:
            return f"{f:.2f}"
        return f"{f:.3g}"
    return str(v)


def cell(v: Any, column: str, ci: tuple[Any, Any] | None = None) -> str:
    """One table cell: the shown value, its exact one in `data-value`, and an interval
    under it where there is one."""
    numeric = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)
    )
    klass = "" if numeric or is_missing(v) else ' class="text"'
    extra = ""
    if ci is not None and not (is_missing(ci[0]) or is_missing(ci[1])):
        extra = (
            f'<span class="ci" data-ci-low="{esc(exact(ci[0]))}" '
            f'data-ci-high="{esc(exact(ci[1]))}">[{esc(shown(ci[0]))}, {esc(shown(ci[1]))}]</span>'
        )
    return (
        f'<td{klass} data-col="{esc(column)}" data-value="{esc(exact(v))}">'
        f"{esc(shown(v))}{extra}</td>"
    )


def table(
    frame: Any,
    columns: list[str] | None = None,
    *,
    table_id: str = "",
    headers: dict[str, str] | None = None,
    intervals: bool = False,
    row_class: Any = None,
) -> str:
    """A DataFrame as an HTML table; with `intervals`, each column with `_ci_low` and
    `_ci_high` siblings shows its interval under the value. `row_class(row)` may name a
    CSS class per row."""
    columns = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    headers = headers or {}
    head = "".join(
        f'<th class="{"text" if frame[c].dtype == object else ""}" data-col="{esc(c)}">'
        f"{esc(headers.get(c, c))}</th>"
        for c in columns
    )
    rows = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        cells = []
        for c in columns:
            ci = None
            if intervals and f"{c}_ci_low" in row:
                ci = (row[f"{c}_ci_low"], row[f"{c}_ci_high"])
            cells.append(cell(row[c], c, ci))
        klass = f' class="{esc(row_class(row))}"' if row_class else ""
        rows.append(f'<tr data-row="{i}"{klass}>{"".join(cells)}</tr>')
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (
        f'<div class="table-wrap"><table{ident}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def definitions(pairs: list[tuple[str, Any]]) -> str:
    """Label: value pairs as a definition list (missing values left out)."""
    items = "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if not is_missing(v) and v != ""
    )
    return f'<dl class="kv">{items}</dl>'


def json_block(title: str, value: Any) -> str:
    """A collapsed block of JSON (server settings and the like)."""
    text = json.dumps(value, indent=1, sort_keys=True, default=str)
    return f"<details><summary>{esc(title)}</summary><pre>{esc(text)}</pre></details>"


def chart_grid(divs: list[str]) -> str:
    """Charts side by side, wrapping on narrow screens."""
    return (
        '<div class="charts">' + "".join(f'<div class="chart">{d}</div>' for d in divs) + "</div>"
    )


def render(
    title: str,
    header: str,
    sections: list[Section],
    divs: dict[str, str],
    scripts: str,
    bokeh_js: str,
) -> str:
    """The whole page; `divs` are the charts' places, by key, and `scripts` what fills
    them (Bokeh's `components`)."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}'
        + (chart_grid([divs[k] for k in s.charts]) if s.charts else "")
        + f"{s.tail}</section>"
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Nothing may be fetched: no network at all, whatever the page holds.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        'img-src data: blob:; font-src data:">'
        f"<title>{esc(title)}</title><style>{CSS}</style>{bokeh_js}</head>"
        f"<body><header>{header}</header><nav>{nav}</nav><main>{body}</main>{scripts}"
        "</body></html>\n"
    )
