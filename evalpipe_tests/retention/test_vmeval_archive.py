"""VMEvalKit output experiments and evaluation folders: archived per kind, never questions;
the data root keeps its fingerprint and its lake rows when an archived folder goes."""

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from evalpipe.core.config import Settings, load_settings
from evalpipe.core.retention_policy import ArchivePolicy, KindPolicy, RetentionPolicy
from evalpipe.retention import archives_table
from evalpipe.retention.plan import Scope, apply_archive, plan_archive, restore_archive
from evalpipe.sources.olmes.samples import generate_dumps
from evalpipe.sources.olmes.source import OLMES
from evalpipe.sources.vmeval import layout
from evalpipe.sources.vmeval.layout import ARCHIVED_SUFFIX
from evalpipe.sources.vmeval.samples import generate_datasets
from evalpipe.sources.vmeval.source import VMEVAL, lake_run_id
from evalpipe.storage.lake import Lake
from evalpipe.storage.warehouse import build_warehouse, query
from evalpipe_tests.retention.crash import Crash
from evalpipe_tests.retention.test_interruptions import age
from evalpipe_tests.snapshots.backends import Backend, digests

QUIET = lambda line: None  # noqa: E731


def folder_mtimes(part: Path) -> dict[str, int]:
    return {
        d.relative_to(part).as_posix(): d.stat().st_mtime_ns
        for d in [part, *part.rglob("*")]
        if d.is_dir()
    }


def ingest(settings: Settings) -> None:
    """Ingest every data root; each must publish a new, healthy version."""
    lake = Lake(settings.lake)
    before = lake.record(lake_run_id("lab0/v1"))
    results = list(VMEVAL.ingest(VMEVAL.scan(settings.datasets).runs, settings, QUIET))
    assert [getattr(r, "status", r) for _, r in results] == ["ok"]
    assert lake.record(lake_run_id("lab0/v1")) != before, "a new version was published"


def make_scope(tmp_path: Path, backend: Backend, **kinds: KindPolicy) -> Scope:
    datasets = tmp_path / "datasets"
    if not datasets.exists():
        generate_datasets(datasets, datasets=1, questions=3, seed=4)
        age(datasets, 200)
    settings = load_settings(
        {
            "EVALPIPE_HOME": str(tmp_path / "home"),
            "EVALPIPE_DUMPS": str(tmp_path / "no_dumps"),
            "EVALPIPE_DATASETS": str(datasets),
        }
    )
    archive = ArchivePolicy(target=backend.url, delete_local=True, **kinds)
    return Scope(
        settings, RetentionPolicy(archive=archive), [OLMES, VMEVAL], lambda t: backend.client
    )


def data_root(scope: Scope) -> Path:
    return scope.settings.datasets / "lab0" / "v1"


def table_rows(scope: Scope, table: str) -> list[dict]:
    rows = Lake(scope.settings.lake).read(table, lake_run_id("lab0/v1")).to_pylist()
    return sorted(rows, key=lambda r: str(sorted(r.items())))


