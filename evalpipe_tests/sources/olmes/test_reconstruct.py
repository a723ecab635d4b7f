"""Per-task artifacts rebuilt from metrics-all.jsonl match the originals byte for byte."""

import json
from pathlib import Path

from evalpipe.sources.olmes.reader import read_run
from evalpipe.sources.olmes.reconstruct import plan_reconstruction, task_file_name
from evalpipe_tests.conftest import is_old_format, run_dirs_where


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_an_old_format_run_gets_byte_identical_metrics_files(dumps: Path, tmp_path: Path) -> None:
    new_format = run_dirs_where(dumps, lambda d: not is_old_format(d))[0]
    originals = {p.name: p.read_bytes() for p in new_format.glob("task-*-metrics.json")}
    configs = {p.name: json.loads(p.read_bytes()) for p in new_format.glob("task-*-config.json")}
    for name in [*originals, *configs]:
        (new_format / name).unlink()
    source_before = snapshot(new_format)

    rebuilt, report = plan_reconstruction(read_run(new_format))

    assert {n: b for n, b in rebuilt.items() if n.endswith("-metrics.json")} == originals
    assert {n: json.loads(b) for n, b in rebuilt.items() if n.endswith("-config.json")} == configs
    assert sorted(report.written) == sorted([*originals, *configs])
    assert report.mismatches == [] and report.compared == 0
    assert snapshot(new_format) == source_before


def test_a_new_format_run_is_compared_and_differences_are_reported(
    dumps: Path, tmp_path: Path
) -> None:
    run_dir = run_dirs_where(dumps, lambda d: not is_old_format(d))[0]
    metrics_file = sorted(run_dir.glob("task-*-metrics.json"))[0]
    metrics_file.write_bytes(
        metrics_file.read_bytes().replace(b'"primary_score": 0.', b'"primary_score": 1.')
    )
    config_file = sorted(run_dir.glob("task-*-config.json"))[1]
    config = json.loads(config_file.read_bytes())
    config["num_shots"] = 99
    config_file.write_text(json.dumps(config))

    files, report = plan_reconstruction(read_run(run_dir))

    assert report.written == [] and files == {}
    assert report.compared == 2 * len(list(run_dir.glob("task-*-metrics.json")))
    assert [(m.kind, m.path) for m in report.mismatches] == [
        ("metrics.json", metrics_file),
        ("config.json", config_file),
    ]
    assert report.mismatches[1].detail == "keys differ: num_shots"
    assert report.mismatches[0].detail.startswith("bytes differ from offset")


def test_config_files_written_with_other_whitespace_are_not_mismatches(
    dumps: Path, tmp_path: Path
) -> None:
    run_dir = run_dirs_where(dumps, lambda d: not is_old_format(d))[0]
    for path in run_dir.glob("task-*-config.json"):
        path.write_text(json.dumps(json.loads(path.read_bytes()), separators=(",", ":")))
    assert plan_reconstruction(read_run(run_dir))[1].mismatches == []


def test_task_names_with_slashes_or_dots_are_written_inside_the_run_directory() -> None:
    name = task_file_name(3, "../../etc/evil/..", "metrics.json")
    assert "/" not in name and name == "task-003-..%2F..%2Fetc%2Fevil%2F..-metrics.json"
    assert task_file_name(1, "100%/x", "config.json") == "task-001-100%25%2Fx-config.json"
