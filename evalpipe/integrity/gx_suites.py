"""Great Expectations (GX 1.x) suites, built in code, for one run's partitions.

Each table gets one suite: required columns and their types, non-null keys, unique keys, and
the value ranges the table promises. The suites run in an ephemeral GX context (no files), and
each expectation carries a `description` naming the property it tests, so a failed check says
which properties broke and shows the first offending rows.

GX takes seconds to import, so it is imported on first use and one context (plus the suites)
is kept per process; importing this module stays cheap. `prepare_in_background` lets an ingest
pay that import on the other core while it reads and writes its first runs.

Three choices made to get correct answers from GX on pandas 3:
- Frames are validated with a fresh RangeIndex (GX misaligns values on any other index), and
  offending rows are looked up by position.
- Types use `ExpectColumnValuesToBeOfType` with the dtype's scalar type (`str`, `int`, `float`,
  `bool`, `Timestamp`): GX compares it with `dtype.type`, which recognises pandas' `str`,
  `Int64` and `datetime64[us, UTC]` dtypes, and checks `object` columns value by value. A
  nullable integer column must therefore be an integer dtype (`Int64`), not pyarrow's default
  float64: read partitions with `frame_from_arrow`.
- Whether a score must lie in [0, 1] depends on its metric (`is_bounded_metric`). That rule is
  Python, written into a helper column that the range expectation selects with `row_condition`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from evalpipe.core.output import frame_markdown
from evalpipe.integrity.outcome import CheckOutcome
from evalpipe.results.suites import BUILTIN_SUITES, Suite
from evalpipe.storage.schemas import SCHEMAS

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.core import ExpectationValidationResult
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import AbstractDataContext

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

CHECK_TASK_RESULTS = "task_results_schema_and_ranges"
CHECK_PREDICTIONS = "predictions_schema_and_keys"

STR, INT, FLOAT, BOOL, TIMESTAMP = "str", "int", "float", "bool", "Timestamp"

BOUNDED_FLAG = "_score_is_bounded"
"""Helper column: True on the rows whose `primary_score` must lie in [0, 1]."""

ROWS_PER_FAILURE = 5
OFFENDING_ROWS_SHOWN = 10

UNBOUNDED_METRIC = re.compile(r"bits_per_byte|bpb|perplexity|ppl|logit|loss|nll|^sum_")
BOUNDED_METRIC = re.compile(
    r"^(acc|accuracy|exact_match|em|f1|pass_at|recall|precision|macro|micro|mc_or_rc)(_\w*)?$"
)


def is_bounded_metric(metric: object) -> bool:
    """Whether scores of this metric must lie in [0, 1].

    Bounded: accuracy-like names (`acc*`, `accuracy`, `exact_match*`, `em`, `f1*`, `pass_at*`,
    `recall*`, `precision*`) and the aggregate averagings `macro`, `micro`, `mc_or_rc`.
    Unbounded names win over bounded ones (`acc_bpb` is unbounded): anything mentioning
    bits-per-byte/bpb, perplexity/ppl, logits, loss or nll, or starting `sum_`. Unknown names
    are not range-checked (the check lists them), since a false ERROR would block ingestion.
    """
    if not isinstance(metric, str):
        return False
    name = metric.lower().split(",", 1)[0]  # lm-eval's `exact_match,strict-match`: the filter
    return not UNBOUNDED_METRIC.search(name) and BOUNDED_METRIC.match(name) is not None


@dataclass(frozen=True)
class TableSpec:
    """What every partition of one table must look like."""

    table: str
    check: str
    columns: Mapping[str, str]
    """Required column → scalar type name as `ExpectColumnValuesToBeOfType` reads it."""
    keys: tuple[str, ...]
    """Non-null and unique together."""
    identity: tuple[str, ...]
    """Columns that tell a person which row offends."""
    not_null: tuple[str, ...] = ()
    """Non-null besides the keys."""


def expected_types(table: str) -> dict[str, str]:
    """Column → the type name `ExpectColumnValuesToBeOfType` reads, from the lake's schema (the
    contract every partition is written to), so the suite cannot drift from the tables."""
    names = {"string": STR, "int64": INT, "int32": INT, "double": FLOAT, "bool": BOOL}
    return {
        field.name: TIMESTAMP if pa.types.is_timestamp(field.type) else names[str(field.type)]
        for field in SCHEMAS[table]
    }


TASK_RESULTS = TableSpec(
    table="task_results",
    check=CHECK_TASK_RESULTS,
    columns=expected_types("task_results"),
    keys=("run_id", "task_name"),
    identity=("task_name", "source_file", "source_line"),
    not_null=("is_aggregate", "source"),
)
PREDICTIONS = TableSpec(
    table="predictions",
    check=CHECK_PREDICTIONS,
    columns=expected_types("predictions"),
    keys=("run_id", "task_name", "doc_id"),
    identity=("task_name", "doc_id"),
)
SPECS: dict[str, TableSpec] = {spec.table: spec for spec in (TASK_RESULTS, PREDICTIONS)}
"""Every table with a suite; a source adds its own tables' specs with `register_spec`."""
SOURCES = ("metrics-all", "artifacts", "lm-eval")
REQUIRED_COLUMNS = "required columns present"


