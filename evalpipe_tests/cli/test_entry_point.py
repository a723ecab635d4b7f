"""The `evalpipe` command as a process: it ends as soon as its work is done, with `main`'s exit
status and all of its output, and a reader that goes away ends it quietly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-m", "evalpipe.cli"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "EVALPIPE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
    }


def test_the_exit_status_and_the_output_are_main_s(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "dumps").mkdir()
    done = subprocess.run(
        [*COMMAND, "ingest", "--dumps", str(tmp_path / "dumps")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(  # an empty answer says so
        "------  -----  --------  ------  -------  ------------  ----------------\n(no rows)"
    )
    assert "0 run directories: 0 ingested" in done.stdout

    elsewhere = {**env, "EVALPIPE_HOME": str(tmp_path / "empty")}
    missing = subprocess.run(
        [*COMMAND, "runs"], env=elsewhere, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2
    assert "no warehouse yet" in missing.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "dumps").mkdir()
    reader, writer = os.pipe()
    os.close(reader)
    with os.fdopen(writer, "w") as closed_pipe:
        done = subprocess.run(
            [*COMMAND, "ingest", "--dumps", str(tmp_path / "dumps")],
            env=env,
            stdout=closed_pipe,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
