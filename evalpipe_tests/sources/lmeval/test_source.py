"""Ingesting real lm-eval output through the `Source` interface into the shared lake tables:
the stored figures are the results file's, the checks pass on it and fail on broken copies."""

import json

import pytest

from evalpipe.core.config import Settings
from evalpipe.core.jsonl import DumpFormatError
from evalpipe.sources.base import RunResult
from evalpipe.sources.lmeval.source import LMEVAL
from evalpipe.storage.lake import Lake
from evalpipe_tests.lmeval_outputs import run_ids


def ingest(settings: Settings) -> dict[str, RunResult | Exception]:
    scans = LMEVAL.scan(LMEVAL.root(settings)).runs
    return dict(LMEVAL.ingest(scans, settings, progress=lambda _: None))


def rows(lake: Lake, table: str, run_id: str) -> list[dict]:
    return lake.read(table, run_id).to_pylist()


def test_runs_land_in_the_shared_tables_with_the_json_figures(lmeval_settings: Settings) -> None:
    outcomes = ingest(lmeval_settings)
    ids = run_ids(lmeval_settings.lmeval)
    assert {r: o.status for r, o in outcomes.items()} == dict.fromkeys(ids.values(), "ok")
    lake = Lake(lmeval_settings.lake)
    for revision, run_id in ids.items():
        raw = json.loads((lmeval_settings.lmeval / f"{run_id}.json").read_text())
        [run] = rows(lake, "runs", run_id)
        assert (run["source"], run["model"], run["revision"]) == (
            "lm-eval",
            "acme/tiny-lm",
            revision,
        )
        assert run["source_version"] == raw["lm_eval_version"]
        assert json.loads(run["config"]) == raw["config"]
        assert run["evaluated_at"].timestamp() == pytest.approx(raw["date"])
        results = {r["task_name"]: r for r in rows(lake, "task_results", run_id)}
        assert set(results) == set(raw["results"])
        for name, entry in raw["results"].items():
            row = results[name]
            assert json.loads(row["metrics"]) == entry
            assert row["is_aggregate"] == (name in raw.get("groups", {}))
            config = json.loads(row["task_config"])
            assert config["num_fewshot"] == raw["n-shot"][name]
            assert config["metadata"]["version"] == raw["versions"][name]
            if not row["is_aggregate"]:
                assert row["num_instances"] == raw["n-samples"][name]["effective"]
                assert json.loads(row["task_config"]) == raw["configs"][name]
        metrics = {
            (m["task_name"], m["metric"], m["filter"]): (m["value"], m["stderr"])
            for m in rows(lake, "task_metrics", run_id)
        }
        expected = {
            (task, key.split(",")[0], key.split(",")[1]): (
                value,
                entry[key.replace(",", "_stderr,")],
            )
            for task, entry in raw["results"].items()
            for key, value in entry.items()
            if "," in key and "_stderr," not in key
        }
        assert metrics == expected
    scores = {r["task_name"]: r for r in rows(lake, "task_results", ids["step100"])}
    assert scores["toy_colors"]["primary_metric"] == "acc"
    assert scores["toy_sums"]["primary_metric"] == "exact_match,raw"
    suite = {r["task_name"]: r for r in rows(lake, "task_results", ids["step200"])}["toy_suite"]
    assert (suite["primary_metric"], suite["num_instances"]) == ("acc", 6)


