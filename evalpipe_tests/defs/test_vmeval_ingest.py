"""VMEvalKit data roots through Dagster: the sensor adds `vmeval_datasets` partitions, the
ingest fills the vm_* tables with exactly the valid rows, quarantines the hostile root, and
success rates over the healthy roots equal a count made by hand from the files."""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from evalpipe.core.config import Settings, load_settings
from evalpipe.definitions import build_definitions
from evalpipe.defs.resources import EvalpipeHome
from evalpipe.defs.runner import ingest
from evalpipe.defs.sources import range_tags
from evalpipe.defs.vmeval.definitions import VMEVAL_DEFS
from evalpipe.sources.vmeval.rates import wilson_interval
from evalpipe.sources.vmeval.samples import generate_datasets
from evalpipe.storage.lake import Lake
from evalpipe.storage.warehouse import query

KEYS = ["hostile", "lab0/v1", "lab1/v1"]
BAD_QUESTIONS = {
    "maze_0000",  # invalid_json
    "chess_0002",  # missing_file
    "sudoku_0000",  # path_escape
    "sudoku_0001",  # manifest_mismatch
    "mirror_clock_0000",  # bad_image
    "mirror_clock_0001",  # prompt_mismatch
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vmeval_defs") / "datasets"
    generate_datasets(root, datasets=2, questions=3, seed=11, hostile=True)
    return root


@pytest.fixture
def vm_settings(pristine: Path, tmp_path: Path) -> Settings:
    shutil.copytree(pristine, tmp_path / "datasets", symlinks=True)
    return load_settings(
        {
            "EVALPIPE_HOME": str(tmp_path / "home"),
            "EVALPIPE_DUMPS": str(tmp_path / "no_dumps"),
            "EVALPIPE_DATASETS": str(tmp_path / "datasets"),
            "EVALPIPE_SETTLE_SECONDS": "0",
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        }
    )


def test_sensor_adds_a_partition_per_data_root_and_requests_them(vm_settings: Settings) -> None:
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, resources={"evalpipe": EvalpipeHome.from_settings(vm_settings)}
        )
        result = VMEVAL_DEFS.sensor(context)
        (add,) = result.dynamic_partitions_requests
        assert add.partitions_def_name == "vmeval_datasets"
        assert sorted(add.partition_keys) == KEYS
        assert len(result.run_requests) == 1


def hand_counted_rates(root: Path, evaluator: str) -> dict[str, tuple[int, int, int]]:
    """model -> (scored, skipped, successes), read straight from the JSON files."""
    counts: dict[str, list[int]] = {}
    for path in root.glob(f"*/v1/evaluations/{evaluator}/*/*/*_task/*/*.json"):
        model = path.parts[-4]
        result = json.loads(path.read_text())["result"]
        score = result.get("solution_correctness_score")
        c = counts.setdefault(model, [0, 0, 0])
        if score is None:
            c[1] += 1
        else:
            c[0] += 1
            c[2] += score >= 4
    return {m: tuple(c) for m, c in counts.items()}


def test_ingest_fills_the_tables_with_exactly_the_valid_rows(vm_settings: Settings) -> None:
    with dg.instance_for_test() as instance:
        report = ingest(
            build_definitions(vm_settings), vm_settings, instance, progress=lambda m: None
        )
        assert sorted(o.run_id for o in report.outcomes) == KEYS
        assert [o.run_id for o in report.outcomes if o.quarantined] == ["hostile"]
        assert sorted(instance.get_dynamic_partitions("vmeval_datasets")) == KEYS
        check = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey(["vmeval", "vm_questions"]), "manifest_has_no_errors")
        )
        assert check is not None
    lake = Lake(vm_settings.lake)
    questions = lake.read_all("vm_questions").to_pandas()
    hostile = set(questions.loc[questions["dataset"] == "hostile", "question_id"])
    clean = set(questions.loc[questions["dataset"] == "lab0/v1", "question_id"])
    assert hostile == (clean | {"chess_0900"}) - BAD_QUESTIONS
    evaluations = lake.read_all("vm_evaluations").to_pandas()
    assert not (evaluations["score"] > 5).any()
    assert (
        len(evaluations[evaluations["dataset"] == "hostile"])
        == len(evaluations[evaluations["dataset"] == "lab0/v1"]) - 3
    ), (
        "left out: the evaluation without a result, the one with a score of 7, the one whose task_id differs"
    )
    issues = lake.read_all("vm_manifest_issues").to_pandas()
    assert set(issues.loc[issues["severity"] == "error", "dataset"]) == {"hostile"}

    _, rows = query(
        vm_settings.warehouse,
        "SELECT model, n_scored, n_skipped, successes, success_rate, ci_low, ci_high "
        "FROM vm_success_rates WHERE evaluator = 'gpt4o-eval' AND domain = '(all)' ORDER BY model",
    )
    expected = hand_counted_rates(vm_settings.datasets, "gpt4o-eval")
    assert {r[0]: r[1:4] for r in rows} == expected, "the hostile root is left out"
    for _model, scored, _skipped, wins, rate, low, high in rows:
        assert rate == pytest.approx(wins / scored)
        assert (low, high) == tuple(pytest.approx(v) for v in wilson_interval(wins, scored))
    page = (vm_settings.reports / "leaderboard.html").read_text()
    section = page[page.index('<section id="vmeval">') :]
    domains = {"chess", "maze", "sudoku", "mirror_clock", "arc_agi_2"}
    charts = section.count('<svg class="chart"')
    assert charts == len(domains) + 1, "one chart per domain, plus all domains"
    assert all(f"<h3>{d}</h3>" in section for d in domains)
    _, agreement = query(
        vm_settings.warehouse, "SELECT evaluator_a, evaluator_b, n FROM vm_evaluator_agreement"
    )
    assert [tuple(r) for r in agreement] == [
        ("gpt4o-eval", "human-eval", sum(e[0] for e in expected.values()))
    ]


