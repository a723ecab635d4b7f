"""lm-eval runs through the CLI as a person uses it: `evalpipe ingest` picks them up beside OLMES
dumps, and `compare`, `significance` and `leaderboard` work between lm-eval runs and between an
lm-eval run and an OLMES run of the same task whose documents line up by doc_id."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalpipe.cli import main
from evalpipe.core.config import Settings, load_settings
from evalpipe.results.stats import mcnemar_exact
from evalpipe_tests.lmeval_outputs import run_ids

OLMES_RUN = "d1/acme_tiny-lm__olmes"
OLMES_ACC = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]


def write_olmes_run(run_dir: Path) -> None:
    """An OLMES run of lm-eval's `toy_colors` (same documents, same doc_ids, metric `acc`)."""
    run_dir.mkdir(parents=True)
    score = sum(OLMES_ACC) / len(OLMES_ACC)
    record = {
        "task_name": "toy_colors",
        "task_hash": "toy",
        "model_hash": "olmes",
        "model_config": {"model": "acme/tiny-lm", "revision": "olmes"},
        "task_config": {"task_name": "toy_colors", "primary_metric": "acc", "num_shots": 0},
        "num_instances": len(OLMES_ACC),
        "metrics": {"primary_score": score, "acc": score},
        "task_idx": 0,
        "current_date": "2026-11-30 10:00:00 UTC",
    }
    (run_dir / "metrics-all.jsonl").write_text(json.dumps(record) + "\n")
    lines = [
        {"doc_id": i, "native_id": f"c{i}", "metrics": {"acc": acc}, "label": i}
        for i, acc in enumerate(OLMES_ACC)
    ]
    (run_dir / "task-000-toy_colors-predictions.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines)
    )


@pytest.fixture(scope="module")
def home(pristine_lmeval: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("lmeval_cli")
    shutil.copytree(pristine_lmeval, root / "lmeval")
    write_olmes_run(root / "dumps" / OLMES_RUN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALPIPE_HOME", str(root / "home"))
        mp.setenv("EVALPIPE_DUMPS", str(root / "dumps"))
        mp.setenv("EVALPIPE_LMEVAL", str(root / "lmeval"))
        mp.setenv("EVALPIPE_SETTLE_SECONDS", "0")
        mp.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        mp.delenv("EVALPIPE_WANDB_PROJECT", raising=False)
        assert main(["ingest"]) == 0
        yield load_settings()


def json_out(capsys: pytest.CaptureFixture, argv: list[str]) -> dict | list:
    capsys.readouterr()
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ingest_lists_lm_eval_runs_beside_olmes(
    home: Settings, capsys: pytest.CaptureFixture
) -> None:
    runs = json_out(capsys, ["runs"])
    ids = run_ids(home.lmeval)
    assert {r["run_id"]: (r["revision"], r["status"]) for r in runs} == {
        ids["step100"]: ("step100", "ok"),
        ids["step200"]: ("step200", "ok"),
        ids["step300"]: ("step300", "ok"),
        ids["step400"]: ("step400", "ok"),
        OLMES_RUN: ("olmes", "ok"),
    }


def test_significance_between_lm_eval_runs_pairs_every_document(
    home: Settings, capsys: pytest.CaptureFixture
) -> None:
    ids = run_ids(home.lmeval)
    a, b = ids["step100"], ids["step200"]
    row = json_out(capsys, ["significance", a, b, "--task", "toy_colors", "--method", "mcnemar"])
    samples = {
        run: [
            json.loads(line)["acc"]
            for line in next(
                home.lmeval.glob(f"{run.replace('results_', 'samples_toy_colors_')}.jsonl")
            )
            .read_text()
            .splitlines()
        ]
        for run in (a, b)
    }
    assert (row["metric"], row["n_paired"], row["only_in_a"], row["only_in_b"]) == ("acc", 6, 0, 0)
    assert row["mean_a"] == pytest.approx(sum(samples[a]) / 6)
    assert row["mean_b"] == pytest.approx(sum(samples[b]) / 6)
    assert row["p_value"] == pytest.approx(mcnemar_exact(samples[a], samples[b]).p_value)
    sums = json_out(capsys, ["significance", a, b, "--task", "toy_sums"])
    assert (sums["metric"], sums["n_paired"]) == ("exact_match,raw", 5)


def test_significance_of_a_group_uses_its_recorded_members_and_averaging(
    home: Settings, capsys: pytest.CaptureFixture
) -> None:
    ids = run_ids(home.lmeval)
    a, b = ids["step200"], ids["step400"]
    row = json_out(capsys, ["significance", a, b, "--task", "toy_suite"])
    raw = {r: json.loads((home.lmeval / f"{r}.json").read_text())["results"] for r in (a, b)}
    # toy_suite averages `acc` over the members that have it (toy_colors), weighted by size.
    assert (row["metric"], row["n_paired"], row["strata"]) == ("micro(acc)", 6, 1)
    assert row["mean_a"] == pytest.approx(raw[a]["toy_suite"]["acc,none"])
    assert row["mean_b"] == pytest.approx(raw[b]["toy_suite"]["acc,none"])
    assert main(["significance", ids["step100"], b, "--task", "toy_suite"]) == 2
    assert "no task 'toy_suite'" in capsys.readouterr().err, "step100 ran the tasks alone"


def test_significance_between_lm_eval_and_olmes_on_the_same_documents(
    home: Settings, capsys: pytest.CaptureFixture
) -> None:
    a = run_ids(home.lmeval)["step100"]
    row = json_out(capsys, ["significance", a, OLMES_RUN, "--task", "toy_colors"])
    assert (row["n_paired"], row["metric"]) == (6, "acc")
    assert row["mean_b"] == pytest.approx(sum(OLMES_ACC) / 6)


def test_compare_and_leaderboard_span_both_sources(
    home: Settings, capsys: pytest.CaptureFixture
) -> None:
    ids = run_ids(home.lmeval)
    capsys.readouterr()
    assert main(["compare", ids["step100"], ids["step200"], OLMES_RUN, "--format", "json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    scores = {r["task_name"]: r for r in compared["scores"]}
    raw = json.loads((home.lmeval / f"{ids['step200']}.json").read_text())["results"]
    assert scores["toy_colors"]["B"] == raw["toy_colors"]["acc,none"]
    assert scores["toy_colors"]["C"] == pytest.approx(sum(OLMES_ACC) / 6)
    assert scores["toy_suite"]["is_aggregate"] is True
    differences = {(r["section"], r["key"]) for r in compared["config_differences"]}
    assert ("model_config", "model_args") in differences
    board = json_out(capsys, ["leaderboard", "--task", "toy_colors"])
    assert [(r["rank"], r["run_id"]) for r in board][:1] == [(1, OLMES_RUN)]
    assert {r["run_id"] for r in board} == {*ids.values(), OLMES_RUN}