def frame_from_arrow(table: pa.Table) -> pd.DataFrame:
    """A partition as the checks expect it: 64-bit integers stay integers when they hold nulls.

    Consumes `table` (its buffers are freed column by column as they are converted, so a big
    partition is not held twice); do not use it afterwards."""
    return table.to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype()}.get, split_blocks=True, self_destruct=True
    )


def validate_task_results(
    frame: pd.DataFrame,
    now: datetime | None = None,
    *,
    suites: Mapping[str, Suite] | None = None,
    source_file: str | None = None,
) -> CheckOutcome:
    """One run's `task_results` against its suite; `now` bounds `evaluated_at` (default: now).

    `evaluated_at` must be set on `metrics-all` rows only: artifact-only tasks carry no date.
    `suites` decides whether an aggregate's score is bounded: it is when all its members present
    in the frame have bounded metrics (by its averaging name when no member is present).
    """
    [outcome] = validate_task_results_of_runs([frame], now, suites=suites, sources=[source_file])
    return outcome


def validate_task_results_of_runs(
    frames: Sequence[pd.DataFrame],
    now: datetime | None = None,
    *,
    suites: Mapping[str, Suite] | None = None,
    sources: Sequence[str | None] | None = None,
) -> list[CheckOutcome]:
    """`validate_task_results` for several runs at once (one GX validation when all pass)."""
    data = []
    extras = []
    for frame in frames:
        projected = _project(frame, TASK_RESULTS)
        projected[BOUNDED_FLAG] = _bounded_rows(
            projected, BUILTIN_SUITES if suites is None else suites
        )
        data.append(projected)
        extras.append(
            {
                "bounded_rows": int(projected[BOUNDED_FLAG].sum()),
                "unchecked_metrics": ", ".join(_unchecked_metrics(projected)),
            }
        )
    return _validate_runs(
        TASK_RESULTS,
        data,
        parameters={"now": _utc(now)},
        sources=sources or [None] * len(frames),
        extras=extras,
    )


def validate_predictions(frame: pd.DataFrame, *, source_file: str | None = None) -> CheckOutcome:
    """One run's `predictions` against its suite: columns, types, one row per document."""
    return validate_table(PREDICTIONS, frame, source_file=source_file)


def register_spec(spec: TableSpec) -> TableSpec:
    """Give a source's own table a suite (columns, types, keys)."""
    SPECS[spec.table] = spec
    return spec


def validate_table(
    spec: TableSpec, frame: pd.DataFrame, *, source_file: str | None = None
) -> CheckOutcome:
    """One run's partition of a table against its spec's suite (no range rules)."""
    [outcome] = validate_table_of_runs(spec, [frame], sources=[source_file])
    return outcome


def validate_table_of_runs(
    spec: TableSpec,
    frames: Sequence[pd.DataFrame],
    *,
    sources: Sequence[str | None] | None = None,
) -> list[CheckOutcome]:
    """`validate_table` for several runs at once (one GX validation when all pass)."""
    data = [_project(frame, spec) for frame in frames]
    return _validate_runs(
        spec, data, sources=sources or [None] * len(frames), extras=[{}] * len(frames)
    )


