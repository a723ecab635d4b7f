"""The W&B sink, run as a user runs it (`evalpipe ingest` with EVALPIPE_WANDB_PROJECT set) with
the real `wandb` client in offline mode: what it recorded is read back from the offline run
files (the records `wandb sync` would upload) and checked against the lake, run by run."""

import contextlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from evalpipe.cli import main
from evalpipe.core.config import Settings, load_settings
from evalpipe.sinks.wandb_runs import LEDGER, checkpoint_group, sync, wandb_run_id
from evalpipe.sources.olmes.samples import generate_dumps
from evalpipe.storage.lake import Lake
from evalpipe.storage.warehouse import read_runs_with_status
from evalpipe_tests.lmeval_outputs import run_ids
from evalpipe_tests.wandb_offline import (
    OfflineRun,
    offline_runs,
    read_offline_run,
    run_directories,
)

API_KEY = "evalpipetestkey" + "0123456789abcdef" * 2 + "9"
"""A made-up key of W&B's length: it must never be written anywhere."""
PROJECT = "evalpipe-test"


@dataclass
class Logged:
    settings: Settings
    root: Path
    printed: str

    @property
    def wandb_dir(self) -> Path:
        return self.root / "wandb_dir"

    def healthy(self) -> list[dict]:
        runs = read_runs_with_status(Lake(self.settings.lake))
        return runs[runs["status"] == "ok"].to_dict("records")


