"""Weights & Biases as a sink: every healthy run, from every source, as one W&B run.

Pure domain code (no Dagster). What is logged mirrors lm-eval's own W&B logger, so dashboards
built for `lm_eval --wandb_args` work on evalpipe's runs of any source:

- the W&B run id is derived from evalpipe's run id, so logging a run again resumes and updates
  the same W&B run instead of adding a duplicate;
- runs are grouped by checkpoint (`model@revision`); the name is evalpipe's run id;
- config: `model`, `revision`, `source`, `evalpipe_run_id`, `task_configs`, `cli_configs`
  (lm-eval's whole `config`, or the run's model config for other sources);
- every metric as `task/metric` (lm-eval's `,none` filter suffix dropped, other filters kept)
  with its `task/metric_stderr`, logged as lm-eval logs them (summary and one history step);
- tables `evaluation/eval_results` (and `evaluation/group_eval_results` for aggregates) with
  lm-eval's columns;
- the run's results (lm-eval's `results_<ts>.json` shape) as an artifact of type
  `eval_results`.

Quarantined runs are not logged; one that was logged while healthy is marked (tag
`quarantined`, `evalpipe/status` in its summary) when it is quarantined later. A ledger
(`wandb_ledger.json` under the home) remembers what was logged at which fingerprint, so
unchanged runs are not logged again. The API key is never handled here: the `wandb` client
reads `WANDB_API_KEY` (or its own login) itself.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from evalpipe.core.atomic import atomic_path
from evalpipe.results.status import OK, QUARANTINED
from evalpipe.storage.lake import Lake
from evalpipe.storage.warehouse import read_runs_with_status

TABLE_COLUMNS = ["Version", "Filter", "num_fewshot", "Metric", "Value", "Stderr"]
LEDGER = "wandb_ledger.json"
ARTIFACT_TYPE = "eval_results"
JOB_TYPE = "eval"


def wandb_run_id(run_id: str) -> str:
    """A W&B run id (letters and digits, at most 64) that is a function of evalpipe's id."""
    return hashlib.sha256(f"evalpipe:{run_id}".encode()).hexdigest()[:32]


def checkpoint_group(model: str | None, revision: str | None) -> str:
    """W&B group of a run: one per checkpoint (model and revision or step)."""
    name = model or "unknown-model"
    return f"{name}@{revision}" if revision else name


def metric_key(metric: str, filter_name: str | None) -> str:
    """lm-eval's W&B naming: `acc` for the `none` filter, `exact_match,strict-match` else."""
    return metric if filter_name in (None, "none") else f"{metric},{filter_name}"


@dataclass
class WandbRun:
    """Everything one W&B run is made of, in plain values."""

    run_id: str
    fingerprint: str
    init: dict[str, Any]
    summary: dict[str, float]
    tables: dict[str, tuple[list[str], list[list[Any]]]]
    results: dict[str, Any]

    @property
    def wandb_id(self) -> str:
        return self.init["id"]


@dataclass
class SinkPlan:
    """What a sync does: runs to log, logged runs to mark quarantined, runs left alone."""

    log: list[WandbRun] = field(default_factory=list)
    mark_quarantined: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_logged: dict[str, str] = field(default_factory=dict)
    """Run id → why it is not logged (quarantined, unchecked)."""


def _json(text: Any) -> Any:
    return json.loads(text) if isinstance(text, str) and text else None