def _validate_runs(
    spec: TableSpec,
    frames: Sequence[pd.DataFrame],
    *,
    sources: Sequence[str | None],
    extras: Sequence[Mapping[str, Any]],
    parameters: dict[str, Any] | None = None,
) -> list[CheckOutcome]:
    """Each run's outcome, as `_validate` gives it run by run, at a fraction of the cost.

    GX costs about a second per validation whatever the rows, so the runs' frames are first
    validated together, as one frame: every expectation is judged row by row, by dtype (the
    same for every run: all are read with one schema) or by keys that include `run_id`, so a
    combined frame that meets them all means every run's frame does, and each run gets the
    outcome it would have got alone. Only when the combined frame fails is each run validated
    on its own, to say exactly which runs fail and why."""
    if len(frames) > 1:
        combined = pd.concat(frames, ignore_index=True)
        together = _validate(spec, combined, parameters=parameters)
        if together.passed:
            return [
                _passed(spec, frame, together.metadata["expectations"], source, extra)
                for frame, source, extra in zip(frames, sources, extras, strict=True)
            ]
    return [
        _validate(spec, frame, parameters=parameters, source_file=source, extra=extra)
        for frame, source, extra in zip(frames, sources, extras, strict=True)
    ]


def _passed(
    spec: TableSpec,
    data: pd.DataFrame,
    total: int,
    source_file: str | None,
    extra: Mapping[str, Any],
) -> CheckOutcome:
    """The outcome `_validate` gives a frame that meets every expectation."""
    return _outcome(spec, data, total, [], pd.DataFrame(), source_file, extra)


def _project(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """The spec's columns only (cheap under copy-on-write), on a fresh RangeIndex for GX."""
    return frame[[c for c in frame.columns if c in spec.columns]].reset_index(drop=True)


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now


def _is_true(value: object) -> bool:
    return isinstance(value, (bool, np.bool_)) and bool(value)


def _bounded_rows(data: pd.DataFrame, suites: Mapping[str, Suite]) -> list[bool]:
    needed = ("task_name", "primary_metric", "is_aggregate")
    if any(c not in data.columns for c in needed):
        return [False] * len(data)
    rows = list(
        zip(
            data["task_name"],
            data["primary_metric"],
            data["is_aggregate"].map(_is_true),
            strict=True,
        )
    )
    member_metric = {name: metric for name, metric, agg in rows if not agg}
    return [
        _aggregate_bounded(suites.get(name), metric, member_metric)
        if agg
        else is_bounded_metric(metric)
        for name, metric, agg in rows
    ]


def _aggregate_bounded(
    suite: Suite | None, averaging: object, member_metric: Mapping[str, object]
) -> bool:
    """An aggregate averages its members' scores: bounded iff theirs are."""
    present = [member_metric[m] for m in suite.members if m in member_metric] if suite else []
    if present:
        return all(is_bounded_metric(m) for m in present)
    return is_bounded_metric(averaging)


def _unchecked_metrics(data: pd.DataFrame) -> list[str]:
    """Metric names whose scores the range expectation skips, so a person can see the gap."""
    if "primary_metric" not in data.columns:
        return []
    metrics = data.loc[~data[BOUNDED_FLAG], "primary_metric"].dropna()
    return sorted({m for m in metrics if isinstance(m, str)})


_GX_LOCK = threading.RLock()
"""Held while GX objects are built, so the background preparation and a validation never build
the same context or suite twice."""


def prepare_in_background() -> None:
    """Import GX and build the registered tables' suites in a daemon thread; the first
    validation waits for it. Should it fail, the validation builds them itself and reports any
    error where it belongs."""

    def prepare() -> None:
        try:
            with _GX_LOCK:
                for table in list(SPECS):
                    _suite(table)
                    _batch_definition(table)
        except Exception:  # the validation that needs GX raises it again
            return

    threading.Thread(target=prepare, name="evalpipe-gx-prepare", daemon=True).start()


@cache
def _context() -> AbstractDataContext:
    """One ephemeral (in-memory) GX context per process, progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@cache
def _pandas_source() -> Any:
    return _context().data_sources.add_pandas("evalpipe")


@cache
def _batch_definition(table: str) -> BatchDefinition:
    """A whole-dataframe batch for a table: each validation passes its frame as a parameter."""
    asset = _pandas_source().add_dataframe_asset(table)
    return asset.add_batch_definition_whole_dataframe("whole_partition")


@cache
def _suite(table: str) -> ExpectationSuite:
    """The suite of one table (built once per process); its expectations describe themselves."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    spec = SPECS[table]
    # Added to the context so each expectation gets the id its result is matched back by.
    suite = _context().suites.add(gx.ExpectationSuite(name=f"evalpipe_{table}"))

    def add(expectation: Any, *columns: str) -> None:
        expectation.meta = {"columns": list(columns)}
        suite.add_expectation(expectation)

    add(
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(spec.columns), exact_match=False, description=REQUIRED_COLUMNS
        )
    )
    for column, type_ in spec.columns.items():
        add(
            gxe.ExpectColumnValuesToBeOfType(
                column=column, type_=type_, description=f"{column} is {type_}"
            ),
            column,
        )
    for column in spec.keys + spec.not_null:
        add(
            gxe.ExpectColumnValuesToNotBeNull(column=column, description=f"{column} not null"),
            column,
        )
    add(
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=list(spec.keys), description=f"({', '.join(spec.keys)}) unique"
        ),
        *spec.keys,
    )
    if spec is TASK_RESULTS:
        _add_task_result_ranges(add, gxe, Column)
    return suite


