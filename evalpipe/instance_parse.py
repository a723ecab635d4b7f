"""The hot loop of the instance ingest: byte ranges of instance JSONL files → Arrow record batches.

Run both in the ingesting process (one worker) and in worker processes started as
`python -m evalpipe.instance_parse` (see `instance_tables`): a worker reads chunk jobs as JSON
lines on stdin and answers each with one framed reply on stdout. Workers are fresh interpreters
that import only this module, `lake` and `formats.jsonl` (no Dagster, no GX), whatever process
started them.

Each line takes a fast path (orjson) when it is an ordinary row and an exact path (the stdlib
`json`) otherwise, so nothing is lost and every error names its line:

- orjson rejects `NaN`/`Infinity` and silently reads integers beyond 64 bits as floats. Such a float
  is at least 9.2e18, and orjson writes every float that large with an exponent (`e+`), so a row
  whose JSON text contains `e+` (rare in real text) is re-read exactly with the stdlib.
- Anything else unusual (a non-object row, a non-integer `doc_id`, a value orjson rejects) is
  also left to the exact path, which raises the precise `DumpFormatError`.

Line numbers inside a chunk are relative to the chunk; the caller adds the lines before it.
"""

from __future__ import annotations

import gc
import json
import os
import struct
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import pyarrow as pa

from evalpipe.formats.jsonl import DumpFormatError, decode_line

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
BIG_FLOAT_MARK = b"e+"
"""orjson writes floats >= 1e16 (so every integer it could not keep) with this exponent."""


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
    batch_rows: int


@dataclass
class ChunkResult:
    """A parsed chunk: its batches, its physical line count and its rows' task-name disagreements."""

    batches: list[pa.RecordBatch]
    lines: int
    mismatches: int
    mismatch_example: str | None


Cells = tuple[list[int], list[str | None], list[bytes | None], Any]


def _exact_json(value: Any) -> bytes:
    """Stdlib JSON text (keeps NaN and big integers); escapes lone surrogates, which UTF-8 cannot hold."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


def _exact_text(value: Any) -> str | None:
    """VARCHAR of a scalar: str as is, int as decimal, None as NULL, anything else as JSON text."""
    if value is None or isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    return _exact_json(value).decode()


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
    texts = [_exact_text(row.get(name)) for name in shape.texts]
    jsons = [None if row.get(n) is None else _exact_json(row[n]) for n in shape.jsons]
    return ints, texts, jsons, row.get("task_name")


def _fast_cells(row: dict, shape: TableShape, careful: bool) -> Cells | None:
    """The cells of an orjson-parsed row, or None when the row needs the exact path.

    Only `careful` checks each JSON text for a big-integer float; otherwise the whole batch is
    checked once at the end (`_BatchBuilder.suspect`), which is much cheaper.
    """
    ints = [row.get(name) for name in shape.ints]
    for value in ints:
        if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
            return None
    texts: list[str | None] = []
    for name in shape.texts:
        value = row.get(name)
        if value is None or type(value) is str:
            texts.append(value)
        elif type(value) is int:
            texts.append(str(value))
        else:
            text = orjson.dumps(value)
            if BIG_FLOAT_MARK in text:
                return None
            texts.append(text.decode())
    nested = [row.get(name) for name in shape.jsons]
    jsons = [None if value is None else orjson.dumps(value) for value in nested]
    if careful and any(text is not None and BIG_FLOAT_MARK in text for text in jsons):
        return None
    return ints, texts, jsons, row.get("task_name")


class _JsonColumn:
    """JSON text appended straight into one buffer: no per-row bytes objects are kept alive."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.offsets = [0]
        self.nulls: list[int] = []

    def append(self, text: bytes | None) -> None:
        if text is None:
            self.nulls.append(len(self.offsets) - 1)
        else:
            self.data += text
        self.offsets.append(len(self.data))

    def array(self) -> pa.Array:
        n = len(self.offsets) - 1
        validity = None
        if self.nulls:
            mask = np.ones(n, dtype=bool)
            mask[self.nulls] = False
            validity = pa.py_buffer(np.packbits(mask, bitorder="little"))
        offsets = pa.py_buffer(np.array(self.offsets, dtype=np.int32))
        return pa.StringArray.from_buffers(
            n, offsets, pa.py_buffer(self.data), validity, len(self.nulls)
        )