def wandb_env(root: Path, wandb_dir: Path) -> dict[str, str]:
    """Offline W&B with every directory it writes to (and HOME) under `root`."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(wandb_dir),
        "WANDB_CONFIG_DIR": str(root / "wandb_config"),
        "WANDB_CACHE_DIR": str(root / "wandb_cache"),
        "WANDB_DATA_DIR": str(root / "wandb_data"),
        "WANDB_API_KEY": API_KEY,
        "WANDB_SILENT": "true",
        "HOME": str(root / "user_home"),
    }


@pytest.fixture(scope="module")
def logged(pristine_lmeval: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """OLMES sample dumps and real lm-eval output, ingested with W&B logging on, offline."""
    root = tmp_path_factory.mktemp("wandb")
    shutil.copytree(pristine_lmeval, root / "lmeval")
    generate_dumps(root / "dumps", runs=2, tasks=3, instances=4, seed=5)
    (root / "wandb_dir").mkdir()
    (root / "user_home").mkdir()
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "EVALPIPE_HOME": str(root / "home"),
            "EVALPIPE_DUMPS": str(root / "dumps"),
            "EVALPIPE_LMEVAL": str(root / "lmeval"),
            "EVALPIPE_SETTLE_SECONDS": "0",
            "EVALPIPE_WANDB_PROJECT": PROJECT,
            "DAGSTER_HOME": str(root / "dagster_home"),
            **wandb_env(root, root / "wandb_dir"),
        }.items():
            mp.setenv(name, value)
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            status = main(["ingest", "--verbose"])
        assert status == 0, printed.getvalue()[-3000:]
        yield Logged(load_settings(), root, printed.getvalue())


def test_one_wandb_run_per_healthy_run_grouped_by_checkpoint(logged: Logged) -> None:
    healthy = logged.healthy()
    assert {r["source"] for r in healthy} == {"olmes", "lm-eval"}
    runs = offline_runs(logged.wandb_dir)
    assert set(runs) == {wandb_run_id(r["run_id"]) for r in healthy}
    for row in healthy:
        run = runs[wandb_run_id(row["run_id"])]
        assert (run.name, run.project, run.job_type) == (row["run_id"], PROJECT, "eval")
        assert run.group == checkpoint_group(row["model"], row["revision"])
        assert run.tags == [row["source"]]
        config = {k: run.config[k] for k in ("evalpipe_run_id", "source", "model", "revision")}
        assert config == {
            "evalpipe_run_id": row["run_id"],
            "source": row["source"],
            "model": row["model"],
            "revision": row["revision"],
        }
    step100 = runs[wandb_run_id(run_ids(logged.settings.lmeval)["step100"])]
    assert step100.group == "acme/tiny-lm@step100"


def test_lm_eval_runs_carry_lm_evals_config_summary_table_and_artifact(logged: Logged) -> None:
    runs = offline_runs(logged.wandb_dir)
    for revision, run_id in run_ids(logged.settings.lmeval).items():
        raw = json.loads((logged.settings.lmeval / f"{run_id}.json").read_text())
        run: OfflineRun = runs[wandb_run_id(run_id)]
        assert run.config["cli_configs"] == raw["config"]
        assert run.config["task_configs"]["toy_colors"] == raw["configs"]["toy_colors"]
        results = raw["results"]
        assert run.summary["toy_colors/acc"] == results["toy_colors"]["acc,none"]
        assert run.summary["toy_colors/acc_stderr"] == results["toy_colors"]["acc_stderr,none"]
        assert (
            run.summary["toy_sums/exact_match,strict-match"]
            == results["toy_sums"]["exact_match,strict-match"]
        )
        assert run.summary["evalpipe/status"] == "ok"
        table = run.table("evaluation/eval_results")
        assert table["columns"] == [
            "Tasks", "Version", "Filter", "num_fewshot", "Metric", "Value", "Stderr",
        ]  # fmt: skip
        assert ["toy_colors", "1.0", "none", 0, "acc", str(results["toy_colors"]["acc,none"]),
                f"{results['toy_colors']['acc_stderr,none']:.4f}"] in table["data"]  # fmt: skip
        assert {(r[0], r[2], r[4]) for r in table["data"]} == {
            ("toy_colors", "none", "acc"),
            ("toy_colors", "none", "acc_norm"),
            ("toy_sums", "raw", "exact_match"),
            ("toy_sums", "strict-match", "exact_match"),
        }
        if revision == "step200":
            groups = run.table("evaluation/group_eval_results")
            assert groups["data"] == [
                ["toy_suite", "1.0", "none", 0, "acc", str(results["toy_suite"]["acc,none"]),
                 f"{results['toy_suite']['acc_stderr,none']:.4f}"]
            ]  # fmt: skip
        [artifact] = [a for a in run.artifacts if a.type == "eval_results"]
        assert artifact.name == f"results-{run.id}"
        assert [entry.path for entry in artifact.manifest.contents] == ["results.json"]


def test_olmes_runs_log_their_task_metrics(logged: Logged) -> None:
    lake = Lake(logged.settings.lake)
    runs = offline_runs(logged.wandb_dir)
    olmes = [r for r in logged.healthy() if r["source"] == "olmes"]
    assert olmes
    for row in olmes:
        run = runs[wandb_run_id(row["run_id"])]
        metrics = lake.read("task_metrics", row["run_id"]).to_pylist()
        assert metrics
        for m in metrics:
            assert run.summary[f"{m['task_name']}/{m['metric']}"] == pytest.approx(m["value"])


def directories(wandb_dir: Path, run_id: str) -> list[Path]:
    return run_directories(wandb_dir, wandb_run_id(run_id))


def test_relogging_updates_the_same_wandb_run_and_quarantine_marks_it(
    logged: Logged, tmp_path: Path
) -> None:
    """On a copy of the lake and ledger (W&B's directory is the module's: the client reads
    its settings once per process)."""
    home = tmp_path / "home"
    shutil.copytree(logged.settings.home / "lake", home / "lake")
    shutil.copy(logged.settings.home / LEDGER, home / LEDGER)
    lake = Lake(home / "lake")
    ids_before = set(offline_runs(logged.wandb_dir))
    assert sync(lake, home, PROJECT, None).logged == [], "nothing changed since it was logged"

    again = run_ids(logged.settings.lmeval)["step100"]
    assert len(directories(logged.wandb_dir, again)) == 1
    ledger = json.loads((home / LEDGER).read_text())
    assert ledger[again]["wandb_id"] == wandb_run_id(again)
    del ledger[again]
    (home / LEDGER).write_text(json.dumps(ledger))
    assert sync(lake, home, PROJECT, None).logged == [again]
    assert len(directories(logged.wandb_dir, again)) == 2, "the same W&B run, resumed"
    assert set(offline_runs(logged.wandb_dir)) == ids_before

    status = lake.read("run_status", again).to_pylist()
    status[0].update(status="quarantined", status_reason="task_results.bad_check failed")
    lake.write("run_status", again, status)
    report = sync(lake, home, PROJECT, None)
    assert (report.logged, report.marked) == ([], [again])
    assert again in report.not_logged
    marked = offline_runs(logged.wandb_dir)[wandb_run_id(again)]
    assert marked.summary["evalpipe/status"] == "quarantined"
    assert marked.summary["evalpipe/status_reason"] == "task_results.bad_check failed"
    assert marked.tags == ["lm-eval", "quarantined"]
    assert sync(lake, home, PROJECT, None).marked == [], "marked once"
    assert set(offline_runs(logged.wandb_dir)) == ids_before


def test_wandb_sync_logs_what_is_already_ingested(
    logged: Logged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`evalpipe wandb-sync` on a copy of the lake: every healthy run is unchanged since the
    ingest logged it; with the ledger gone, all are logged again (to the same W&B runs)."""
    home = tmp_path / "home"
    shutil.copytree(logged.settings.home / "lake", home / "lake")
    shutil.copy(logged.settings.home / LEDGER, home / LEDGER)
    monkeypatch.setenv("EVALPIPE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for name, value in wandb_env(logged.root, logged.wandb_dir).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EVALPIPE_WANDB_PROJECT", PROJECT)
    healthy = len(logged.healthy())
    assert main(["wandb-sync"]) == 0
    assert f": 0 runs logged, 0 marked quarantined, {healthy} unchanged" in capsys.readouterr().out
    (home / LEDGER).unlink()
    ids_before = set(offline_runs(logged.wandb_dir))
    assert main(["wandb-sync"]) == 0
    assert f": {healthy} runs logged" in capsys.readouterr().out
    assert set(offline_runs(logged.wandb_dir)) == ids_before
    monkeypatch.delenv("EVALPIPE_WANDB_PROJECT")
    assert main(["wandb-sync"]) == 2
    assert "EVALPIPE_WANDB_PROJECT is not set" in capsys.readouterr().err


