"""The report page's VMEvalKit section: success rates with their 95% intervals, a chart per
domain (inline SVG, no script needed) and the full table."""

from __future__ import annotations

from html import escape

import pandas as pd

from evalpipe.sources.vmeval.rates import ALL_DOMAINS

COLUMNS = [
    "evaluator",
    "model",
    "domain",
    "n_scored",
    "n_skipped",
    "successes",
    "success_rate",
    "ci_low",
    "ci_high",
    "upstream_rate",
]
NUMERIC = frozenset(COLUMNS[3:])


def success_rates_section(rates: pd.DataFrame) -> str:
    """A `<section id="vmeval">` with one chart per domain (overall first), or "" when there are
    no rates (no VMEvalKit data ingested)."""
    if rates.empty:
        return ""
    domains = [ALL_DOMAINS, *sorted(d for d in rates["domain"].unique() if d != ALL_DOMAINS)]
    charts = "".join(
        f"<h3>{escape('All domains' if d == ALL_DOMAINS else d)}</h3>"
        + _chart(d, rates[rates["domain"] == d])
        for d in domains
    )
    intro = (
        "Success is a score of 4 or more. A rate is successes over the evaluations that were "
        "scored; skipped or failed evaluations are counted apart (n_skipped), whereas the "
        "upstream plots count them as failures (upstream_rate). Bars show the rate, whiskers "
        "the 95% Wilson interval. Only data roots whose status is ok are counted."
    )
    return (
        f'<section id="vmeval"><h2>VMEvalKit success rates</h2><p class="caption">'
        f"{escape(intro)}</p>{charts}{_table(rates)}</section>"
    )


def _chart(domain: str, rows: pd.DataFrame) -> str:
    rows = rows.sort_values(["evaluator", "model"])
    label_w, bar_w, row_h = 260, 360, 22
    width, height = label_w + bar_w + 120, row_h * len(rows) + 8
    parts = []
    for i, row in enumerate(rows.to_dict("records")):
        y = 4 + i * row_h
        name = f"{row['evaluator']} · {row['model']}"
        rate = row["success_rate"]
        parts.append(
            f"<g><title>{escape(name)}: {escape(_percent(rate))} of {row['n_scored']} scored"
            f'</title><text x="{label_w - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(name)}</text>"
        )
        if pd.isna(rate):
            parts.append(f'<text x="{label_w + 6}" y="{y + 15}">nothing scored</text></g>')
            continue
        low, high = (label_w + bar_w * row[k] for k in ("ci_low", "ci_high"))
        parts.append(
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{bar_w * rate:.1f}" '
            f'height="{row_h - 6}" data-rate="{rate:.6f}"></rect>'
            f'<line class="axis" x1="{low:.1f}" y1="{y + 11}" x2="{high:.1f}" y2="{y + 11}">'
            f'</line><text x="{label_w + bar_w + 6}" y="{y + 15}">'
            f"{escape(_percent(rate))} (n={row['n_scored']})</text></g>"
        )
    label = escape(f"success rate per evaluator and model, {domain}")
    return (
        f'<svg class="chart" role="img" aria-label="{label}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><line class="axis" x1="{label_w}" y1="0" '
        f'x2="{label_w}" y2="{height}"></line>{"".join(parts)}</svg>'
    )


def _percent(value: object) -> str:
    return "n/a" if pd.isna(value) else f"{100 * float(value):.1f}%"


def _table(rates: pd.DataFrame) -> str:
    """The full table, sortable by the page's script (numbers by value, missing ones last)."""
    head = "".join(
        f'<th data-type="{"number" if c in NUMERIC else "text"}"><button type="button">'
        f"{escape(c)}</button></th>"
        for c in COLUMNS
    )
    body = "".join(
        "<tr>" + "".join(_td(row[c], c in NUMERIC) for c in COLUMNS) + "</tr>"
        for row in rates.to_dict("records")
    )
    return (
        f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _td(value: object, numeric: bool) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return '<td data-sort=""></td>'
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    if numeric:
        return f'<td class="num" data-sort="{float(value)!r}">{escape(text)}</td>'
    return f"<td>{escape(text)}</td>"