def _add_task_result_ranges(add: Any, gxe: Any, column: Any) -> None:
    add(
        gxe.ExpectColumnValuesToBeInSet(
            column="source", value_set=list(SOURCES), description="source is a known source"
        ),
        "source",
    )
    add(
        gxe.ExpectColumnValuesToBeBetween(
            column="primary_score",
            min_value=0,
            max_value=1,
            row_condition=column(BOUNDED_FLAG) == True,  # noqa: E712 (builds a GX condition)
            description="primary_score within [0, 1] for bounded metrics",
        ),
        "primary_score",
        "primary_metric",
    )
    add(
        gxe.ExpectColumnValuesToBeBetween(
            column="num_instances", min_value=1, description="num_instances positive"
        ),
        "num_instances",
    )
    # metrics-all rows always carry a score and a date. A score that is not a number is stored
    # as NULL, so that NULL is the type break: it must fail here, not vanish.
    for name, what in (("primary_score", "is a number"), ("evaluated_at", "parsed")):
        add(
            gxe.ExpectColumnValuesToNotBeNull(
                column=name,
                row_condition=column("source") == "metrics-all",
                description=f"{name} {what} on metrics-all rows",
            ),
            name,
            "source",
        )
    add(
        gxe.ExpectColumnValuesToBeBetween(
            column="evaluated_at",
            max_value={"$PARAMETER": "now"},
            description="evaluated_at not in the future",
        ),
        "evaluated_at",
    )


@dataclass(frozen=True)
class _Failure:
    """A failed expectation as a person reads it."""

    label: str
    detail: str
    columns: list[str]
    positions: list[int] = field(default_factory=list)
    count: int = 0

    @property
    def summary(self) -> str:
        return f"{self.label} ({self.detail})"


