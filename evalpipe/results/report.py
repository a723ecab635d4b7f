"""The leaderboard report: one self-contained HTML page under ``$EVALPIPE_HOME/reports/``.

The machines that open it have no internet, so everything is inline: CSS, a small vanilla
script that sorts tables, and the per-task bar charts drawn here as SVG (they render even
with scripts off). A Content-Security-Policy allows no fetch at all and only *our* script and
style, by hash, so a model name that slipped through escaping still could not run.

A "model" is a (model, revision) pair, as on the leaderboards (`evalpipe.results.leaderboard`).
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from evalpipe.core.atomic import atomic_path
from evalpipe.results.leaderboard import (
    BENCHMARK_COLUMNS,
    ENTRY,
    OVERALL_COLUMNS,
    RUNS_COLUMNS,
    STANDINGS,
    TASK_COLUMNS,
)

CHART_MAX_BARS = 40
_MISSING = "—"
_NO_ROWS = '<p class="empty">No rows.</p>'
_TASK_ROW_COLUMNS = [c for c in TASK_COLUMNS if c != "task_name"]

Row = Mapping[str, object]
Link = Callable[[Row], str]

_CSS = """
:root { color-scheme: light dark; --fg: #1d2330; --muted: #5d6677; --bg: #ffffff;
  --panel: #f5f7fa; --line: #d9dee7; --accent: #2563eb; --bar: #3b82f6; --hl: #fff7d6; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ef; --muted: #9aa3b2;
  --bg: #14171c; --panel: #1c2027; --line: #2e343e; --accent: #7aa7ff; --bar: #5b8def;
  --hl: #3a3320; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
header, main { max-width: 1280px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 20px; }
h1 { margin: 0 0 4px; font-size: 24px; }
h2 { margin: 32px 0 10px; font-size: 20px; border-bottom: 2px solid var(--line); }
h3 { margin: 0 0 8px; font-size: 16px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.meta { color: var(--muted); margin: 0; }
.counts { display: flex; flex-wrap: wrap; gap: 8px; margin: 10px 0; padding: 0; }
.counts li { list-style: none; background: var(--panel); border: 1px solid var(--line);
  border-radius: 6px; padding: 4px 10px; }
.counts b { font-size: 16px; }
.notes { margin: 6px 0 0; padding-left: 18px; color: var(--muted); }
nav { position: sticky; top: 0; z-index: 1; background: var(--bg);
  border-bottom: 1px solid var(--line); margin-top: 12px; }
nav ul { max-width: 1280px; margin: 0 auto; padding: 8px 20px; display: flex; gap: 18px; }
nav li { list-style: none; }
section, .card { scroll-margin-top: 48px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 14px; margin: 14px 0; }
.card:target { background: var(--hl); }
/* Hundreds of cards on a big board: lay out only those near the viewport. */
.card { content-visibility: auto; contain-intrinsic-size: auto 400px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 7px; border-bottom: 1px solid var(--line); text-align: left;
  white-space: nowrap; font-size: 13px; }
td { max-width: 28em; overflow: hidden; text-overflow: ellipsis; }
th[data-type="number"], td.num { text-align: right; }
thead th { background: var(--panel); }
th button { all: unset; cursor: pointer; font-weight: 600; }
th button:focus-visible { outline: 2px solid var(--accent); }
th button::after { content: "\\2195"; margin-left: 4px; opacity: 0.35; }
th[aria-sort="ascending"] button::after { content: "\\25B2"; opacity: 1; }
th[aria-sort="descending"] button::after { content: "\\25BC"; opacity: 1; }
tbody tr:nth-child(even) { background: color-mix(in srgb, var(--panel) 60%, transparent); }
.empty { color: var(--muted); font-style: italic; }
.chart { display: block; max-width: 100%; height: auto; margin: 4px 0 10px; }
.chart text { font: 12px system-ui, sans-serif; fill: var(--fg); }
.chart .bar { fill: var(--bar); }
.chart .axis { stroke: var(--line); }
.caption { color: var(--muted); margin: 0 0 6px; }
"""

# Sorts every table.sortable by the clicked header: numbers by value, text by code point (as
# Python's sorted does), missing cells last either way; a second click reverses.
_JS = """
"use strict";
(() => {
  const keyOf = (row, i, numeric) => {
    const cell = row.cells[i];
    const raw = cell.dataset.sort ?? cell.textContent;
    if (raw === "") return null;
    return numeric ? Number(raw) : raw;
  };
  const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  const sortBy = (table, th) => {
    const i = th.cellIndex;
    const numeric = th.dataset.type === "number";
    const order = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    const sign = order === "ascending" ? 1 : -1;
    const body = table.tBodies[0];
    const keyed = Array.from(body.rows, (row) => [keyOf(row, i, numeric), row]);
    keyed.sort(([a], [b]) =>
      a === null ? (b === null ? 0 : 1) : b === null ? -1 : sign * compare(a, b));
    const fragment = document.createDocumentFragment();
    for (const [, row] of keyed) fragment.append(row);
    body.append(fragment);
    for (const other of th.parentElement.cells) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", order);
  };
  for (const table of document.querySelectorAll("table.sortable")) {
    for (const th of table.tHead.rows[0].cells) {
      th.addEventListener("click", () => sortBy(table, th));
    }
  }
})();
"""


def render_report(
    overall: pd.DataFrame,
    benchmarks: pd.DataFrame,
    tasks: pd.DataFrame,
    *,
    generated_at: datetime,
    runs: pd.DataFrame | None = None,
    title: str = "evalpipe leaderboard",
    notes: Sequence[str] = (),
    sections: Sequence[str] = (),
) -> str:
    """The whole report as one HTML string, from the leaderboard tables.

    ``overall`` has `OVERALL_COLUMNS`, ``benchmarks`` `BENCHMARK_COLUMNS` and ``tasks``
    `TASK_COLUMNS` (the ``.table`` of `leaderboard_benchmarks` / `leaderboard_tasks`).
    ``runs`` (`RUNS_COLUMNS`, the `leaderboard_runs` table) gives the run counts of the header
    and the Runs section: which runs are ranked, superseded and by what, or left out and why.
    ``notes`` are shown under the counts. ``sections`` are other sources' sections
    (complete, escaped HTML), appended to the page.
    """
    runs = pd.DataFrame(columns=RUNS_COLUMNS) if runs is None else runs
    task_ids = _anchors("task", ((t, t) for t in tasks["task_name"].unique()))
    model_ids = _anchors("model", _entries(overall, benchmarks, tasks))
    links = _Links(task_ids, model_ids)
    body = "\n".join(
        [
            _header(title, generated_at, notes, overall, benchmarks, tasks, runs),
            _nav(),
            "<main>",
            _overall_section(overall, links),
            _benchmarks_section(benchmarks, links),
            _tasks_section(tasks, links),
            _models_section(overall, benchmarks, tasks, links),
            _runs_section(runs),
            *sections,
            "</main>",
        ]
    )
    return _page(title, body)


def write_report(directory: Path, html: str, name: str = "leaderboard.html") -> Path:
    """Write ``html`` to ``directory/name`` atomically, so a reader never sees half a page."""
    with atomic_path(directory / name) as tmp:
        tmp.write_text(html, encoding="utf-8")
        os.chmod(tmp, 0o644)  # readable by a web server serving the reports directory
    return directory / name


class _Links:
    """Anchor ids of tasks and models, so any table can link to their sections."""

    def __init__(self, task_ids: dict[Hashable, str], model_ids: dict[Hashable, str]) -> None:
        self.task_ids = task_ids
        self.model_ids = model_ids

    def task(self, row: Row) -> str:
        return "#" + self.task_ids[row["task_name"]]

    def model(self, row: Row) -> str:
        return "#" + self.model_ids[_entry_key(row["model"], row["revision"])]


def _page(title: str, body: str) -> str:
    """The document shell, with a CSP that only lets this page's own script and style run."""
    policy = (
        "default-src 'none'; img-src data:; "
        f"style-src '{_sha256(_CSS)}'; script-src '{_sha256(_JS)}'"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{escape(policy)}">
<link rel="icon" href="data:,">
<title>{escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
{body}
<script>{_JS}</script>
</body>
</html>
"""


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _header(
    title: str,
    generated_at: datetime,
    notes: Sequence[str],
    overall: pd.DataFrame,
    benchmarks: pd.DataFrame,
    tasks: pd.DataFrame,
    runs: pd.DataFrame,
) -> str:
    """Title, when it was built, how much it covers, and the caveats a reader should know.

    Every run count comes from the one runs table, so the parts add up to the whole."""
    standing = runs["standing"].value_counts()
    incomplete = int((~overall["complete"].astype(bool)).sum()) if "complete" in overall else 0
    counts = [
        ("runs", len(runs), "run", "runs"),
        *((s.replace(" ", "-"), int(standing[s]), s, s) for s in STANDINGS if s in standing),
        ("models", len(_entries(overall, benchmarks, tasks)), "model", "models"),
        *([("incomplete", incomplete, "incomplete model", "incomplete models")] * (incomplete > 0)),
        ("tasks", tasks["task_name"].nunique(), "task", "tasks"),
        ("benchmarks", benchmarks["task_name"].nunique(), "benchmark", "benchmarks"),
    ]
    items = "".join(
        f'<li><b id="count-{key}">{n}</b> {one if n == 1 else many}</li>'
        for key, n, one, many in counts
    )
    note_items = "".join(f"<li>{escape(str(note))}</li>" for note in notes)
    stamp = generated_at.isoformat(sep=" ", timespec="seconds")
    return (
        f"<header><h1>{escape(title)}</h1>"
        f'<p class="meta">Generated <time datetime="{escape(generated_at.isoformat())}">'
        f"{escape(stamp)}</time>. A model is a (model, revision) pair; higher scores are "
        "better. Click a column header to sort.</p>"
        f'<ul class="counts">{items}</ul>'
        + (f'<ul class="notes" id="notes">{note_items}</ul>' if notes else "")
        + "</header>"
    )


def _nav() -> str:
    targets = {
        "overall": "Overall",
        "benchmarks": "Benchmarks",
        "tasks": "Tasks",
        "models": "Models",
        "runs": "Runs",
    }
    items = "".join(f'<li><a href="#{k}">{v}</a></li>' for k, v in targets.items())
    return f'<nav aria-label="Sections"><ul>{items}</ul></nav>'


def _overall_section(overall: pd.DataFrame, links: _Links) -> str:
    table = _table(overall, OVERALL_COLUMNS, {"model": links.model}, sorted_by="rank")
    return _section(
        "overall",
        "Overall",
        "Over the declared task set: models with a score on every task of it (complete) "
        "first, then incomplete ones; each ranked by mean win rate against the complete "
        "models, then mean score over its own tasks of the set.",
        table,
    )


def _benchmarks_section(benchmarks: pd.DataFrame, links: _Links) -> str:
    columns = [c for c in BENCHMARK_COLUMNS if c in benchmarks]
    table = _table(benchmarks, columns, {"model": links.model}, sorted_by="task_name")
    return _section(
        "benchmarks",
        "Benchmarks",
        "Aggregate scores, one row per model. An aggregate missing members of its suite "
        "(complete false) ranks after every complete one.",
        table,
    )


def _runs_section(runs: pd.DataFrame) -> str:
    table = _table(runs, RUNS_COLUMNS, {}, sorted_by="run_id")
    return _section(
        "runs",
        "Runs",
        "Where each run stands. For a model and task, the result with the newest evaluated_at "
        "wins (then the greatest run_id); the older one is superseded by it.",
        table,
    )


def _tasks_section(tasks: pd.DataFrame, links: _Links) -> str:
    """An index of tasks linking to one card per task: its bar chart, then its table."""
    index = _task_index(tasks)
    index_table = _table(index, list(index), {"task_name": links.task}, sorted_by="task_name")
    cards = [
        _task_card(name, rows, links.task_ids[name], links)
        for name, rows in tasks.groupby("task_name", sort=True)
    ]
    intro = "Each task links to its chart and table."
    return _section("tasks", "Tasks", intro, index_table, *cards)


def _task_index(tasks: pd.DataFrame) -> pd.DataFrame:
    """One row per task: how many models, and the best of them."""
    best = tasks.sort_values(["task_name", "rank"], na_position="last", kind="stable")
    best = best.drop_duplicates("task_name").set_index("task_name")
    return pd.DataFrame(
        {
            "task_name": best.index,
            "models": tasks.groupby("task_name").size().reindex(best.index).to_numpy(),
            "best_model": list(map(_entry_label, best["model"], best["revision"])),
            "best_score": best["primary_score"].to_numpy(),
            "primary_metric": best["primary_metric"].to_numpy(),
        }
    )


def _task_card(name: str, rows: pd.DataFrame, anchor: str, links: _Links) -> str:
    metric = ", ".join(sorted({str(m) for m in rows["primary_metric"].dropna()}))
    return (
        f'<div class="card task" id="{anchor}">'
        f"<h3>{escape(name)}</h3>"
        f'<p class="caption">{escape(metric or "primary score")} per model. '
        '<a href="#tasks">All tasks</a></p>'
        f"{_bar_chart(name, rows)}"
        f"{_table(rows, _TASK_ROW_COLUMNS, {'model': links.model}, sorted_by='rank')}"
        "</div>"
    )


def _models_section(
    overall: pd.DataFrame, benchmarks: pd.DataFrame, tasks: pd.DataFrame, links: _Links
) -> str:
    """One card per model: its overall standing and every score it has, linked to the tasks."""
    rows = pd.concat([benchmarks.assign(board="benchmark"), tasks.assign(board="task")])
    positions = defaultdict(list)
    for i, key in enumerate(zip(rows["model"], rows["revision"], strict=True)):
        positions[_entry_key(*key)].append(i)
    standing = {_entry_key(r["model"], r["revision"]): r for r in overall.to_dict("records")}
    columns = ["board", "task_name", "rank", "primary_score", "primary_metric", "run_id"]
    cards = []
    for key, anchor in links.model_ids.items():
        model, revision = key
        summary = _standing(standing.get(key))
        mine = rows.iloc[positions[key]]
        table = _table(mine, columns, {"task_name": _board_link(links)}, sorted_by="board")
        cards.append(
            f'<div class="card model" id="{anchor}">'
            f"<h3>{escape(str(model))} <small>@ {escape(_text(revision))}</small></h3>"
            f'<p class="caption">{summary} <a href="#overall">Overall</a></p>{table}</div>'
        )
    return _section("models", "Models", "Every score of each model.", *cards or [_NO_ROWS])


def _board_link(links: _Links) -> Link:
    """Tasks link to their card; benchmarks to the benchmark table."""
    return lambda row: links.task(row) if row["board"] == "task" else "#benchmarks"


def _standing(row: Row | None) -> str:
    if row is None:
        return "Not on the overall board (no task scores)."
    return escape(
        f"Overall rank {_text(row['rank'])}, mean score {_text(row['mean_score'])}, "
        f"mean win rate {_text(row['mean_win_rate'])}"
        + ("." if row.get("complete", True) else ", incomplete (missing declared tasks).")
    )


def _section(anchor: str, heading: str, intro: str, *parts: str) -> str:
    return (
        f'<section id="{anchor}"><h2>{escape(heading)}</h2>'
        f'<p class="caption">{escape(intro)}</p>{"".join(parts)}</section>'
    )


def _table(
    frame: pd.DataFrame,
    columns: list[str],
    links: dict[str, Link],
    *,
    sorted_by: str | None = None,
) -> str:
    """A sortable table, or a "no rows" message. Numeric cells carry their exact value."""
    if frame.empty:
        return _NO_ROWS
    numeric = {c: _is_numeric(frame[c]) for c in columns}
    head = "".join(_th(c, numeric[c], c == sorted_by) for c in columns)
    body = "".join(
        "<tr>" + "".join(_td(row, c, numeric[c], links.get(c)) for c in columns) + "</tr>"
        for row in frame.to_dict("records")
    )
    return (
        '<div class="scroll"><table class="sortable">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _th(column: str, numeric: bool, sorted_here: bool) -> str:
    kind = "number" if numeric else "text"
    sort = ' aria-sort="ascending"' if sorted_here else ""
    label = escape(column)
    return f'<th data-type="{kind}"{sort}><button type="button">{label}</button></th>'


def _td(row: Row, column: str, numeric: bool, link: Link | None) -> str:
    value = row[column]
    text = escape(_text(value))
    if _is_missing(value):
        return f'<td data-sort="">{text}</td>'
    if link is not None:
        text = f'<a href="{escape(link(row))}">{text}</a>'
    if numeric:
        return f'<td class="num" data-sort="{_number_key(value)}">{text}</td>'
    return f"<td>{text}</td>"


def _bar_chart(task: str, rows: pd.DataFrame) -> str:
    """Horizontal bars of primary_score, best first; a missing score gets a label, no bar."""
    rows = rows.sort_values(["rank", *ENTRY], na_position="last", kind="stable")
    shown = rows.head(CHART_MAX_BARS)
    scores = pd.to_numeric(rows["primary_score"], errors="coerce")
    top = max(1.0, float(scores.max())) if scores.notna().any() else 1.0
    label_w, bar_w, row_h = 240, 420, 22
    width, height = label_w + bar_w + 70, row_h * len(shown) + 8
    parts = []
    for i, row in enumerate(shown.to_dict("records")):
        y = 4 + i * row_h
        name = _entry_label(row["model"], row["revision"])
        score = row["primary_score"]
        parts.append(
            f'<g class="row"><title>{escape(name)}: {escape(_text(score))}</title>'
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(_shorten(name, 34))}</text>"
        )
        if not _is_missing(score):
            w = bar_w * max(0.0, float(score)) / top
            parts.append(
                f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}"'
                f' data-score="{_number_key(score)}"></rect>'
                f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{escape(_text(score))}</text>'
            )
        else:
            parts.append(f'<text x="{label_w + 6}" y="{y + 15}">no score</text>')
        parts.append("</g>")
    caption = ""
    if len(rows) > len(shown):
        caption = (
            f'<p class="caption">Top {len(shown)} of {len(rows)} models; '
            "all are in the table below.</p>"
        )
    label = escape(f"primary_score per model on {task}")
    return (
        f'<svg class="chart" role="img" aria-label="{label}" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}">'
        f'<line class="axis" x1="{label_w}" y1="0" x2="{label_w}" y2="{height}"></line>'
        f"{''.join(parts)}</svg>{caption}"
    )


def _entries(*frames: pd.DataFrame) -> list[tuple[Hashable, str]]:
    """Distinct (model, revision) keys in first-seen order, with text for their anchors."""
    keys = dict.fromkeys(
        _entry_key(m, r) for f in frames for m, r in zip(f["model"], f["revision"], strict=True)
    )
    return [(key, _entry_label(*key)) for key in keys]


def _entry_key(model: object, revision: object) -> tuple[object, object]:
    """Hashable key of a model; a missing revision (None, NaN, NA) is always None."""
    return (model, None if _is_missing(revision) else revision)


def _entry_label(model: object, revision: object) -> str:
    return f"{model} @ {_text(revision)}"


def _anchors(prefix: str, items: Iterable[tuple[Hashable, str]]) -> dict[Hashable, str]:
    """A unique, URL-safe id per key: names differing only in punctuation get a suffix."""
    ids: dict[Hashable, str] = {}
    used: set[str] = set()
    for key, text in items:
        if key in ids:
            continue
        base = f"{prefix}-{re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-') or 'x'}"
        anchor, n = base, 1
        while anchor in used:
            n += 1
            anchor = f"{base}-{n}"
        ids[key] = anchor
        used.add(anchor)
    return ids


def _is_missing(value: object) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _text(value: object) -> str:
    """What a person reads: floats to 4 decimals, timestamps to the second, missing as a dash."""
    if _is_missing(value):
        return _MISSING
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def _number_key(value: object) -> str:
    """The exact value for sorting, in a form JavaScript's Number() reads (incl. infinities)."""
    number = float(value)  # type: ignore[arg-type]
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return repr(number)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