REFERENCE_LOGGER = """
import json
import sys

import wandb
from lm_eval.loggers import WandbLogger

logger = WandbLogger(init_args={"project": "lm-eval-reference", "id": sys.argv[2]})
logger.post_init(json.loads(open(sys.argv[1]).read()))
logger.log_eval_result()
wandb.finish()
"""


def test_eval_results_tables_hold_the_rows_lm_evals_own_logger_writes(logged: Logged) -> None:
    """lm-eval's own WandbLogger, given the same results file, logs the same table rows (bar
    the rows it writes for bookkeeping keys: `name`, `sample_len`, `sample_count`). It runs in
    a process of its own, as lm-eval does, so no W&B state of this one leaks into it."""
    run_id = run_ids(logged.settings.lmeval)["step200"]
    reference_id = "lmevalreference"
    subprocess.run(
        [
            sys.executable,
            "-c",
            REFERENCE_LOGGER,
            str(logged.settings.lmeval / f"{run_id}.json"),
            reference_id,
        ],
        check=True,
        timeout=180,
    )
    [directory] = run_directories(logged.wandb_dir, reference_id)
    reference = read_offline_run(directory)
    ours = offline_runs(logged.wandb_dir)[wandb_run_id(run_id)]

    def rows(table: dict) -> set[tuple[str, ...]]:
        bookkeeping = {"name", "sample_len", "sample_count"}
        return {tuple(map(str, r)) for r in table["data"] if r[4] not in bookkeeping}

    assert len(rows(reference.table("evaluation/eval_results"))) == 4
    for key in ("evaluation/eval_results", "evaluation/group_eval_results"):
        assert ours.table(key)["columns"] == reference.table(key)["columns"]
        assert rows(ours.table(key)) == rows(reference.table(key))
    assert reference.summary["toy_colors/acc"] == ours.summary["toy_colors/acc"]


def test_no_api_key_in_any_file_or_output(logged: Logged) -> None:
    key = API_KEY.encode()
    assert key not in logged.printed.encode()
    written = [p for p in logged.root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written)
    assert [p for p in written if key in p.read_bytes()] == []
    assert not (logged.root / "user_home" / ".netrc").exists()
