"""Line-oriented JSON reading with errors that name the file, the line and the problem.

Shared by every reader: dumps are JSONL written by long-running jobs, so a bad byte or a
half-written last line must be reported precisely rather than skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DumpFormatError(ValueError):
    """Bad input in a source file; `str()` reads `path:line: problem`."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


def iter_raw_lines(path: Path, chunk_size: int = 1 << 20) -> Iterator[tuple[int, bytes, bool]]:
    """Yield `(line_number, bytes, terminated)` for each non-blank line, streaming in chunks.

    `terminated` is False only for a last line with no newline: a file still being written (or
    cut short). Callers parse it and, if it is not complete JSON, say so.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DumpFormatError(path, None, f"cannot open: {exc.strerror or exc}") from exc
    with handle:
        line_no = 0
        pending = b""
        while True:
            try:
                chunk = handle.read(chunk_size)
            except OSError as exc:
                raise DumpFormatError(path, line_no + 1, f"cannot read: {exc}") from exc
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for raw in lines:
                line_no += 1
                if raw.strip():
                    yield line_no, raw, True
        if pending.strip():
            yield line_no + 1, pending, False


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice: which value counts would be a guess."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for key, item in pairs:
        if key in value:
            raise DuplicateKeyError(key)
        value[key] = item
    return value


def loads_strict(text: str) -> Any:
    """`json.loads`, refusing duplicate keys (the stdlib silently keeps the last)."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def decode_document(path: Path, raw: bytes, *, utf8_error_line: int | None = None) -> Any:
    """Parse a whole JSON file's bytes, turning every failure into a `DumpFormatError` (JSON
    errors with the line JSON reports; bad UTF-8 with `utf8_error_line`)."""
    try:
        return loads_strict(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DumpFormatError(path, utf8_error_line, f"invalid UTF-8 at byte {exc.start}") from exc
    except DuplicateKeyError as exc:
        raise DumpFormatError(path, None, f"duplicate key {exc.args[0]!r}; refused") from exc
    except json.JSONDecodeError as exc:
        raise DumpFormatError(
            path, exc.lineno, f"malformed JSON at column {exc.colno}: {exc.msg}"
        ) from exc


def decode_line(path: Path, line_no: int, raw: bytes, *, last_unterminated: bool = False) -> Any:
    """Parse one JSONL line, turning every failure into a `DumpFormatError`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DumpFormatError(
            path,
            line_no,
            f"invalid UTF-8 at byte {exc.start} of the line: {raw[exc.start : exc.start + 8]!r}",
        ) from exc
    try:
        return loads_strict(text)
    except DuplicateKeyError as exc:
        raise DumpFormatError(
            path, line_no, f"duplicate key {exc.args[0]!r} in one JSON object; refused"
        ) from exc
    except json.JSONDecodeError as exc:
        hint = (
            " (truncated last line: is the file still being written?)" if last_unterminated else ""
        )
        raise DumpFormatError(
            path, line_no, f"malformed JSON at column {exc.colno}: {exc.msg}{hint}"
        ) from exc
    except RecursionError as exc:
        raise DumpFormatError(path, line_no, "JSON nested too deeply to read") from exc
    except ValueError as exc:  # an integer literal longer than `sys.get_int_max_str_digits()`
        raise DumpFormatError(path, line_no, f"unreadable JSON number: {exc}") from exc


def iter_jsonl(path: Path) -> Iterator[tuple[int, bytes, Any]]:
    """Yield `(line_number, raw_bytes, value)` for every line of a JSONL file."""
    for line_no, raw, terminated in iter_raw_lines(path):
        yield line_no, raw, decode_line(path, line_no, raw, last_unterminated=not terminated)


def count_lines(path: Path) -> int:
    """Number of non-blank lines: the row count of a JSONL file, without parsing it."""
    return sum(1 for _ in iter_raw_lines(path))


def json_text(value: Any) -> str | None:
    """The JSON text a nested value is stored as (key order kept, non-ASCII as is); None stays
    NULL so 'absent' and 'null' read the same."""
    return None if value is None else json.dumps(value, ensure_ascii=False)
