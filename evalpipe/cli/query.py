"""Read-only questions on the warehouse: `sql`, `runs`, `show`, `leaderboard`, `compare`,
`significance`, `export`, `stats`.

Each command is SQL (values always as `?` parameters) plus a call into `evalpipe.results.comparison` or
`evalpipe.results.stats`; every one speaks `--format table|markdown|csv|json` through
`evalpipe.core.output.render`. Unknown names exit 2 with the closest known ones.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from evalpipe.core.atomic import atomic_path
from evalpipe.core.config import load_settings
from evalpipe.core.output import FORMATS, render
from evalpipe.results import comparison
from evalpipe.results.suites import load_suites
from evalpipe.sources.lmeval.groups import group_suites
from evalpipe.storage.lake import Lake
from evalpipe.storage.warehouse import ReadOnlyViolation, connect_read_only, query

RUNS_SQL = r"""
SELECT run_id, model, revision, status, n_tasks, n_aggregates, ingested_at, archived_to FROM runs
WHERE ?::VARCHAR IS NULL OR model ILIKE ? ESCAPE '\' ORDER BY run_id
"""
RUNS_STANDING_SQL = r"""
SELECT r.run_id, r.model, r.revision, r.status, b.standing, b.superseded_by, b.reason,
       r.n_tasks, r.n_aggregates, r.ingested_at, r.archived_to
FROM runs AS r LEFT JOIN leaderboard_runs AS b USING (run_id)
WHERE ?::VARCHAR IS NULL OR r.model ILIKE ? ESCAPE '\' ORDER BY r.run_id
"""
HAS_VIEW_SQL = "SELECT count(*) FROM duckdb_views() WHERE view_name = ?"
RUN_SQL = "SELECT * FROM runs WHERE run_id = ?"
SCORES_SQL = """
SELECT task_name, is_aggregate, primary_metric, primary_score, num_instances, evaluated_at
FROM task_results WHERE run_id = ? ORDER BY is_aggregate DESC, task_name
"""
FAILED_CHECKS_SQL = """
SELECT asset, "check", severity, blocking, description FROM run_checks
WHERE run_id = ? AND NOT passed ORDER BY blocking DESC, asset, "check"
"""
TOP = "(?::BIGINT IS NULL OR rank <= ?)"
BOARD_SQL = {
    "overall": f"SELECT * FROM leaderboard_overall WHERE {TOP} ORDER BY rank, model, revision",
    "benchmark": "SELECT * FROM leaderboard_benchmarks WHERE task_name = ? AND "
    f"{TOP} ORDER BY rank, model, revision",
    "task": r"SELECT * FROM leaderboard_tasks WHERE task_name ILIKE ? ESCAPE '\' AND "
    f"{TOP} ORDER BY task_name, rank NULLS LAST, model, revision",
}
COMPARE_RUNS_SQL = "SELECT run_id, model, revision, status FROM runs WHERE list_contains(?, run_id)"
COMPARE_TASKS_SQL = """
SELECT run_id, task_name, is_aggregate, primary_metric, primary_score, model_config, task_config
FROM task_results WHERE list_contains(?, run_id)
"""
TASK_METRICS_SQL = """
SELECT run_id, task_name, is_aggregate, primary_metric, task_config FROM task_results
WHERE run_id IN (?, ?)
"""
PREDICTIONS_SQL = """
SELECT run_id, task_name, doc_id, metrics FROM predictions
WHERE run_id IN (?, ?) AND list_contains(?, task_name)
"""
EXPORT_SQL = """
SELECT * FROM task_results WHERE run_id = ? ORDER BY is_aggregate, task_idx NULLS LAST, task_name
"""
# One scan per table: every subquery over a view re-reads the lake.
STATS_SQL = """
WITH r AS (
  SELECT count(DISTINCT dump) AS dumps, count(*) AS runs, max(ingested_at) AS last_ingest,
         count(*) FILTER (status = 'quarantined') AS quarantined_runs,
         coalesce(list(run_id ORDER BY run_id) FILTER (status = 'quarantined'), [])
           AS quarantined_run_ids
  FROM runs
), t AS (SELECT count(DISTINCT task_name) AS tasks, count(*) AS task_rows FROM task_results)
SELECT r.dumps, r.runs, t.tasks, t.task_rows, (SELECT count(*) FROM predictions) AS instances,
       r.last_ingest, r.quarantined_runs, r.quarantined_run_ids
