"""The temp kind: what evalpipe's own interrupted writes left, swept after [archive.temp] days."""

import os
from dataclasses import replace
from pathlib import Path

from evalpipe.core.retention_policy import KindPolicy
from evalpipe.retention.plan import Scope, apply_retention, plan_retention
from evalpipe_tests.retention.test_archive import make_scope
from evalpipe_tests.snapshots.backends import Backend


def leave(path: Path, days: float, directory: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        path.mkdir()
        (path / "half.jsonl").write_text("{}\n")
        (path / "half.jsonl").touch()
    else:
        path.write_text("half written")
    when = path.stat().st_mtime - days * 86400
    for p in [path, *path.rglob("*")]:
        os.utime(p, (when, when))
    return path


def temp_targets(scope: Scope) -> set[Path]:
    return {
        Path(a.target)
        for a in plan_retention(scope)[0]
        if a.action == "sweep_partial" and "[archive.temp]" in a.reason
    }


def test_old_temp_files_go_young_ones_and_other_rules_files_stay(
    tmp_path: Path, backend: Backend
) -> None:
    scope = make_scope(tmp_path, backend, delete_local=False)
    home, dumps = scope.settings.home, scope.settings.dumps
    old = {
        leave(home / "reports" / ".index.html.0a1b2c3d4e5f.partial", 9),
        leave(dumps / ".run-a.0a1b2c3d4e5f.restoring", 8, directory=True),
        leave(home / "restored" / ".predictions.jsonl.0a1b2c3d4e5f.part", 30),
    }
    young = leave(home / ".warehouse.duckdb.0a1b2c3d4e5f.partial", 2)
    in_lake = leave(scope.lake.root / "derived" / ".archives.parquet.0a1b2c3d4e5f.partial", 9)
    not_temp = leave(home / "notes.partial", 30)  # not hidden: not ours

    assert temp_targets(scope) == old
    apply_retention(scope, progress=lambda line: None)
    assert not any(p.exists() for p in old)
    assert young.exists() and not_temp.exists()
    assert not in_lake.exists(), "the lake's own rule ([lake] partial_hours) swept it"
    assert temp_targets(scope) == set()

    leave(home / ".late.0a1b2c3d4e5f.partial", 9)
    archive = replace(scope.policy.archive, temp=KindPolicy(enabled=False))
    assert temp_targets(replace(scope, policy=replace(scope.policy, archive=archive))) == set()
