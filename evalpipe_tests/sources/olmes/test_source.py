"""One OLMES run in, its tables out, committed whole: what the published version holds after
good, bad, emptied, shrunken, quarantined and hostile new versions of a run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalpipe.core.config import Settings
from evalpipe.core.jsonl import DumpFormatError
from evalpipe.sources.olmes.reader import find_run_dirs, run_id_for
from evalpipe.sources.olmes.source import OLMES
from evalpipe.storage.lake import Lake


def ingest(settings: Settings, run_dir: Path):
    """Ingest one run directory; returns its RunResult or the exception that failed it."""
    run_id = run_id_for(settings.dumps, run_dir)
    scans = [s for s in OLMES.scan(settings.dumps).runs if s.run_id == run_id]
    [(_, outcome)] = list(OLMES.ingest(scans, settings, progress=lambda _: None))
    return outcome


def scores(settings: Settings, run_dir: Path) -> dict[str, float]:
    table = Lake(settings.lake).read("task_results", run_id_for(settings.dumps, run_dir))
    return dict(
        zip(table["task_name"].to_pylist(), table["primary_score"].to_pylist(), strict=True)
    )


def status(settings: Settings, run_dir: Path) -> dict:
    lake = Lake(settings.lake)
    return lake.read("run_status", run_id_for(settings.dumps, run_dir)).to_pylist()[0]


def rewrite(run_dir: Path, edit) -> None:
    path = run_dir / "metrics-all.jsonl"
    lines = [edit(json.loads(line)) for line in path.read_text().splitlines() if line]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))


@pytest.fixture
def run_dir(settings: Settings) -> Path:
    run_dir = find_run_dirs(settings.dumps)[0]
    assert not isinstance(ingest(settings, run_dir), Exception)
    return run_dir


def first_task(run_dir: Path) -> str:
    return json.loads((run_dir / "metrics-all.jsonl").read_text().splitlines()[-1])["task_name"]


def test_a_failed_reingest_publishes_nothing_new_and_is_marked_failed(
    settings: Settings, run_dir: Path
) -> None:
    before = scores(settings, run_dir)
    task = first_task(run_dir)
    rewrite(run_dir, lambda r: {**r, "metrics": {**r["metrics"], "primary_score": 0.123}})
    predictions = sorted(run_dir.glob("*-predictions.jsonl"))[0]
    predictions.write_bytes(predictions.read_bytes() + b'{"doc_id": 1, "x": "\xff"}\n')

    outcome = ingest(settings, run_dir)
    assert isinstance(outcome, DumpFormatError) and "invalid UTF-8" in str(outcome)
    assert scores(settings, run_dir) == before, "the new score must not be published"
    assert before[task] != 0.123
    row = status(settings, run_dir)
    assert row["status"] == "ok" and row["attempt_status"] == "failed"
    assert str(predictions) in row["attempt_reason"]


def test_an_emptied_metrics_all_is_an_error_not_an_update(
    settings: Settings, run_dir: Path
) -> None:
    before = scores(settings, run_dir)
    (run_dir / "metrics-all.jsonl").write_bytes(b"")
    outcome = ingest(settings, run_dir)
    assert isinstance(outcome, DumpFormatError)
    assert "metrics-all.jsonl: no records, where the published version had" in str(outcome)
    assert scores(settings, run_dir) == before


def test_a_run_directory_that_lost_files_is_an_error_naming_them(
    settings: Settings, run_dir: Path
) -> None:
    gone = sorted(run_dir.glob("*-requests.jsonl"))[0]
    gone.unlink()
    outcome = ingest(settings, run_dir)
    assert isinstance(outcome, DumpFormatError)
    assert "1 files disappeared since the last ingest" in str(outcome) and gone.name in str(outcome)


def test_a_quarantined_new_version_keeps_the_previous_one_published(
    settings: Settings, run_dir: Path
) -> None:
    before = scores(settings, run_dir)
    rewrite(run_dir, lambda r: {**r, "metrics": {**r["metrics"], "primary_score": 7.5}})
    outcome = ingest(settings, run_dir)
    assert outcome.status == "quarantined"
    assert scores(settings, run_dir) == before, "the out-of-range scores are not published"
    row = status(settings, run_dir)
    assert row["status"] == "ok" and row["attempt_status"] == "quarantined"
    assert "task_results_schema_and_ranges" in row["attempt_reason"]


def test_a_quarantined_first_version_is_published_for_inspection(settings: Settings) -> None:
    run_dir = find_run_dirs(settings.dumps)[1]
    rewrite(run_dir, lambda r: {**r, "metrics": {**r["metrics"], "primary_score": 7.5}})
    assert ingest(settings, run_dir).status == "quarantined"
    assert set(scores(settings, run_dir).values()) - {None} == {7.5}
    assert status(settings, run_dir)["status"] == "quarantined"


def test_a_duplicate_key_in_a_record_is_an_error_naming_file_and_line(
    settings: Settings,
) -> None:
    run_dir = find_run_dirs(settings.dumps)[1]
    path = run_dir / "metrics-all.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"task_name":', '"task_name": "shadow", "task_name":', 1)
    path.write_text("\n".join(lines) + "\n")
    outcome = ingest(settings, run_dir)
    assert isinstance(outcome, DumpFormatError)
    assert str(outcome).startswith(f"{path}:2: duplicate key 'task_name'")


def test_nan_in_instance_metrics_is_counted_and_reported_as_a_warning(
    settings: Settings,
) -> None:
    run_dir = find_run_dirs(settings.dumps)[1]
    predictions = sorted(run_dir.glob("*-predictions.jsonl"))[0]
    lines = predictions.read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    for row in rows[:2]:
        row["metrics"] = {**(row.get("metrics") or {}), "acc": float("nan")}
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outcome = ingest(settings, run_dir)
    [check] = [
        c.outcome for c in outcome.checks if c.outcome.check == "instance_metrics_are_finite"
    ]
    assert not check.passed and check.severity == "WARN" and check.metadata["rows"] == 2
    assert outcome.status == "ok", "a warning does not quarantine"


def test_a_symlink_out_of_the_dumps_root_fails_the_run_unread(
    settings: Settings, run_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0\n")
    (run_dir / "task-090-leak-predictions.jsonl").symlink_to(secret)
    outcome = ingest(settings, run_dir)
    assert isinstance(outcome, DumpFormatError) and "outside" in str(outcome)
    lake = Lake(settings.lake)
    assert "root:x" not in lake.read_all("predictions").to_pandas().to_string()


REINGEST = """
import sys
from pathlib import Path
from evalpipe.core.config import load_settings
from evalpipe.sources.olmes.source import OLMES