def test_outputs_and_evaluations_are_archived_questions_never(
    tmp_path: Path, backend: Backend
) -> None:
    scope = make_scope(tmp_path, backend)
    ingest(scope.settings)
    root = data_root(scope)
    questions = digests(root / "questions")
    parts = {p: digests(p) for a in ("outputs", "evaluations") for p in (root / a).iterdir()}
    folders = {p: folder_mtimes(p) for p in parts}
    before = VMEVAL.scan(scope.settings.datasets).runs[0].inventory.fingerprint
    actions, _ = plan_archive(scope)
    targets = {(a.action, Path(a.target)) for a in actions}
    assert targets == {(act, p) for p in parts for act in ("archive", "delete_local")}
    assert not any("questions" in a.target for a in actions)

    outcome = apply_archive(scope, progress=QUIET)

    assert outcome.refused == [] and outcome.counts()["delete_local"] == len(parts)
    assert not any(p.exists() for p in parts) and digests(root / "questions") == questions
    rows = archives_table.read_archives(scope.lake)
    assert {r["kind"] for r in rows} == {"vmeval_outputs", "vmeval_evaluations"}
    assert {r["run_id"] for r in rows} == {f"lab0/v1/{p.parent.name}/{p.name}" for p in parts}
    after = VMEVAL.scan(scope.settings.datasets).runs[0].inventory.fingerprint
    assert after == before, "the sensor must not see an archived folder's absence as a change"
    assert plan_archive(scope)[0] == [] and apply_archive(scope, progress=QUIET).done == []

    for row in rows:
        restore_archive(scope, row["archive_id"])
    assert {p: digests(p) for p in parts} == parts
    assert {p: folder_mtimes(p) for p in parts} == folders, "run folders' mtimes order runs"
    assert layout.archived_stubs(root) == []
    assert VMEVAL.scan(scope.settings.datasets).runs[0].inventory.fingerprint == before


def test_a_reingest_after_archiving_keeps_the_archived_folders_rows(
    tmp_path: Path, backend: Backend
) -> None:
    scope = make_scope(tmp_path, backend, vmeval_evaluations=KindPolicy(enabled=False))
    ingest(scope.settings)
    outputs, evaluations = table_rows(scope, "vm_outputs"), table_rows(scope, "vm_evaluations")
    apply_archive(scope, progress=QUIET)
    root = data_root(scope)
    assert [p.name for p in (root / "outputs").iterdir() if not p.name.startswith(".")] == []
    assert len(list((root / "evaluations").iterdir())) == 2, "a disabled kind is not archived"
    (root / "questions" / "notes.txt").write_text("a new file: the data root re-ingests\n")

    ingest(scope.settings)

    assert table_rows(scope, "vm_outputs") == outputs
    assert table_rows(scope, "vm_evaluations") == evaluations
    latest = Lake(scope.settings.lake).read("vm_outputs", lake_run_id("lab0/v1"))
    assert pc.sum(latest.column("is_latest")).as_py() > 0


def test_per_kind_days_decide_what_is_old_enough(tmp_path: Path, backend: Backend) -> None:
    scope = make_scope(
        tmp_path,
        backend,
        vmeval_outputs=KindPolicy(after_days=100),
        vmeval_evaluations=KindPolicy(after_days=365),
    )
    archived = {Path(a.target).parent.name for a in plan_archive(scope)[0]}
    assert archived == {"outputs"}


def killer(real: Any) -> Any:
    """`real`, except that a call touching a folder being deleted dies first."""

    def step(*args: Any, **kwargs: Any) -> Any:
        if any(".deleting" in str(a) or ARCHIVED_SUFFIX in str(a) for a in args):
            raise Crash(f"killed at {real.__name__}{args}")
        return real(*args, **kwargs)

    return step


