"""Atomic writes: the target is replaced whole, or not at all, and never when it is not a
regular file (renaming over a device or a pipe would replace it)."""

import os
import stat
from pathlib import Path

import pytest

from evalpipe.core.atomic import PARTIAL_SUFFIX, atomic_path


def test_a_finished_write_replaces_the_target_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert not list(tmp_path.glob(f"*{PARTIAL_SUFFIX}"))


def test_a_failed_write_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(f"*{PARTIAL_SUFFIX}"))


@pytest.mark.parametrize("kind", ["pipe", "directory"])
def test_a_target_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "pipe":
        os.mkfifo(target)
    else:
        target.mkdir()
    with pytest.raises(ValueError, match="not a regular file"), atomic_path(target) as tmp:
        tmp.write_text("data")
    mode = target.lstat().st_mode
    assert stat.S_ISFIFO(mode) if kind == "pipe" else stat.S_ISDIR(mode)
    assert not list(tmp_path.glob(f"*{PARTIAL_SUFFIX}"))
