"""The OLMES reader handles every quirk of real dumps (shared/docs/olmes-dump-format.md)."""

import json
import os
from pathlib import Path

import pytest

from evalpipe.core.jsonl import DumpFormatError
from evalpipe.sources.olmes.reader import (
    find_run_dirs,
    index_task_files,
    read_metrics_all,
    read_run,
    run_id_for,
    scan_dumps,
    scan_run,
)
from evalpipe_tests.conftest import is_old_format, run_dirs_where


def metrics_lines(run_dir: Path) -> list[bytes]:
    return [line for line in (run_dir / "metrics-all.jsonl").read_bytes().split(b"\n") if line]


def test_run_directories_are_found_at_any_depth(pristine_dumps: Path) -> None:
    runs = find_run_dirs(pristine_dumps)
    depths = {len(run_id_for(pristine_dumps, r).split("/")) for r in runs}
    assert len(runs) == 4
    assert len(depths) > 1, "the sample puts one run directory deeper than the others"
    assert all("\\" not in run_id_for(pristine_dumps, r) for r in runs)


def test_aggregates_come_first_with_null_task_idx_and_are_kept(pristine_dumps: Path) -> None:
    for run_dir in find_run_dirs(pristine_dumps):
        run = read_run(run_dir)
        from_file = [r for r in run.records if r.source == "metrics-all"]
        aggregates = [r for r in from_file if r.task_idx is None]
        assert aggregates, run_dir
        assert all(r.is_aggregate for r in aggregates)
        assert from_file[: len(aggregates)] == aggregates
        assert all(not run.task_files.get(a.task_name) for a in aggregates)


def test_exact_duplicate_lines_are_dropped_and_counted(pristine_dumps: Path) -> None:
    with_dupes = run_dirs_where(
        pristine_dumps, lambda d: len(set(metrics_lines(d))) < len(metrics_lines(d))
    )
    assert with_dupes, "the sample has a run with duplicate lines"
    for run_dir in with_dupes:
        lines = metrics_lines(run_dir)
        parsed = read_metrics_all(run_dir / "metrics-all.jsonl")
        assert parsed.duplicates_dropped == len(lines) - len(set(lines))
        assert len(parsed.records) == len(set(lines))
        assert not parsed.findings


def test_reused_task_prefixes_are_matched_by_task_name(pristine_dumps: Path) -> None:
    for run_dir in find_run_dirs(pristine_dumps):
        tasks, _ = index_task_files(run_dir)
        prefixes = [t.task_idx for t in tasks.values()]
        if len(prefixes) == len(set(prefixes)):
            continue
        records = {r.task_name: r for r in read_run(run_dir).records}
        for name, files in tasks.items():
            assert all(f"-{name}-" in p.name for p in files.paths.values())
            if name in records and records[name].source == "metrics-all":
                assert records[name].task_idx == files.task_idx
        return
    pytest.fail("the sample has a run directory reusing a task-NNN prefix")


def test_vestigial_metrics_files_are_ignored(pristine_dumps: Path) -> None:
    run_dir = run_dirs_where(pristine_dumps, lambda d: (d / "metrics.jsonl").exists())[0]
    assert all(
        not line.startswith(b"{") for line in (run_dir / "metrics.jsonl").read_bytes().split()
    )
    names = {r.task_name for r in read_run(run_dir).records}
    unique_lines = {json.loads(line)["task_name"] for line in metrics_lines(run_dir)}
    assert names == unique_lines


def test_old_format_tasks_present_only_as_artifacts_get_rows(pristine_dumps: Path) -> None:
    run_dir = run_dirs_where(pristine_dumps, is_old_format)[0]
    run = read_run(run_dir)
    artifact_only = [r for r in run.records if r.source == "artifacts"]
    assert artifact_only, "the old-format sample run has tasks missing from metrics-all.jsonl"
    for record in artifact_only:
        predictions = run.task_files[record.task_name].get("predictions.jsonl")
        rows = predictions.read_bytes().count(b"\n")
        assert record.record["num_instances"] == rows
        assert record.record["metrics"] is None
        assert record.task_idx is not None and not record.is_aggregate


def test_huge_limit_integers_survive(pristine_dumps: Path) -> None:
    found = False
    for run_dir in find_run_dirs(pristine_dumps):
        for record in read_run(run_dir).records:
            limit = (record.record.get("task_config") or {}).get("limit")
            if isinstance(limit, int) and limit > 2**63:
                found = True
                assert limit == 10_000_000_000_000_000_000
    assert found


def test_raw_line_bytes_are_kept_for_byte_exact_reconstruction(pristine_dumps: Path) -> None:
    for run_dir in find_run_dirs(pristine_dumps):
        lines = set(metrics_lines(run_dir))
        for record in read_metrics_all(run_dir / "metrics-all.jsonl").records:
            assert record.raw in lines


