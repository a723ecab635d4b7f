"""Real servers for tests, started on 127.0.0.1 in a temporary directory and always stopped:
PostgreSQL from the system's binaries, and Dagster's daemon plus webserver on an instance.

`.ci/run` installs Debian's `postgresql` when its binaries are missing; a test that needs
them skips, naming that package, only where they cannot be found.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POSTGRES_HINT = "apt-get install -y postgresql (or put initdb, pg_ctl and postgres on PATH)"
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_postgres_bin() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: on PATH, else Debian's layout."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl") and shutil.which("postgres"):
        return Path(initdb).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if all((Path(candidate) / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    return None


def require_postgres_bin() -> Path:
    import pytest

    found = find_postgres_bin()
    if found is None:
        pytest.skip(f"PostgreSQL server binaries not found: {POSTGRES_HINT}")
    return found


@contextmanager
def postgres_server(bin_dir: Path) -> Iterator[str]:
    """A fresh cluster in a temporary directory, listening on 127.0.0.1 only; yields a database
    URL. Runs as an unprivileged user when the test runs as root (postgres refuses root), so
    the directory is made outside pytest's private temporary root."""
    directory = Path(tempfile.mkdtemp(prefix="evalpipe-pg-"))
    data, sockets = directory / "data", directory / "sockets"
    sockets.mkdir()
    as_user = _postgres_user()
    if as_user:
        shutil.chown(directory, as_user)
        shutil.chown(sockets, as_user)
    port = free_port()
    _run_as(as_user, [bin_dir / "initdb", "-D", data, "-U", "evalpipe", "-A", "trust"])
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=200"
    _run_as(
        as_user,
        [bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", directory / "log", "-w", "start"],
    )
    try:
        yield f"postgresql://evalpipe@127.0.0.1:{port}/postgres"
    finally:
        _run_as(as_user, [bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])
        shutil.rmtree(directory, ignore_errors=True)


def _postgres_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with suppress(KeyError):
            import pwd

            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no unprivileged user to run postgres as")


def _run_as(user: str | None, command: list) -> None:
    args = [str(c) for c in command]
    if user:
        args = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *args]
    subprocess.run(args, check=True, capture_output=True, timeout=120, cwd="/")


@dataclass
class DagsterServices:
    url: str
    env: dict[str, str]
    logs: Path


@contextmanager
def dagster_services(env: Mapping[str, str], logs: Path) -> Iterator[DagsterServices]:
    """`dagster-daemon run` and `dagster-webserver` on the instance at env's DAGSTER_HOME, loading
    the project's workspace; yields once the webserver answers. Both are stopped (process
    groups, so their run subprocesses too) on exit."""
    full_env = {**os.environ, **env}
    bin_dir = Path(os.sys.executable).parent
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    commands = {
        "webserver": [
            bin_dir / "dagster-webserver",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        "daemon": [bin_dir / "dagster-daemon", "run", "-w", "workspace.yaml"],
    }
    url = f"http://127.0.0.1:{port}"
    processes = {}
    try:
        # One after the other: the first creates the instance's storage, which two processes
        # starting on an empty DAGSTER_HOME would both try to create.
        for name, command in commands.items():
            out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
            processes[name] = subprocess.Popen(
                [str(c) for c in command],
                cwd=REPO,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            _wait_for_webserver(url, processes, logs)
        yield DagsterServices(url=url, env=full_env, logs=logs)
    finally:
        for process in processes.values():
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            # Whatever is left of the group (a code server that outlived its parent) goes too.
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait_for_webserver(url: str, processes: dict, logs: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
        with suppress(OSError), opener.open(f"{url}/server_info", timeout=2) as response:
            json.load(response)
            return
        time.sleep(0.5)
    raise RuntimeError(f"the Dagster webserver did not answer at {url} within {START_TIMEOUT} s")


def graphql(url: str, query: str, variables: Mapping | None = None) -> dict:
    """One GraphQL request to the webserver; raises on errors."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with opener.open(request, timeout=60) as response:
        answer = json.load(response)
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]
