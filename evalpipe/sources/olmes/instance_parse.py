"""The hot loop of the instance ingest: byte ranges of instance JSONL files → Arrow record batches.

Called from the ingest's parser threads (see `instances`). The fast path is a scanner
(`scanner.scan_rows`): one pass over a chunk validates every line as strict JSON (UTF-8 included;
NaN and the infinities allowed, as Python's `json` does) and fills Arrow column buffers directly.
It is C (`_instance_scan.c`, built by `pip install` when a compiler is there), which runs without
the GIL, so threads parse chunks in parallel and no Python object is made per row or value; an
install without a compiler gets a pure-Python scanner with the same results (`scanner_python`).
Nested values are stored as their exact source text (key order, spacing and escapes as in the
file); `null` is SQL NULL.

The lines the scanner refuses are redone with the stdlib `json` and put back in file order. It
keeps what the scanner does not convert (a scalar that is not int/str/null, stored as its JSON
text) and raises the precise `DumpFormatError`
(`file:line: problem`) for what is wrong: malformed JSON, invalid UTF-8, a lone surrogate in a
text, an integer literal too long for Python's `int`, a non-object row, a missing, non-integer or
non-int64 `doc_id`. That path writes nested values back compactly, non-ASCII unescaped.

Line numbers inside a chunk are relative to the chunk; the caller adds the lines before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from evalpipe.core.jsonl import DumpFormatError, decode_line
from evalpipe.sources.olmes.scanner import scan_rows

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True)
class TableShape:
    """How a table's columns come from a row: required integers, scalar text, nested JSON text."""

    ints: tuple[str, ...]
    texts: tuple[str, ...]
    jsons: tuple[str, ...]
    row_has_task_name: bool

    @property
    def columns(self) -> tuple[str, ...]:
        """Batch column order; the writer reorders to the lake schema, which stays the authority."""
        return ("run_id", "task_name", *self.ints, *self.texts, *self.jsons)


SHAPES: dict[str, TableShape] = {
    "predictions": TableShape(
        ("doc_id",),
        ("native_id", "label", "task_hash", "model_hash"),
        ("metrics", "model_output"),
        False,
    ),
    "requests": TableShape(
        ("doc_id", "idx"), ("native_id", "label", "request_type"), ("doc", "request"), True
    ),
    "recorded_inputs": TableShape(("doc_id",), ("native_id", "label"), ("doc", "requests"), True),
}


@dataclass(frozen=True)
class ChunkJob:
    """Whole lines `[start, end)` of one file; `end` is the file's end or just after a newline."""

    path: str
    start: int
    end: int
    table: str
    task_name: str
    run_id: str


@dataclass
class ChunkResult:
    """A parsed chunk: its batches, its physical line count and its rows' task-name disagreements."""

    batches: list[pa.RecordBatch]
    lines: int
    mismatches: int
    mismatch_example: str | None


Cells = tuple[list[int], list[str | None], list[str | None], Any]
"""A row from the exact path: ints, texts, JSON texts, and the row's own `task_name`."""

# --- the exact path: the stdlib `json`, precise errors ------------------------------------------


def _exact_json(value: Any) -> str:
    """Stdlib JSON text (keeps NaN and big integers); escapes lone surrogates, which UTF-8 cannot hold."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text


def _exact_text(path: str, line: int, name: str, value: Any) -> str | None:
    """VARCHAR of a scalar: str as is, int as decimal, None as NULL, anything else as JSON text."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise DumpFormatError(
                path, line, f"{name!r} is not valid Unicode: {exc.reason}"
            ) from exc
        return value
    if value is None:
        return None
    if type(value) is int:
        return str(value)
    return _exact_json(value)


def _exact_int(path: str, line: int, row: dict, name: str) -> int:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DumpFormatError(path, line, f"{name!r} must be an integer, got {_short(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise DumpFormatError(path, line, f"{name!r} is out of the int64 range: {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _exact_cells(path: str, line: int, raw: bytes, last: bool, shape: TableShape) -> Cells:
    """The row's cells via the stdlib `json`, raising `DumpFormatError` for what is wrong."""
    row = decode_line(Path(path), line, raw, last_unterminated=last)
    if not isinstance(row, dict):
        raise DumpFormatError(path, line, f"expected a JSON object, got {type(row).__name__}")
    ints = [_exact_int(path, line, row, name) for name in shape.ints]
    texts = [_exact_text(path, line, name, row.get(name)) for name in shape.texts]
    jsons = [None if row.get(n) is None else _exact_json(row[n]) for n in shape.jsons]
    return ints, texts, jsons, row.get("task_name") if shape.row_has_task_name else None


# --- the fast path: the scanner -----------------------------------------------------------------


def _constant_array(text: str, n: int) -> pa.Array:
    encoded = text.encode()
    offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int32) * len(encoded))
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(encoded * n))