def _rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_conflicting_records_keep_the_latest_date_and_report_it(dumps: Path) -> None:
    run_dir = find_run_dirs(dumps)[0]
    lines = metrics_lines(run_dir)
    record = json.loads(lines[-1])
    newer = {**record, "current_date": "2031-01-01 00:00:00 UTC", "metrics": {"primary_score": 0.9}}
    older = {**record, "current_date": "2020-01-01 00:00:00 UTC", "metrics": {"primary_score": 0.1}}
    _rewrite(
        run_dir / "metrics-all.jsonl",
        [json.dumps(newer).encode(), *lines, json.dumps(older).encode()],
    )
    parsed = read_metrics_all(run_dir / "metrics-all.jsonl")
    kept = {r.task_name: r for r in parsed.records}[record["task_name"]]
    assert kept.record["current_date"] == "2031-01-01 00:00:00 UTC"
    assert len(parsed.findings) == 2
    assert all(f.kind == "conflicting_records" for f in parsed.findings)
    assert record["task_name"] in parsed.findings[0].message


def test_record_without_task_name_is_an_error_naming_the_line(dumps: Path) -> None:
    run_dir = find_run_dirs(dumps)[0]
    lines = metrics_lines(run_dir)
    broken = json.loads(lines[1])
    del broken["task_name"]
    _rewrite(run_dir / "metrics-all.jsonl", [lines[0], json.dumps(broken).encode(), *lines[2:]])
    with pytest.raises(DumpFormatError, match=r"metrics-all\.jsonl:2: record has no 'task_name'"):
        read_run(run_dir)


def test_fingerprint_changes_when_a_file_changes_and_settle_waits(dumps: Path) -> None:
    run_dir = find_run_dirs(dumps)[0]
    before = scan_run(run_dir, dumps)
    assert before.complete
    target = run_dir / "metrics-all.jsonl"
    with target.open("ab") as handle:
        handle.write(b"\n")
    os.utime(target, ns=(before.files[0].mtime_ns + 10**9, before.files[0].mtime_ns + 10**9))
    after = scan_run(run_dir, dumps)
    assert after.fingerprint != before.fingerprint
    assert not after.settled(now=after.newest_mtime + 5, settle_seconds=30)
    assert after.settled(now=after.newest_mtime + 31, settle_seconds=30)


def test_half_written_directory_without_results_is_not_a_run(tmp_path: Path) -> None:
    partial = tmp_path / "dumps" / "d" / "_eval_results" / "org_model__main"
    partial.mkdir(parents=True)
    (partial / "task-000-x-requests.jsonl").write_text("{}\n")
    assert find_run_dirs(tmp_path / "dumps") == []
    assert scan_dumps(tmp_path / "dumps").runs == []


def test_entries_that_must_not_be_read_are_refused_without_being_opened(
    dumps: Path, tmp_path: Path
) -> None:
    run_dir = find_run_dirs(dumps)[0]
    outside = tmp_path / "secret.txt"
    outside.write_text("root:x:0:0\n")
    (run_dir / "task-099-leak-predictions.jsonl").symlink_to(outside)
    os.mkfifo(run_dir / "task-098-pipe-requests.jsonl")
    inside = run_dir / "task-097-alias-recorded-inputs.jsonl"
    inside.symlink_to(next(run_dir.glob("*-recorded-inputs.jsonl")))
    inventory = scan_run(run_dir, dumps)
    assert [p.split(" ", 1)[0] for p in inventory.problems] == [
        "task-098-pipe-requests.jsonl",
        "task-099-leak-predictions.jsonl",
    ]
    assert "outside" in inventory.problems[1] and str(outside) in inventory.problems[1]
    assert inside.name in {f.name for f in inventory.files}, "a symlink inside the root is fine"
    with pytest.raises(DumpFormatError, match="not a regular file"):
        inventory.refuse_problems()


def test_a_fifo_metrics_all_makes_a_run_that_fails_rather_than_hangs(tmp_path: Path) -> None:
    run_dir = tmp_path / "dumps" / "d" / "org_model__main"
    run_dir.mkdir(parents=True)
    os.mkfifo(run_dir / "metrics-all.jsonl")
    [scan] = scan_dumps(tmp_path / "dumps").runs
    assert scan.inventory.complete and scan.inventory.problems


def test_hidden_unreadable_and_symlinked_directories_are_skipped_and_reported(
    dumps: Path, tmp_path: Path
) -> None:
    runs_before = len(scan_dumps(dumps).runs)
    (dumps / ".trash").mkdir()
    (dumps / "elsewhere").symlink_to(tmp_path)
    locked = dumps / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        found = scan_dumps(dumps)
    finally:
        locked.chmod(0o755)
    assert len(found.runs) == runs_before, "one bad entry does not stop the others"
    reasons = "\n".join(found.skipped)
    assert ".trash: hidden directory" in reasons
    assert "elsewhere: a symlinked directory" in reasons
    if os.geteuid() != 0:  # root can list a mode-000 directory
        assert "locked: cannot list directory" in reasons