FROM r, t
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "sql", cmd_sql, "run a read-only SQL query on the warehouse")
    p.add_argument("query")

    p = _command(
        sub, "runs", cmd_runs, "list ingested runs: status, leaderboard standing, superseded by"
    )
    p.add_argument("--model", metavar="PATTERN", help="model name glob (`*`, `?`) or substring")

    p = _command(sub, "show", cmd_show, "one run: status, scores and failed checks")
    p.add_argument("run_id", metavar="RUN_ID")

    p = _command(sub, "leaderboard", cmd_leaderboard, "the overall, benchmark or task boards")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--benchmark", metavar="NAME", help="one aggregate, e.g. mmlu:mc::olmes")
    which.add_argument("--task", metavar="PATTERN", help="task name glob (`*`, `?`) or substring")
    p.add_argument("--top", type=_positive, metavar="N", help="ranks 1..N per board (ties kept)")

    p = _command(sub, "compare", cmd_compare, "config differences, scores side by side, winner")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="two or more; deltas vs the first")

    p = _command(sub, "significance", cmd_significance, "paired test of RUN_B against RUN_A")
    p.add_argument("run_a", metavar="RUN_A", help="the baseline")
    p.add_argument("run_b", metavar="RUN_B", help="the candidate; diff = mean_b - mean_a")
    p.add_argument("--task", required=True, help="a task or an aggregate (stratified by member)")
    p.add_argument("--method", choices=["bootstrap", "mcnemar"], default="bootstrap")
    p.add_argument("--iterations", type=_positive, default=10_000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)

    p = _command(sub, "export", cmd_export, "write a run's task_results rows to a file")
    p.epilog = (
        "One row per task (aggregates last) with every task_results column: scores, the "
        "metrics and configs as JSON text. task_metrics is the same metrics in long form, so "
        "it is not exported."
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument(
        "--output", type=Path, required=True, metavar="FILE", help="FILE.json, .csv or .parquet"
    )

    _command(sub, "stats", cmd_stats, "what the warehouse holds, lake size, last ingest")


def _command(
    sub: argparse._SubParsersAction, name: str, func: Callable, help_text: str
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=func)
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def cmd_sql(args: argparse.Namespace) -> int:
    """Queries only, reading only the lake: a statement that would write a file or table,
    change a setting or load an extension, or a read outside the lake, exits 2 unrun."""
    settings = load_settings()
    try:
        result = query(settings.warehouse, args.query, lake=settings.lake)
    except ReadOnlyViolation as exc:
        raise ReadOnlyViolation(f"evalpipe sql is read-only: {exc}") from exc
    print(render(*result, args.format))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """Each run with where it stands on the leaderboards (`leaderboard_runs`): ranked, superseded
    by a newer run of the same model (the newest evaluated_at wins), or left out and why."""
    path = load_settings().warehouse
    like = None if args.model is None else comparison.glob_to_like(args.model)
    has_standings = query(path, HAS_VIEW_SQL, ["leaderboard_runs"])[1][0][0]
    sql = RUNS_STANDING_SQL if has_standings else RUNS_SQL
    print(render(*query(path, sql, [like, like]), args.format))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """The run row (status and reason included), its scores (aggregates first), failed checks."""
    path = load_settings().warehouse
    (run_id,) = _existing_runs(path, [args.run_id])
    _emit_sections(
        [
            Section("run", "run", *query(path, RUN_SQL, [run_id]), record=True),
            Section("scores", "scores", *query(path, SCORES_SQL, [run_id])),
            Section("failed_checks", "failed checks", *query(path, FAILED_CHECKS_SQL, [run_id])),
        ],
        args.format,
        csv_section="scores",
    )
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Overall board by default; a benchmark's rows; or the task boards matching a pattern."""
    path = load_settings().warehouse
    top = [args.top, args.top]
    if args.benchmark is not None:
        known = [
            r[0] for r in query(path, "SELECT DISTINCT task_name FROM leaderboard_benchmarks")[1]
        ]
        if args.benchmark not in known:
            hint = f"known: {', '.join(sorted(known))}"
            raise ValueError(
                comparison.unknown_name_message("benchmark", args.benchmark, known, hint)
            )
        result = query(path, BOARD_SQL["benchmark"], [args.benchmark, *top])
    elif args.task is not None:
        result = query(path, BOARD_SQL["task"], [comparison.glob_to_like(args.task), *top])
        if not result[1]:
            known = [
                r[0] for r in query(path, "SELECT DISTINCT task_name FROM leaderboard_tasks")[1]
            ]
            hint = "see `evalpipe leaderboard --task '*'` for every task"
            raise ValueError(comparison.unknown_name_message("task", args.task, known, hint))
    else:
        result = query(path, BOARD_SQL["overall"], top)
    print(render(*result, args.format))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if len(args.run_ids) < 2:
        raise ValueError("compare needs at least two run ids")
    if len(set(args.run_ids)) != len(args.run_ids):
        raise ValueError("compare got the same run id twice")
    path = load_settings().warehouse
    run_ids = _existing_runs(path, args.run_ids)
    runs = _frame(path, COMPARE_RUNS_SQL, [run_ids]).set_index("run_id").loc[run_ids].reset_index()
    result = comparison.build_comparison(runs, _frame(path, COMPARE_TASKS_SQL, [run_ids]))
    _emit_sections(
        [
            Section("runs", "runs", *result.runs),
            Section("config_differences", "config differences", *result.config_differences),
            Section("scores", "scores (deltas vs A)", *result.scores),
            Section("winner", "winner (mean over common tasks)", *result.winner, record=True),
        ],
        args.format,
        csv_section="scores",
    )
    return 0


def cmd_significance(args: argparse.Namespace) -> int:
    """Pair the two runs' instances of the task on doc_id and test the difference.

    Two queries on the happy path (each scans a whole lake table through its view): the runs'
    task rows, which also prove both runs exist, then the task's predictions.
    """
    settings = load_settings()
    path = settings.warehouse
    run_a, run_b = args.run_a, args.run_b
    if run_a == run_b:
        raise ValueError("RUN_A and RUN_B are the same run")
    task_rows = _frame(path, TASK_METRICS_SQL, [run_a, run_b])
    if set(task_rows["run_id"]) != {run_a, run_b}:
        _existing_runs(path, [run_a, run_b])
    # lm-eval records each group's members and averaging with the run (user suites win).
    suites = {**group_suites(task_rows, run_a), **load_suites(settings.suites_file)}
    plan = comparison.significance_plan(args.task, task_rows, run_a, run_b, suites)
    predictions = _frame(path, PREDICTIONS_SQL, [run_a, run_b, list(plan.tasks)])
    values = comparison.instance_values(predictions, task_rows)
    row = comparison.significance(
        run_a,
        run_b,
        plan,
        comparison.pair_values(values, run_a, run_b),
        method=args.method,
        iterations=args.iterations,
        seed=args.seed,
    )
    _emit_record(comparison.SIGNIFICANCE_COLUMNS, row, args.format)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """The run's task_results rows, by extension; task_metrics would only repeat `metrics`."""
    output: Path = args.output
    writer = EXPORTERS.get(output.suffix.lower())
    if writer is None:
        raise ValueError(
            f"{output}: unknown export format {output.suffix!r}; use {', '.join(EXPORTERS)}"
        )
    if not output.parent.is_dir():
        raise ValueError(f"{output}: directory {output.parent} does not exist")
    path = load_settings().warehouse
    (run_id,) = _existing_runs(path, [args.run_id])
    with connect_read_only(path) as con:
        table = con.sql(EXPORT_SQL, params=[run_id]).to_arrow_table()
    with atomic_path(output) as tmp:
        writer(table, tmp)
    _emit_record(
        ["run_id", "table", "rows", "output"],
        (run_id, "task_results", table.num_rows, str(output)),
        args.format,
    )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    settings = load_settings()
    columns, rows = query(settings.warehouse, STATS_SQL)
    lake_mb = Lake(settings.lake).size_bytes() / 1e6
    _emit_record(
        [*columns[:5], "lake_mb", *columns[5:]], (*rows[0][:5], lake_mb, *rows[0][5:]), args.format
    )
    return 0


def _existing_runs(path: Path, run_ids: Sequence[str]) -> list[str]:
    """The run ids, if the warehouse knows them all; else an error naming the first unknown
    one with the closest known ids (listing every run only then)."""
    sql = "SELECT run_id FROM runs WHERE list_contains(?, run_id)"
    found = {r[0] for r in query(path, sql, [list(run_ids)])[1]}
    for run_id in run_ids:
        if run_id not in found:
            known = [r[0] for r in query(path, "SELECT run_id FROM runs ORDER BY run_id")[1]]
            hint = "see `evalpipe runs`"
            raise ValueError(comparison.unknown_name_message("run", run_id, known, hint))
    return list(run_ids)


def _frame(path: Path, sql: str, params: Sequence[Any]) -> pd.DataFrame:
    columns, rows = query(path, sql, params)
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class Section:
    """One part of a multi-part answer; a `record` is a single row shown as field/value pairs."""

    key: str
    title: str
    columns: list[str]
    rows: list[tuple]
    record: bool = False


def _emit_sections(sections: list[Section], fmt: str, csv_section: str) -> None:
    """JSON: one object keyed by section; CSV: the one tabular section a spreadsheet wants;
    table/markdown: each section under a heading."""
    if fmt == "json":
        answer = {s.key: _json_rows(s.columns, s.rows, s.record) for s in sections}
        print(json.dumps(answer, ensure_ascii=False, indent=2))
        return
    if fmt == "csv":
        (section,) = [s for s in sections if s.key == csv_section]
        print(render(section.columns, section.rows, fmt))
        return
    heading = "## {}" if fmt == "markdown" else "{}:"
    blocks = []
    for s in sections:
        if not s.rows and not s.record:  # say so, rather than print an empty table
            blocks.append(heading.format(s.title) + ("\n\nnone" if fmt == "markdown" else " none"))
            continue
        columns, rows = _transposed(s.columns, s.rows) if s.record else (s.columns, s.rows)
        blocks.append(heading.format(s.title) + "\n" + render(columns, rows, fmt))
    print("\n\n".join(blocks))


def _emit_record(columns: list[str], row: tuple, fmt: str) -> None:
    """A one-row answer: a JSON object, a one-row CSV, or field/value pairs to read down."""
    if fmt == "json":
        print(json.dumps(_json_rows(columns, [row], record=True), ensure_ascii=False, indent=2))
    elif fmt == "csv":
        print(render(columns, [_flat_row(row)], fmt))
    else:
        print(render(*_transposed(columns, [row]), fmt))


def _json_rows(columns: list[str], rows: list[tuple], record: bool) -> Any:
    objects = json.loads(render(columns, rows, "json"))
    return (objects[0] if objects else None) if record else objects


def _transposed(columns: list[str], rows: list[tuple]) -> tuple[list[str], list[tuple]]:
    values = _flat_row(rows[0]) if rows else [None] * len(columns)
    return ["field", "value"], list(zip(columns, values, strict=True))


def _flat_row(row: Sequence[Any]) -> list[Any]:
    """Lists (e.g. quarantined run ids) as one comma-separated cell outside JSON."""
    return [", ".join(map(str, v)) if isinstance(v, list) else v for v in row]


def _export_text(fmt: str) -> Callable[[pa.Table, Path], None]:
    """JSON (a list of objects) and CSV as the CLI renders them: ISO timestamps, JSON text
    columns kept as text, so a file round-trips to the warehouse rows."""

    def write(table: pa.Table, path: Path) -> None:
        rows = [tuple(r.values()) for r in table.to_pylist()]
        path.write_text(render(table.column_names, rows, fmt) + "\n", encoding="utf-8")

    return write


def _export_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")


EXPORTERS: dict[str, Callable[[pa.Table, Path], None]] = {
    ".json": _export_text("json"),
    ".csv": _export_text("csv"),
    ".parquet": _export_parquet,
}