class _BatchBuilder:
    """Columns of one record batch under construction, and its rows' task-name disagreements."""

    def __init__(self, shape: TableShape, job: ChunkJob, careful: bool) -> None:
        self.shape = shape
        self.job = job
        self.careful = careful
        self.ints: list[list[int]] = [[] for _ in shape.ints]
        self.texts: list[list[str | None]] = [[] for _ in shape.texts]
        self.jsons = [_JsonColumn() for _ in shape.jsons]
        self.rows = 0
        self.mismatches = 0
        self.mismatch_example: str | None = None

    def add_line(self, line: int, raw: bytes, last: bool) -> None:
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError:
            row = None
        cells = _fast_cells(row, self.shape, self.careful) if type(row) is dict else None
        self.add(cells or _exact_cells(self.job.path, line, raw, last, self.shape))

    def add(self, cells: Cells) -> None:
        ints, texts, jsons, row_task = cells
        for column, value in zip(self.ints, ints, strict=True):
            column.append(value)
        for column, value in zip(self.texts, texts, strict=True):
            column.append(value)
        for column, value in zip(self.jsons, jsons, strict=True):
            column.append(value)
        self.rows += 1
        if self.shape.row_has_task_name and row_task is not None and row_task != self.job.task_name:
            self.mismatches += 1
            self.mismatch_example = self.mismatch_example or str(row_task)

    def suspect(self) -> bool:
        """Could a fast-path row hide an integer orjson turned into a float?"""
        return not self.careful and any(BIG_FLOAT_MARK in column.data for column in self.jsons)

    def batch(self) -> pa.RecordBatch:
        arrays = [pa.repeat(self.job.run_id, self.rows), pa.repeat(self.job.task_name, self.rows)]
        arrays += [pa.array(values, pa.int64()) for values in self.ints]
        arrays += [pa.array(values, pa.string()) for values in self.texts]
        arrays += [column.array() for column in self.jsons]
        return pa.RecordBatch.from_arrays(arrays, names=list(self.shape.columns))


def _build(lines: list[tuple[int, bytes]], job: ChunkJob, last_line: int | None) -> _BatchBuilder:
    """One batch from its lines: fast, then again carefully if the fast result is suspect."""
    for careful in (False, True):
        builder = _BatchBuilder(SHAPES[job.table], job, careful)
        for line, raw in lines:
            builder.add_line(line, raw, line == last_line)
        if not builder.suspect():
            break
    return builder


def parse_chunk(data: bytes, job: ChunkJob) -> ChunkResult:
    """Parse the lines of one chunk into batches of at most `job.batch_rows` rows.

    A last line without a newline is parsed too: if it is complete JSON it is a row, if not the
    error says the file looks truncated (still being written). Blank lines are skipped but
    counted, like `formats.jsonl.iter_raw_lines` does.
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # what follows the last newline: empty unless the file ends without one
    result = ChunkResult([], len(lines) + bool(tail), 0, None)
    unterminated = None
    if tail.strip():
        lines.append(tail)
        unterminated = len(lines)
    numbered = [(n, raw) for n, raw in enumerate(lines, 1) if raw and not raw.isspace()]
    for start in range(0, len(numbered), job.batch_rows):
        builder = _build(numbered[start : start + job.batch_rows], job, unterminated)
        result.batches.append(builder.batch())
        result.mismatches += builder.mismatches
        result.mismatch_example = result.mismatch_example or builder.mismatch_example
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


# Worker protocol: a job is one JSON line {"id": ..., **ChunkJob}; a reply is a header
# (job id, kind, meta length, body length), JSON meta, then the body (an Arrow IPC stream).
HEADER = struct.Struct("<qBqq")
REPLY_OK, REPLY_FORMAT_ERROR, REPLY_CRASH = 0, 1, 2


def job_line(job_id: int, job: ChunkJob) -> bytes:
    return json.dumps({"id": job_id, **asdict(job)}).encode() + b"\n"


def _ipc_stream(batches: list[pa.RecordBatch]) -> pa.Buffer | bytes:
    if not batches:
        return b""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batches[0].schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return sink.getvalue()


def _reply(job_id: int, job: ChunkJob) -> tuple[int, dict[str, Any], Any]:
    try:
        result = run_job(job)
    except DumpFormatError as exc:
        return REPLY_FORMAT_ERROR, {"line": exc.line, "problem": exc.problem}, b""
    except Exception:
        return REPLY_CRASH, {"problem": traceback.format_exc()}, b""
    meta = {
        "lines": result.lines,
        "mismatches": result.mismatches,
        "mismatch_example": result.mismatch_example,
    }
    return REPLY_OK, meta, _ipc_stream(result.batches)


def serve(jobs: BinaryIO, replies: BinaryIO) -> None:
    """Answer jobs until stdin closes; one reply per job, in order."""
    for line in jobs:
        spec = json.loads(line)
        job_id = spec.pop("id")
        kind, meta, body = _reply(job_id, ChunkJob(**spec))
        meta_bytes = json.dumps(meta).encode()
        replies.write(HEADER.pack(job_id, kind, len(meta_bytes), len(body)))
        replies.write(meta_bytes)
        replies.write(body)
        replies.flush()


def _worker_main() -> None:
    """Serve on a private copy of stdout (stray prints go to stderr), without the cyclic GC:
    parsed rows hold no cycles, and collections triggered by millions of dicts cost ~5%."""
    gc.disable()
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    _worker_main()
