"""`evalpipe validate`, `evalpipe success-rates` and `evalpipe agreement` as a person runs them."""

import json
from pathlib import Path

import pytest

from evalpipe.cli import main
from evalpipe.sources.vmeval.samples import HOSTILE_FAULTS, generate_datasets


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vmeval_cli") / "datasets"
    generate_datasets(root, datasets=1, questions=3, seed=2, hostile=True)
    return root


def test_validate_exits_0_on_a_clean_root_and_prints_a_table(roots: Path, capsys) -> None:
    assert main(["validate", str(roots / "lab0" / "v1")]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].split() == [
        "dataset",
        "path",
        "code",
        "severity",
        "message",
    ]
    assert "0 errors, 1 warnings" in captured.err


def test_validate_json_lists_every_issue_and_exits_1_on_errors(roots: Path, capsys) -> None:
    assert main(["validate", str(roots / "hostile"), "--format", "json"]) == 1
    issues = json.loads(capsys.readouterr().out)
    assert all(set(i) == {"dataset", "path", "code", "severity", "message"} for i in issues)
    errors = sorted((i["code"], i["path"]) for i in issues if i["severity"] == "error")
    assert errors == sorted(HOSTILE_FAULTS.items())
    assert {i["dataset"] for i in issues} == {"hostile"}


@pytest.mark.parametrize("fmt", ["markdown", "csv"])
def test_validate_renders_other_formats(roots: Path, capsys, fmt: str) -> None:
    assert main(["validate", str(roots / "hostile"), "--format", fmt]) == 1
    out = capsys.readouterr().out
    assert "invalid_score" in out and "questions/vmeval_dataset.json" in out


def test_validate_bad_usage_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path / "absent")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(tmp_path), "--format", "xml"])
    assert exit_info.value.code == 2


def test_success_rates_and_agreement_after_ingest(
    roots: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("EVALPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EVALPIPE_DUMPS", str(tmp_path / "no_dumps"))
    monkeypatch.setenv("EVALPIPE_DATASETS", str(roots))
    monkeypatch.setenv("EVALPIPE_SETTLE_SECONDS", "0")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert main(["ingest"]) == 1, "the hostile root is quarantined"
    captured = capsys.readouterr()
    assert "vmeval:hostile: vm_questions.manifest_has_no_errors" in captured.err
    assert main(["success-rates", "--evaluator", "gpt4o-eval", "--format", "json"]) == 0
    overall = json.loads(capsys.readouterr().out)
    assert {r["domain"] for r in overall} == {"(all)"}
    assert {r["model"] for r in overall} == {"luma-ray-2", "veo-3"}
    assert main(["success-rates", "--by", "domain", "--format", "json"]) == 0
    per_domain = json.loads(capsys.readouterr().out)
    assert {r["evaluator"] for r in per_domain} == {"gpt4o-eval", "human-eval"}
    assert "(all)" not in {r["domain"] for r in per_domain}
    for model in ("luma-ray-2", "veo-3"):
        rows = [r for r in per_domain if r["model"] == model and r["evaluator"] == "gpt4o-eval"]
        (total,) = [r for r in overall if r["model"] == model]
        assert sum(r["n_scored"] for r in rows) == total["n_scored"]
        assert sum(r["successes"] for r in rows) == total["successes"]
    assert main(["agreement", "--format", "json"]) == 0
    (pair,) = json.loads(capsys.readouterr().out)
    assert (pair["evaluator_a"], pair["evaluator_b"]) == ("gpt4o-eval", "human-eval")
    assert 0 < pair["n"] <= sum(r["n_scored"] for r in overall)


def test_validate_names_a_root_below_evalpipe_datasets_by_its_key(
    roots: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("EVALPIPE_DATASETS", str(roots))
    assert main(["validate", str(roots / "lab0" / "v1"), "--format", "json"]) == 0
    assert {i["dataset"] for i in json.loads(capsys.readouterr().out)} == {"lab0/v1"}
