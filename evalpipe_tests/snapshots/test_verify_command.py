"""`evalpipe snapshots verify`: a summary for people by default, every --format of the CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest

from evalpipe.cli import main
from evalpipe.snapshots.manifests import object_key, take_snapshot
from evalpipe_tests.snapshots.backends import BASE_ID, NOW, PREDICTIONS, make_tree

GONE = "reconstructed/olmo-7b/metrics-all.jsonl"


def verify(capsys: pytest.CaptureFixture[str], store: Path, *options: str) -> tuple[int, str]:
    status = main(["snapshots", "--target", store.as_uri(), "verify", *options])
    return status, capsys.readouterr().out


def test_verify_prints_a_summary_table_by_default_and_accepts_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, store = tmp_path / "home", tmp_path / "store"
    take_snapshot(make_tree(home), store.as_uri(), now=NOW)

    status, out = verify(capsys, store)
    assert status == 0
    assert out.startswith(f"snapshot {BASE_ID}: 6 files re-hashed (") and out.endswith("; ok\n")

    victim = store / object_key(hashlib.sha256((home / PREDICTIONS).read_bytes()).hexdigest())
    victim.write_bytes(b"X" + victim.read_bytes()[1:])
    (store / object_key(hashlib.sha256((home / GONE).read_bytes()).hexdigest())).unlink()

    status, out = verify(capsys, store)
    assert status == 1
    summary, table = out.split("\n", 1)
    assert summary.endswith("; 1 missing, 1 corrupted")
    assert table.split("\n")[0].split() == ["problem", "path"]
    assert ["missing", GONE] in [line.split() for line in table.splitlines()]
    assert ["corrupted", PREDICTIONS] in [line.split() for line in table.splitlines()]

    status, out = verify(capsys, store, "--format", "json")
    report = json.loads(out)
    assert status == 1 and report["ok"] is False and report["snapshot_id"] == BASE_ID
    assert (report["missing"], report["corrupted"], report["invalid"]) == (
        [GONE],
        [PREDICTIONS],
        [],
    )
    assert {"manifest_ok", "checked", "bytes_checked"} <= report.keys()

    status, out = verify(capsys, store, "--format", "csv")
    assert status == 1
    assert list(csv.reader(io.StringIO(out))) == [
        ["problem", "path"],
        ["missing", GONE],
        ["corrupted", PREDICTIONS],
    ]

    status, out = verify(capsys, store, BASE_ID, "--format", "markdown")
    assert status == 1 and "| problem | path |" in out and f"| missing | {GONE} |" in out


def test_verify_in_a_log_prints_a_few_progress_lines_not_one_per_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, store = tmp_path / "home", tmp_path / "store"
    for i in range(200):
        (home / "lake" / "many").mkdir(parents=True, exist_ok=True)
        (home / "lake" / "many" / f"file{i:03d}.txt").write_text(str(i))
    take_snapshot(make_tree(home), store.as_uri(), now=NOW)

    status = main(["snapshots", "--target", store.as_uri(), "verify"])

    captured = capsys.readouterr()  # stderr is not a terminal here: a log
    assert status == 0 and ": 206 files re-hashed" in captured.out
    assert 0 < len(captured.err.splitlines()) <= 12, captured.err


def test_restore_speaks_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home, store = tmp_path / "home", tmp_path / "store"
    take_snapshot(make_tree(home), store.as_uri(), now=NOW)
    target = ["snapshots", "--target", store.as_uri()]

    status = main([*target, "restore", BASE_ID, "--to", str(tmp_path / "out"), "--format", "json"])

    answer = json.loads(capsys.readouterr().out)
    assert status == 0 and answer["snapshot_id"] == BASE_ID and answer["files"] == 6
