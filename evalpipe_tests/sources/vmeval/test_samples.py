"""`python -m evalpipe.samples --format vmeval` writes deterministic data roots."""

import subprocess
import sys
from pathlib import Path


def tree(root: Path) -> dict[str, bytes]:
    """Every file's bytes, with the absolute root (written into output metadata) masked."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes().replace(str(root.resolve()).encode(), b"<>")
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_the_generator_command_writes_the_same_roots_for_the_same_seed(tmp_path: Path) -> None:
    for name in ("a", "b"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "evalpipe.samples",
                "--format",
                "vmeval",
                "--out",
                str(tmp_path / name),
                "--datasets",
                "1",
                "--questions",
                "3",
                "--hostile",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.splitlines()[:2] == ["lab0/v1", "hostile"]
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert (tmp_path / "a" / "lab0" / "v1" / "questions" / "vmeval_dataset.json").is_file()