def _scanned_batch(
    rows: int, ints: list[bytes], texts: list[tuple], job: ChunkJob
) -> pa.RecordBatch:
    """The scanner's column buffers as a record batch (no copy)."""
    arrays = [_constant_array(job.run_id, rows), _constant_array(job.task_name, rows)]
    arrays += [pa.Array.from_buffers(pa.int64(), rows, [None, pa.py_buffer(b)]) for b in ints]
    arrays += [
        pa.StringArray.from_buffers(
            rows,
            pa.py_buffer(offsets),
            pa.py_buffer(data),
            None if validity is None else pa.py_buffer(validity),
            nulls,
        )
        for offsets, data, validity, nulls in texts
    ]
    return pa.RecordBatch.from_arrays(arrays, names=list(SHAPES[job.table].columns))


def _exact_batch(
    lines: list[tuple[int, bytes, bool]], job: ChunkJob, result: ChunkResult
) -> pa.RecordBatch:
    """Lines `(number, raw, unterminated)` the scanner refused, via the stdlib `json`; raises the
    first bad line's `DumpFormatError`. Rows naming another task are counted in `result`."""
    shape = SHAPES[job.table]
    cells = [_exact_cells(job.path, number, raw, last, shape) for number, raw, last in lines]
    rows = len(cells)
    arrays = [_constant_array(job.run_id, rows), _constant_array(job.task_name, rows)]
    arrays += [pa.array(column, pa.int64()) for column in zip(*(c[0] for c in cells), strict=True)]
    arrays += [pa.array(column, pa.string()) for column in zip(*(c[1] for c in cells), strict=True)]
    arrays += [pa.array(column, pa.string()) for column in zip(*(c[2] for c in cells), strict=True)]
    differing = [c[3] for c in cells if c[3] is not None and c[3] != job.task_name]
    if differing:
        result.mismatches += len(differing)
        result.mismatch_example = result.mismatch_example or str(differing[0])
    return pa.RecordBatch.from_arrays(arrays, names=list(shape.columns))


def _in_file_order(scanned: pa.RecordBatch, exact: pa.RecordBatch, before: list[int]) -> pa.Table:
    """Both batches' rows in file order: exact row `i` came after `before[i]` scanned rows."""
    total = scanned.num_rows + exact.num_rows
    from_exact = np.zeros(total, bool)
    from_exact[np.asarray(before) + np.arange(exact.num_rows)] = True
    order = np.empty(total, np.int64)
    order[~from_exact] = np.arange(scanned.num_rows)
    order[from_exact] = scanned.num_rows + np.arange(exact.num_rows)
    return pa.Table.from_batches([scanned, exact]).take(order)


def parse_chunk(data: bytes, job: ChunkJob) -> ChunkResult:
    """Parse the lines of one chunk into record batches, in file order (the writer regroups them
    into row groups): the scanner converts every line it can vouch for in one pass; the lines it
    refuses go to the stdlib `json`. Blank lines are skipped but counted, as
    `formats.jsonl.iter_raw_lines` does.

    A last line without a newline is parsed too: if it is complete JSON it is a row, if not the
    error says the file looks truncated (still being written).
    """
    shape = SHAPES[job.table]
    task_key = "task_name" if shape.row_has_task_name else None
    lines, rows, ints, texts, mismatches, example, refused = scan_rows(
        data, shape.ints, shape.texts, shape.jsons, task_key, job.task_name
    )
    result = ChunkResult([], lines, mismatches, example)
    scanned = _scanned_batch(rows, ints, texts, job)
    if not refused:
        result.batches += [scanned] if rows else []
        return result
    unterminated = not data.endswith(b"\n")
    exact = _exact_batch(
        [
            (line, data[start:end], unterminated and end == len(data))
            for start, end, line, _ in refused
        ],
        job,
        result,
    )
    ordered = _in_file_order(scanned, exact, [before for *_, before in refused])
    result.batches.extend(ordered.combine_chunks().to_batches())
    return result


def read_range(path: str, start: int, end: int) -> bytes:
    """The bytes of a chunk; a file that shrank since it was planned is a format error."""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(end - start)
    except OSError as exc:
        raise DumpFormatError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) != end - start:
        raise DumpFormatError(path, None, "file shrank while it was being read")
    return data


def run_job(job: ChunkJob) -> ChunkResult:
    return parse_chunk(read_range(job.path, job.start, job.end), job)
