"""Drive Debian's headless Chromium over the DevTools protocol, for tests of HTML pages.

Only the standard library and `websockets` (already installed with uvicorn): no Selenium or
Playwright, whose browser downloads fail on machines without internet. The flags that turn off
background networking matter: without them Chromium keeps retrying its update, sync and
field-trial servers on the closed network.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

INSTALL_HINT = "apt-get update && apt-get install -y chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-port=0",  # Chromium picks a free port, written to DevToolsActivePort
    "--window-size=1280,900",
)
START_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0


class DevToolsError(RuntimeError):
    """The browser answered a command with an error, or the page's script threw."""


def find_chromium() -> str | None:
    """Path of the `chromium` executable, or None when it is not installed."""
    return shutil.which("chromium")


def require_chromium() -> str:
    """The executable's path, or skip the calling test with the command that installs it."""
    import pytest

    path = find_chromium()
    if path is None:
        pytest.skip(f"chromium is not installed: {INSTALL_HINT}")
    return path


class Page:
    """One browser tab driven through its DevTools websocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._next_id = 0
        self.call("Page.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result, skipping events in between."""
        self._next_id += 1
        command_id = self._next_id
        self._ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == command_id:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                return message.get("result", {})

    def navigate(self, url: str) -> None:
        """Open ``url`` and return once its load event fired, so scripts have run."""
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise DevToolsError(f"navigate {url}: {result['errorText']}")
        if "loaderId" not in result:  # same-document (fragment) navigation: no load event
            return
        while self._receive().get("method") != "Page.loadEventFired":
            pass

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (promises awaited, JSON-copied back)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise DevToolsError(details.get("exception", {}).get("description", str(details)))
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """Save what the viewport shows as a PNG."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def _receive(self) -> dict[str, Any]:
        return json.loads(self._ws.recv(timeout=COMMAND_TIMEOUT))


@contextmanager
def chromium(executable: str | None = None) -> Iterator[Page]:
    """Start headless Chromium with a throwaway profile, yield its first tab, always kill it."""
    executable = executable or require_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        log = open(Path(profile) / "chromium.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: renderers die with it
        )
        try:
            port = _devtools_port(Path(profile), process)
            with connect(_page_websocket_url(port), proxy=None, max_size=None) as ws:
                yield Page(ws)
        finally:
            _kill(process)
            log.close()


def _devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    """Wait for Chromium to write the port it listens on (first line of DevToolsActivePort)."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (profile / "chromium.log").read_text(errors="replace")[-2000:]
            raise DevToolsError(f"chromium exited with {process.returncode}:\n{log}")
        lines = port_file.read_text().splitlines() if port_file.exists() else []
        if len(lines) >= 2:  # both lines written: the file is complete
            return int(lines[0])
        time.sleep(0.05)
    raise DevToolsError(f"chromium wrote no {port_file.name} within {START_TIMEOUT} s")


def _page_websocket_url(port: int) -> str:
    """The debugger websocket of the first tab; no proxy, whatever the environment says."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=COMMAND_TIMEOUT) as response:
        targets = json.load(response)
    return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the browser's whole process group (the one it was started in) and reap it.

    Chromium's crashpad handlers run in groups of their own and exit once the browser is gone.
    """
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