def _validate(
    spec: TableSpec,
    data: pd.DataFrame,
    *,
    parameters: dict[str, Any] | None = None,
    source_file: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> CheckOutcome:
    with _GX_LOCK:
        suite, definition = _suite(spec.table), _batch_definition(spec.table)
    batch = definition.get_batch(batch_parameters={"dataframe": data})
    result = batch.validate(
        suite,
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": ROWS_PER_FAILURE},
        expectation_parameters=parameters,
    )
    by_id = {r.expectation_config.id: r for r in result.results}
    failures = _failures(spec, data, [by_id[e.id] for e in suite.expectations])
    offending = _offending_rows(spec, data, failures)
    return _outcome(
        spec, data, len(suite.expectations), failures, offending, source_file, extra or {}
    )


def _outcome(
    spec: TableSpec,
    data: pd.DataFrame,
    total: int,
    failures: list[_Failure],
    offending: pd.DataFrame,
    source_file: str | None,
    extra: Mapping[str, Any],
) -> CheckOutcome:
    if failures:
        description = (
            f"{len(failures)} of {total} expectations failed on {spec.table}: "
            + "; ".join(f.summary for f in failures)
        )
    else:
        description = f"all {total} expectations met on {len(data)} {spec.table} rows"
    metadata: dict[str, Any] = {
        "table": spec.table,
        "rows_checked": len(data),
        "expectations": total,
        "failures": len(failures),
        "failed_expectations": "; ".join(f.summary for f in failures),
        "unexpected_values": sum(f.count for f in failures),
        "offending_rows": frame_markdown(offending, limit=OFFENDING_ROWS_SHOWN),
        **extra,
    }
    files = source_file or _source_files(data, offending)
    if files:
        metadata["source_file"] = files
    return CheckOutcome(spec.check, not failures, "ERROR", description, metadata)


def _failures(
    spec: TableSpec, data: pd.DataFrame, results: Sequence[ExpectationValidationResult]
) -> list[_Failure]:
    """Failed expectations, minus those a missing or mistyped column already explains."""
    missing = [c for c in spec.columns if c not in data.columns]
    mistyped = {
        r.expectation_config.kwargs["column"]
        for r in results
        if not r.success
        and r.expectation_config.type == "expect_column_values_to_be_of_type"
        and _exception_message(r) is None
    }
    failures = []
    for r in results:
        if r.success:
            continue
        config = r.expectation_config
        columns = list(config.meta["columns"])
        if config.description == REQUIRED_COLUMNS:
            failures.append(_Failure(REQUIRED_COLUMNS, f"missing: {', '.join(missing)}", []))
            continue
        if set(columns) & set(missing):
            continue
        error = _exception_message(r)
        if error is not None:
            if not set(columns) & mistyped:
                failures.append(_Failure(config.description, f"not evaluated: {error}", columns))
            continue
        failures.append(_failure_of(config.description, columns, r.result, data))
    return failures


def _failure_of(
    label: str, columns: list[str], result: Mapping[str, Any], data: pd.DataFrame
) -> _Failure:
    if "unexpected_count" in result:
        count = int(result["unexpected_count"])
        positions = [int(i) for i in result.get("partial_unexpected_index_list") or []]
        return _Failure(label, _rows(count), columns, positions[:ROWS_PER_FAILURE], count)
    # A dtype-level type failure: every non-null value of the column has the wrong type.
    present = data[columns[0]].notna()
    count = int(present.sum())
    positions = [int(i) for i in data.index[present][:ROWS_PER_FAILURE]]
    observed = result.get("observed_value", data[columns[0]].dtype)
    return _Failure(label, f"dtype {observed}, {_rows(count)}", columns, positions, count)


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _exception_message(result: ExpectationValidationResult) -> str | None:
    """GX reports errors either flat or keyed by metric; find the first raised one."""
    info = result.exception_info or {}
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error")
    return None


def _offending_rows(spec: TableSpec, data: pd.DataFrame, failures: list[_Failure]) -> pd.DataFrame:
    identity = [c for c in spec.identity if c in data.columns]
    records = []
    for failure in failures:
        for position in failure.positions:
            row = data.iloc[position]
            record: dict[str, Any] = {"expectation": failure.label, "row": position}
            record.update({c: row[c] for c in identity})
            record["values"] = ", ".join(f"{c}={_show(row[c])}" for c in failure.columns)
            records.append(record)
    return pd.DataFrame(records)


def _show(value: object) -> str:
    """Strings quoted, so a number stored as text stands out from a number."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "null"
    return repr(value) if isinstance(value, str) else str(value)


def _source_files(data: pd.DataFrame, offending: pd.DataFrame) -> str:
    """The files the offending rows came from, when the table records them."""
    if offending.empty or "source_file" not in data.columns:
        return ""
    files = data.loc[offending["row"].unique(), "source_file"].dropna().unique()
    return ", ".join(sorted(str(f) for f in files))