def _number(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def version_and_shots(config: Any) -> tuple[str | None, int | None]:
    """A task's version and few-shot count from its config: lm-eval's `metadata.version` and
    `num_fewshot`, or OLMES's `version` and `num_shots`."""
    if not isinstance(config, dict):
        return None, None
    metadata = config.get("metadata")
    version = metadata.get("version") if isinstance(metadata, dict) else None
    version = config.get("version") if version is None else version
    shots = config.get("num_fewshot", config.get("num_shots"))
    valid_shots = isinstance(shots, int) and not isinstance(shots, bool)
    return (None if version is None else str(version)), (shots if valid_shots else None)


def build_wandb_run(
    project: str, entity: str | None, run: dict, results: pd.DataFrame, metrics: pd.DataFrame
) -> WandbRun:
    """One evalpipe run (its `runs` row, task_results and task_metrics rows) as a W&B run."""
    run = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in run.items()}
    run_id = run["run_id"]
    task_configs = {r.task_name: _json(r.task_config) for r in results.itertuples()}
    first_model_config = next((c for c in results["model_config"].dropna()), None)
    cli_configs = _json(run.get("config")) or _json(first_model_config) or {}
    config = {
        "evalpipe_run_id": run_id,
        "source": run["source"],
        "model": run["model"],
        "revision": run["revision"],
        "model_hash": run.get("model_hash"),
        "task_configs": task_configs,
        "cli_configs": cli_configs,
    }
    by_task = {name: rows for name, rows in metrics.groupby("task_name", sort=False)}
    summary: dict[str, float] = {}
    payload: dict[str, dict[str, Any]] = {}
    tables: dict[str, list[list[Any]]] = {"results": [], "groups": []}
    for row in results.itertuples():
        rows = by_task.get(row.task_name)
        entry: dict[str, Any] = {"alias": row.task_name}
        version, shots = version_and_shots(task_configs[row.task_name])
        ordered = [] if rows is None else rows.sort_values(["metric", "filter"]).itertuples()
        for m in ordered:
            value, stderr = _number(m.value), _number(m.stderr)
            filter_name = None if pd.isna(m.filter) else m.filter
            key = metric_key(m.metric, filter_name)
            raw = f"{m.metric},{filter_name}" if filter_name else m.metric
            if value is not None:
                summary[f"{row.task_name}/{key}"] = value
                entry[raw] = value
            if stderr is not None:
                summary[f"{row.task_name}/{metric_key(m.metric + '_stderr', filter_name)}"] = stderr
                entry[raw.replace(m.metric, m.metric + "_stderr", 1)] = stderr
            table = tables["groups" if row.is_aggregate else "results"]
            table.append(
                [
                    row.task_name,
                    version,
                    filter_name or "none",
                    shots,
                    m.metric,
                    str(m.value),
                    "" if stderr is None else f"{stderr:.4f}",
                ]
            )
        payload[row.task_name] = entry
    groups = {n: payload[n] for n in results.loc[results["is_aggregate"], "task_name"]}
    document = {
        "results": payload,
        **({"groups": groups} if groups else {}),
        "configs": task_configs,
        "versions": {t: version_and_shots(c)[0] for t, c in task_configs.items()},
        "n-shot": {t: version_and_shots(c)[1] for t, c in task_configs.items()},
        "config": cli_configs,
        "evalpipe": {"run_id": run_id, "source": run["source"], "status": run["status"]},
    }
    init = {
        "project": project,
        "entity": entity,
        "id": wandb_run_id(run_id),
        "name": run_id,
        "group": checkpoint_group(run["model"], run["revision"]),
        "job_type": JOB_TYPE,
        "tags": [run["source"]],
        "config": config,
        "resume": "allow",
    }
    named_tables = {"evaluation/eval_results": (["Tasks", *TABLE_COLUMNS], tables["results"])}
    if tables["groups"]:
        named_tables["evaluation/group_eval_results"] = (
            ["Groups", *TABLE_COLUMNS],
            tables["groups"],
        )
    return WandbRun(run_id, run.get("fingerprint") or "", init, summary, named_tables, document)


def read_ledger(home: Path) -> dict[str, dict[str, str]]:
    path = home / LEDGER
    return json.loads(path.read_text()) if path.exists() else {}


def write_ledger(home: Path, ledger: dict[str, dict[str, str]]) -> None:
    with atomic_path(home / LEDGER) as tmp:
        tmp.write_text(json.dumps(ledger, indent=1, sort_keys=True))


