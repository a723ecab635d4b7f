"""Generated VMEvalKit data roots (made once per session, copied per test)."""

import shutil
from pathlib import Path

import pytest

from evalpipe.sources.vmeval.samples import generate_datasets


@pytest.fixture(scope="session")
def pristine_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine_vmeval") / "datasets"
    generate_datasets(root, datasets=2, questions=3, seed=5, hostile=True)
    return root


@pytest.fixture
def datasets(pristine_datasets: Path, tmp_path: Path) -> Path:
    """A private copy of the generated data roots that a test may corrupt."""
    root = tmp_path / "datasets"
    shutil.copytree(pristine_datasets, root, symlinks=True)
    return root
