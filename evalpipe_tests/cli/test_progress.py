"""Long commands show one self-updating line on a terminal and a few lines in a log."""

import io
from dataclasses import dataclass

from evalpipe.cli.progress import StderrProgress


@dataclass
class Event:
    stage: str
    message: str
    done_files: int = 0
    total_files: int = 0

    def __str__(self) -> str:
        return self.message


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def events(n: int) -> list[Event]:
    return [
        Event("manifest", "reading the manifest"),
        *(Event("verify", f"verified file{i}", i, n) for i in range(1, n + 1)),
        Event("done", f"{n} files verified"),
    ]


def test_a_log_gets_each_stage_and_its_quarters_not_a_line_per_file() -> None:
    log = io.StringIO()
    with StderrProgress(log) as progress:
        for event in events(400):
            progress(event)

    lines = log.getvalue().splitlines()
    assert lines == [
        "reading the manifest",
        "verify: 1/400 files",
        "verify: 100/400 files",
        "verify: 200/400 files",
        "verify: 300/400 files",
        "verify: 400/400 files",
        "400 files verified",
    ]


def test_a_terminal_gets_one_line_rewritten_in_place() -> None:
    terminal = Terminal()
    with StderrProgress(terminal) as progress:
        for event in events(400):
            progress(event)

    text = terminal.getvalue()
    assert text.count("\n") == 1 and text.endswith("400 files verified\n")
    assert text.count("\r") == 402
