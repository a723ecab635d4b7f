"""Progress of a long command on stderr: one self-updating line on a terminal, a few summary
lines otherwise (a log or CI gets each stage's start and its quarters, not a line per file)."""

from __future__ import annotations

import shutil
import sys
from typing import Protocol, TextIO

MARKS = (0.25, 0.5, 0.75, 1.0)


class Event(Protocol):
    """What a progress event carries (`evalpipe.snapshots.manifests.ProgressEvent`)."""

    stage: str
    done_files: int
    total_files: int

    def __str__(self) -> str: ...


class StderrProgress:
    """Call with each event; `close()` (or use as a context manager) ends the terminal line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.stage: str | None = None
        self.marks: list[float] = []
        self.line_open = False

    def __call__(self, event: Event) -> None:
        counted = event.total_files > 0
        text = (
            f"{event.stage}: {event.done_files}/{event.total_files} files"
            if counted
            else str(event)
        )
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r\033[K" + text[:width])
            self.stream.flush()
            self.line_open = True
            return
        if event.stage != self.stage:
            self.stage, self.marks = event.stage, list(MARKS)
            if not counted or event.done_files < event.total_files:
                print(text if counted else str(event), file=self.stream, flush=True)
        if counted:
            reached = [m for m in self.marks if event.done_files >= m * event.total_files]
            if reached:
                self.marks = [m for m in self.marks if m not in reached]
                print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.line_open:
            self.stream.write("\n")
            self.stream.flush()
            self.line_open = False

    def __enter__(self) -> StderrProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
