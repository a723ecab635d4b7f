"""The one directory walk every source's scan is built on: depth first, sorted, never following a
symlinked directory or entering a hidden one, and every skip reported instead of stopping."""

import os
from pathlib import Path

import pytest

from evalpipe.core.inventory import walk_directories
from evalpipe.core.jsonl import DumpFormatError


def tree(root: Path) -> None:
    for directory in ("a/run", "a/run/inner", "b", ".trash/run"):
        (root / directory).mkdir(parents=True)
    for file in ("a/run/marker", "b/marker", ".trash/run/marker"):
        (root / file).write_text("x")


def test_visits_in_depth_first_name_order_and_stops_where_told(tmp_path: Path) -> None:
    tree(tmp_path)
    visited: list[str] = []

    def visit(directory: Path, entries: list[os.DirEntry]) -> bool:
        visited.append(directory.relative_to(tmp_path).as_posix())
        assert [e.name for e in entries] == sorted(e.name for e in entries)
        return any(e.name == "marker" for e in entries)

    skipped = walk_directories(tmp_path, "root", visit)
    assert sorted(visited) == [".", "a", "a/run", "b"], "not below a stop, not into .trash"
    assert skipped == [f"{tmp_path / '.trash'}: hidden directory; skipped"]


def test_symlinked_and_unlistable_directories_are_reported_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "elsewhere").symlink_to(tmp_path)
    locked = root / "locked"
    locked.mkdir()
    locked.chmod(0)
    visited: list[Path] = []
    try:
        skipped = walk_directories(root, "root", lambda d, _e: visited.append(d) or False)
    finally:
        locked.chmod(0o755)
    assert f"{root / 'elsewhere'}: a symlinked directory; skipped (not followed)" in skipped
    assert root / "elsewhere" not in visited
    if os.geteuid() != 0:  # root can list a mode-000 directory
        assert any(s.startswith(f"{locked}: cannot list directory") for s in skipped)


def test_a_root_that_is_not_a_directory_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(DumpFormatError, match="lm-eval root is not a directory"):
        walk_directories(tmp_path / "missing", "lm-eval root", lambda _d, _e: False)