def test_a_root_that_turns_bad_keeps_its_published_version_and_fails_alone(
    vm_settings: Settings,
) -> None:
    lake = Lake(vm_settings.lake)
    with dg.instance_for_test() as instance:
        defs = build_definitions(vm_settings)
        ingest(defs, vm_settings, instance, progress=lambda m: None)
        before = lake.read("vm_evaluations", "vmeval:lab0/v1")
        bad = next((vm_settings.datasets / "lab0/v1/evaluations/human-eval").glob("*/*/*/*/*.json"))
        bad.write_text('{"result": {"solution_correctness_score": 9}}')
        shutil.rmtree(vm_settings.datasets / "lab1/v1/questions")
        report = ingest(defs, vm_settings, instance, progress=lambda m: None)
        assert [(o.run_id, o.quarantined) for o in report.outcomes] == [("lab0/v1", True)]
    assert lake.read("vm_evaluations", "vmeval:lab0/v1").equals(before)
    status = lake.read("run_status", "vmeval:lab0/v1").to_pylist()[0]
    assert (status["status"], status["attempt_status"]) == ("ok", "quarantined")
    assert "invalid_score: 1" in status["attempt_reason"]
    assert lake.read("vm_questions", "vmeval:lab1/v1").num_rows == 15, "nothing deleted"


def test_a_vanished_data_root_fails_alone_in_a_batch(vm_settings: Settings) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("vmeval_datasets", ["gone", "lab0/v1"])
        result = dg.materialize(
            [VMEVAL_DEFS.assets],
            instance=instance,
            tags=range_tags("gone", "lab0/v1", 2),
            resources={"evalpipe": EvalpipeHome.from_settings(vm_settings)},
            raise_on_error=False,
        )
        assert not result.success
        key = dg.AssetKey(["vmeval", "vm_questions"])
        assert instance.get_materialized_partitions(key) == {"lab0/v1"}
    assert Lake(vm_settings.lake).read("vm_questions", "vmeval:lab0/v1").num_rows == 15


def test_a_data_root_that_lost_files_fails_naming_them_and_keeps_its_tables(
    vm_settings: Settings,
) -> None:
    lake = Lake(vm_settings.lake)
    with dg.instance_for_test() as instance:
        defs = build_definitions(vm_settings)
        ingest(defs, vm_settings, instance, progress=lambda m: None)
        before = lake.read("vm_evaluations", "vmeval:lab0/v1")
        shutil.rmtree(vm_settings.datasets / "lab0/v1/evaluations/gpt4o-eval")
        report = ingest(defs, vm_settings, instance, progress=lambda m: None)
    (failed,) = report.failed
    assert failed.run_id == "lab0/v1"
    assert "files disappeared since the last ingest" in failed.errors[0]
    assert "evaluations/gpt4o-eval/" in failed.errors[0]
    assert lake.read("vm_evaluations", "vmeval:lab0/v1").equals(before)
    status = lake.read("run_status", "vmeval:lab0/v1").to_pylist()[0]
    assert (status["status"], status["attempt_status"]) == ("ok", "failed")


def test_the_ui_shows_the_assets_checks_partitions_and_sensor(vm_settings: Settings) -> None:
    defs = build_definitions(vm_settings)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "vmeval/raw_dataset_inventory",
        "vmeval/vm_questions",
        "vmeval/vm_outputs",
        "vmeval/vm_evaluations",
        "vmeval/vm_manifest_issues",
        "vmeval/run_status",
        "vm_success_rates",
        "vm_evaluator_agreement",
    } <= keys
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("vmeval/vm_questions", "manifest_has_no_errors") in checks
    assert graph.get(dg.AssetKey(["vmeval", "vm_questions"])).partitions_def.name == (
        "vmeval_datasets"
    )
    sensor = defs.resolve_sensor_def("vmeval_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    warehouse_deps = graph.get(dg.AssetKey("warehouse")).parent_keys
    assert dg.AssetKey("vm_success_rates") in warehouse_deps
