"""`evalpipe snapshots pin|unpin`, `evalpipe retention plan` and `evalpipe archive` errors, as a
user types them."""

from datetime import timedelta
from pathlib import Path

import pytest

from evalpipe.cli import main
from evalpipe.snapshots.manifests import take_snapshot
from evalpipe_tests.snapshots.backends import NOW, make_tree


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    for key, value in {
        "EVALPIPE_HOME": home,
        "EVALPIPE_DUMPS": home / "dumps",
        "DAGSTER_HOME": tmp_path / "dagster",
    }.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.delenv("EVALPIPE_RETENTION_FILE", raising=False)
    monkeypatch.delenv("EVALPIPE_SNAPSHOT_TARGET", raising=False)
    return home


def test_a_pinned_snapshot_is_listed_as_kept_by_the_plan(env: Path, capsys) -> None:
    sources = make_tree(env)
    target = (env / "snapshots").as_uri()
    first = take_snapshot(sources, target, now=NOW).snapshot_id
    for day in (1, 2):
        (env / "dumps" / "new.txt").write_text(f"changed on day {day}")
        take_snapshot(sources, target, now=NOW + timedelta(days=day))
    policy = env.parent / "policy.toml"
    policy.write_text(
        "[snapshots]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n"
    )
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVALPIPE_RETENTION_FILE", str(policy))
        assert main(["snapshots", "pin", first]) == 0
        assert f"pinned snapshot {first}" in capsys.readouterr().out
        assert main(["retention", "plan"]) == 0
        out = capsys.readouterr().out
        assert f"snapshot {first}: pinned" in out
        assert out.count("expire_snapshot") == 1  # the middle one
        assert main(["snapshots", "unpin", first]) == 0
        assert capsys.readouterr().out.startswith(f"unpinned snapshot {first}")
        assert main(["retention", "plan", "--format", "csv"]) == 0
        rows = capsys.readouterr().out.splitlines()
        assert rows[0] == "action,target,reason,bytes"
        assert any(row.startswith(f"expire_snapshot,{first},") for row in rows)


def test_mistakes_are_one_line_errors(env: Path, capsys) -> None:
    assert main(["snapshots", "pin", "209901010000"]) == 1
    assert "error: no snapshot 209901010000" in capsys.readouterr().err
    assert main(["archive", "restore", "0123456789abcdef"]) == 2
    assert "error: no archive '0123456789abcdef'" in capsys.readouterr().err
    bad = env.parent / "bad.toml"
    bad.write_text("[objects]\ngrace_hours = 1\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVALPIPE_RETENTION_FILE", str(bad))
        assert main(["retention", "plan"]) == 2
    assert f"error: {bad}:2: [objects] grace_hours must be at least 24" in capsys.readouterr().err