def plan_sync(
    lake: Lake, ledger: dict[str, dict[str, str]], project: str, entity: str | None
) -> SinkPlan:
    """Which runs to log (healthy and new or changed since logged), which to mark."""
    plan = SinkPlan()
    runs = read_runs_with_status(lake)
    if runs.empty:
        return plan
    results = lake.read_all("task_results").to_pandas()
    metrics = lake.read_all("task_metrics").to_pandas()
    if "filter" not in metrics.columns:  # only lake files older than the column
        metrics = metrics.assign(filter=None, stderr=None)
    for run in runs.to_dict("records"):
        run_id, status = run["run_id"], run["status"]
        logged = ledger.get(run_id)
        if status != OK:
            plan.not_logged[run_id] = status
            if status == QUARANTINED and logged and logged.get("status") != QUARANTINED:
                plan.mark_quarantined.append(run_id)
            continue
        if logged and (logged.get("fingerprint"), logged.get("status")) == (run["fingerprint"], OK):
            plan.unchanged.append(run_id)
            continue
        plan.log.append(
            build_wandb_run(
                project,
                entity,
                run,
                results[results["run_id"] == run_id],
                metrics[metrics["run_id"] == run_id],
            )
        )
    return plan


def log_run(wandb: Any, item: WandbRun) -> None:
    """Log one run with the `wandb` client (online or offline, as its settings say)."""
    with wandb.init(**item.init, reinit="finish_previous") as run:
        run.log(item.summary)
        run.log(
            {
                name: wandb.Table(columns=columns, data=rows)
                for name, (columns, rows) in item.tables.items()
            }
        )
        run.summary["evalpipe/status"] = OK
        artifact = wandb.Artifact(f"results-{item.wandb_id}", type=ARTIFACT_TYPE)
        with artifact.new_file("results.json", mode="w", encoding="utf-8") as handle:
            json.dump(item.results, handle, indent=2, ensure_ascii=False, default=str)
        run.log_artifact(artifact)


def mark_quarantined(wandb: Any, run: dict, project: str, entity: str | None) -> None:
    """Mark a logged run (a `runs` row with its status) that was quarantined since: W&B keeps
    it, tagged and with its status and reason in the summary."""
    init = {
        "project": project,
        "entity": entity,
        "id": wandb_run_id(run["run_id"]),
        "tags": [run["source"], QUARANTINED],
        "resume": "allow",
    }
    reason = run.get("status_reason")
    with wandb.init(**init, reinit="finish_previous") as logged:
        logged.summary["evalpipe/status"] = QUARANTINED
        logged.summary["evalpipe/status_reason"] = reason if isinstance(reason, str) else ""


@dataclass
class SyncReport:
    logged: list[str]
    marked: list[str]
    unchanged: int
    not_logged: dict[str, str]


def sync(
    lake: Lake,
    home: Path,
    project: str,
    entity: str | None,
    progress: Callable[[str], None] = lambda _: None,
) -> SyncReport:
    """Log every healthy run that is new or changed and mark newly quarantined ones; the
    ledger is updated after each run, so an interrupted sync resumes where it stopped."""
    try:
        import wandb
    except ImportError as exc:
        raise RuntimeError(
            "EVALPIPE_WANDB_PROJECT is set but the wandb client is not installed: "
            "pip install 'evalpipe[wandb]'"
        ) from exc

    ledger = read_ledger(home)
    plan = plan_sync(lake, ledger, project, entity)
    runs = read_runs_with_status(lake).set_index("run_id", drop=False)
    for i, item in enumerate(plan.log, 1):
        progress(f"[{i}/{len(plan.log)}] logging {item.run_id} to W&B ({item.wandb_id})")
        log_run(wandb, item)
        ledger[item.run_id] = {
            "wandb_id": item.wandb_id,
            "fingerprint": item.fingerprint,
            "status": OK,
        }
        write_ledger(home, ledger)
    for run_id in plan.mark_quarantined:
        progress(f"marking {run_id} quarantined in W&B")
        mark_quarantined(wandb, runs.loc[run_id].to_dict(), project, entity)
        ledger[run_id] = {**ledger[run_id], "status": QUARANTINED}
        write_ledger(home, ledger)
    return SyncReport(
        logged=[i.run_id for i in plan.log],
        marked=plan.mark_quarantined,
        unchanged=len(plan.unchanged),
        not_logged=plan.not_logged,
    )