def test_predictions_hold_every_sample_and_none_without_log_samples(
    lmeval_settings: Settings,
) -> None:
    ingest(lmeval_settings)
    ids = run_ids(lmeval_settings.lmeval)
    lake = Lake(lmeval_settings.lake)
    predictions = rows(lake, "predictions", ids["step100"])
    assert {(p["task_name"], p["doc_id"]) for p in predictions} == {
        *(("toy_colors", i) for i in range(6)),
        *(("toy_sums", i) for i in range(5)),
    }
    sums = next(p for p in predictions if p["task_name"] == "toy_sums" and p["doc_id"] == 1)
    assert sums["label"] == "2" and sums["native_id"] == "s1"
    assert json.loads(sums["model_output"]) == {
        "resps": [["lol"]],
        "filtered_resps": {"strict-match": ["[invalid]"], "raw": ["lol"]},
    }
    assert lake.read("predictions", ids["step300"]).num_rows == 0
    choices = {
        run: {
            (c["task_name"], c["n_choices"], c["generative"])
            for c in rows(lake, "task_choices", ids[run])
        }
        for run in ("step100", "step300")
    }
    assert choices["step100"] == {("toy_colors", 6, False), ("toy_sums", 0, True)}
    assert choices["step300"] == {("toy_sums", 0, True)}, "choices are counted from samples"
    checks = {c["check"]: c for c in rows(lake, "run_checks", ids["step300"])}
    assert checks["predictions_match_num_instances"]["passed"]
    assert "without --log_samples" in checks["predictions_match_num_instances"]["description"]
    assert all(c["passed"] for c in checks.values())


def test_a_group_that_is_not_its_members_mean_quarantines_the_run(
    lmeval_settings: Settings,
) -> None:
    run_id = run_ids(lmeval_settings.lmeval)["step200"]
    path = lmeval_settings.lmeval / f"{run_id}.json"
    raw = json.loads(path.read_text())
    raw["results"]["toy_suite"]["acc,none"] = 0.9
    path.write_text(json.dumps(raw))
    outcome = ingest(lmeval_settings)[run_id]
    assert outcome.status == "quarantined"
    failed = {c.outcome.check: c.outcome for c in outcome.checks if not c.outcome.passed}
    assert set(failed) == {"aggregates_match_members"}
    assert "toy_suite" in failed["aggregates_match_members"].description


def test_samples_that_disagree_with_the_scores_warn(lmeval_settings: Settings) -> None:
    run_id = run_ids(lmeval_settings.lmeval)["step100"]
    samples = next(
        lmeval_settings.lmeval.glob(f"{run_id.replace('results_', 'samples_toy_colors_')}.jsonl")
    )
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    lines[0]["acc"] = 1.0 - lines[0]["acc"]
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    outcome = ingest(lmeval_settings)[run_id]
    assert outcome.status == "ok", "an informational check"
    failed = [c.outcome for c in outcome.checks if not c.outcome.passed]
    assert [o.check for o in failed] == ["samples_match_scores"]
    assert "toy_colors | acc" in failed[0].metadata["offending_rows"]


def test_bad_input_fails_the_run_alone_and_lost_samples_keep_the_published_version(
    lmeval_settings: Settings,
) -> None:
    ids = run_ids(lmeval_settings.lmeval)
    assert all(o.status == "ok" for o in ingest(lmeval_settings).values())
    samples = next(
        lmeval_settings.lmeval.glob(
            f"{ids['step100'].replace('results_', 'samples_toy_sums_')}.jsonl"
        )
    )
    samples.unlink()
    broken = lmeval_settings.lmeval / f"{ids['step300']}.json"
    broken.write_text(broken.read_text()[:-10])
    outcomes = ingest(lmeval_settings)
    assert isinstance(outcomes[ids["step100"]], DumpFormatError)
    assert "1 files disappeared since the last ingest" in str(outcomes[ids["step100"]])
    assert isinstance(outcomes[ids["step300"]], DumpFormatError)
    assert f"{broken}:" in str(outcomes[ids["step300"]])
    assert outcomes[ids["step200"]].status == "ok"
    lake = Lake(lmeval_settings.lake)
    kept = lake.read("predictions", ids["step100"])
    assert set(kept["task_name"].to_pylist()) == {"toy_colors", "toy_sums"}
    [status] = rows(lake, "run_status", ids["step100"])
    assert (status["status"], status["attempt_status"]) == ("ok", "failed")