@pytest.mark.parametrize("step", ["write_stub", "rename", "rmtree"])
def test_a_kill_while_deleting_a_folder_changes_no_fingerprint_and_a_rerun_completes(
    tmp_path: Path, backend: Backend, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scope = make_scope(tmp_path, backend, vmeval_evaluations=KindPolicy(enabled=False))
    ingest(scope.settings)
    fingerprint = VMEVAL.scan(scope.settings.datasets).runs[0].inventory.fingerprint
    outputs = table_rows(scope, "vm_outputs")
    module, name = {
        "write_stub": (layout, "atomic_path"),
        "rename": (os, "rename"),
        "rmtree": (shutil, "rmtree"),
    }[step]
    monkeypatch.setattr(module, name, killer(getattr(module, name)))
    with pytest.raises(Crash):
        apply_archive(scope, progress=QUIET)
    monkeypatch.undo()
    assert VMEVAL.scan(scope.settings.datasets).runs[0].inventory.fingerprint == fingerprint

    apply_archive(replace(scope), progress=QUIET)

    root = data_root(scope)
    assert [p.name for p in (root / "outputs").iterdir() if p.is_dir()] == []
    assert VMEVAL.scan(scope.settings.datasets).runs[0].inventory.fingerprint == fingerprint
    ingest(scope.settings)
    assert table_rows(scope, "vm_outputs") == outputs
    for row in archives_table.read_archives(scope.lake):
        back = Path(
            restore_archive(scope, row["archive_id"], tmp_path / "back" / row["archive_id"])
        )
        assert digests(back)


def test_the_runs_view_says_where_each_archived_run_lives(tmp_path: Path, backend: Backend) -> None:
    scope = make_scope(tmp_path, backend)
    dumps = tmp_path / "dumps"
    generate_dumps(dumps, runs=2, tasks=1, instances=2, seed=3)
    age(dumps, 60)
    settings = replace(scope.settings, dumps=dumps)
    scope = replace(scope, settings=settings)
    ingest(settings)
    olmes = list(OLMES.ingest(OLMES.scan(dumps).runs, settings, QUIET))
    assert all(not isinstance(r, Exception) for _, r in olmes)
    warehouse = settings.warehouse
    build_warehouse(scope.lake, warehouse)
    columns = "run_id, archived_to, archived_at, local_deleted_at"
    assert {r[1:] for r in query(warehouse, f"SELECT {columns} FROM runs")[1]} == {
        (None, None, None)
    }

    apply_archive(scope, progress=QUIET)
    build_warehouse(scope.lake, warehouse)

    archives = archives_table.read_archives(scope.lake)
    rows = {r[0]: r[1:] for r in query(warehouse, f"SELECT {columns} FROM runs")[1]}
    assert set(rows) == {"vmeval:lab0/v1", *(run_id for run_id, _ in olmes)}
    for run_id, (archived_to, archived_at, deleted_at) in rows.items():
        mine = [a for a in archives if a["lake_run_id"] == run_id]
        assert len(mine) == (4 if run_id.startswith("vmeval:") else 1)
        assert archived_to == ", ".join(a["manifest_uri"] for a in sorted(mine, key=unit))
        assert archived_at == max(a["archived_at"] for a in mine)
        assert deleted_at == max(a["local_deleted_at"] for a in mine)
    assert query(warehouse, "SELECT count(*) FROM vm_outputs")[1][0][0] > 0


def unit(row: dict) -> str:
    return row["run_id"]


def test_a_restore_killed_before_removing_the_stub_is_tidied_by_the_next_archive_run(
    tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    scope = make_scope(tmp_path, backend, vmeval_evaluations=KindPolicy(enabled=False))
    apply_archive(scope, progress=QUIET)
    root = data_root(scope)
    fingerprint = VMEVAL.scan(scope.settings.datasets).runs[0].inventory.fingerprint
    [row, *_] = archives_table.read_archives(scope.lake)

    def killed(part: Path) -> Path:
        raise Crash(f"killed before removing the stub of {part}")

    monkeypatch.setattr(layout, "stub_path", killed)
    with pytest.raises(Crash):
        restore_archive(scope, row["archive_id"])
    monkeypatch.undo()
    part = Path(row["local_path"])
    stub = layout.stub_path(part)
    assert part.is_dir() and stub.exists()
    assert VMEVAL.scan(scope.settings.datasets).runs[0].inventory.fingerprint == fingerprint

    keep_local = replace(scope.policy.archive, delete_local=False)
    later = replace(scope, policy=replace(scope.policy, archive=keep_local))
    apply_archive(later, progress=QUIET)
    assert stub.exists(), "a fresh stub may belong to a deletion in progress"
    apply_archive(replace(later, now=later.now + 7200), progress=QUIET)
    assert not stub.exists() and part.is_dir()
    assert VMEVAL.scan(scope.settings.datasets).runs[0].inventory.fingerprint == fingerprint
    assert len(layout.archived_stubs(root)) == 1  # the other experiment is still archived away
