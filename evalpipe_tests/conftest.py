"""Fixtures every area shares: a generated dump (made once, copied per test) and settings."""

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from evalpipe.core.config import Settings, load_settings
from evalpipe.sources.olmes.samples import generate_dumps

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SAMPLE_SHAPE = {"runs": 4, "tasks": 11, "instances": 12, "seed": 3}


@pytest.fixture(scope="session")
def pristine_dumps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated once per session; tests must not modify it (use `dumps`)."""
    root = tmp_path_factory.mktemp("pristine") / "dumps"
    generate_dumps(root, **SAMPLE_SHAPE)
    return root


@pytest.fixture
def dumps(pristine_dumps: Path, tmp_path: Path) -> Path:
    """A private copy of the sample dumps that a test may corrupt."""
    root = tmp_path / "dumps"
    shutil.copytree(pristine_dumps, root)
    return root


@pytest.fixture
def settings(tmp_path: Path, dumps: Path) -> Settings:
    return load_settings(
        {
            "EVALPIPE_HOME": str(tmp_path / "home"),
            "EVALPIPE_DUMPS": str(dumps),
            "EVALPIPE_SETTLE_SECONDS": "0",
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        }
    )


def run_dirs_where(root: Path, predicate) -> list[Path]:
    """Run directories of a generated dump with some property, found from the files themselves."""
    return sorted(p.parent for p in root.rglob("metrics-all.jsonl") if predicate(p.parent))


def is_old_format(run_dir: Path) -> bool:
    return not any(run_dir.glob("task-*-metrics.json"))


@pytest.fixture(scope="session")
def pristine_lmeval(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real lm-eval output (see `lmeval_outputs`), made once per session; do not modify."""
    from evalpipe_tests.lmeval_outputs import generate

    return generate(tmp_path_factory.mktemp("lmeval"))


@pytest.fixture
def lmeval_root(pristine_lmeval: Path, tmp_path: Path) -> Path:
    """A private copy of the lm-eval output that a test may change."""
    root = tmp_path / "lmeval"
    shutil.copytree(pristine_lmeval, root)
    return root


@pytest.fixture
def lmeval_settings(settings: Settings, lmeval_root: Path) -> Settings:
    """`settings` watching the private lm-eval copy (and the OLMES sample dumps)."""
    return replace(settings, lmeval_root=lmeval_root)