settings = load_settings({"EVALPIPE_HOME": sys.argv[1], "EVALPIPE_DUMPS": sys.argv[2]})
scans = [s for s in OLMES.scan(settings.dumps).runs if s.run_id == sys.argv[3]]
print("ready", flush=True)
while True:
    for _ in OLMES.ingest(scans, settings, progress=lambda _: None):
        pass
"""


def test_kill_9_at_random_points_of_a_reingest_never_leaves_two_versions_visible(
    settings: Settings, run_dir: Path
) -> None:
    lake = Lake(settings.lake)
    run_id = run_id_for(settings.dumps, run_dir)
    v1 = scores(settings, run_dir)
    rewrite(run_dir, lambda r: {**r, "metrics": {**r["metrics"], "primary_score": 0.25}})
    rng = random.Random(3)
    for _ in range(6):
        writer = subprocess.Popen(
            [sys.executable, "-c", REINGEST, str(settings.home), str(settings.dumps), run_id],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout.readline() == "ready\n"
        time.sleep(rng.random() * 1.5)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        record = lake.record(run_id)
        data = {t: Path(f).stem for t, f in record["tables"].items() if t != "run_status"}
        assert len(set(data.values())) == 1, f"tables from two versions: {data}"
        assert scores(settings, run_dir) in (
            v1,
            {t: 0.25 if s is not None else None for t, s in v1.items()},
        )
