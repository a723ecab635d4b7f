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
from operator import itemgetter
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
    def fields(self) -> tuple[str, ...]:
        """The row keys read, in `ints, texts, jsons` order (plus the row's own task name)."""
        own_task = ("task_name",) if self.row_has_task_name else ()
        return (*self.ints, *self.texts, *self.jsons, *own_task)

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


BLOCK_ROWS = 512
"""Rows parsed together. Columns are pulled out of a block with C-level `map`, which costs far
less than Python code per row; a block's parsed objects stay small (~10 MB for the widest rows)."""
_PLAIN_TEXT = {str, type(None)}
_SUSPECT = object()  # a fast-path text that may hide a big integer: redo the row exactly


def _may_hide_big_int(text: bytes) -> bool:
    """`+` first: a one-byte search is several times faster, and `+` is rare in text."""
    return b"+" in text and BIG_FLOAT_MARK in text


def _loads_or_none(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _loads_all(raws: list[bytes]) -> list[Any]:
    """orjson values of the lines; None for a line orjson cannot read (left to the exact path)."""
    try:
        return list(map(orjson.loads, raws))
    except orjson.JSONDecodeError:
        return list(map(_loads_or_none, raws))


def _fast_text(value: Any) -> Any:
    if value is None or type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    text = orjson.dumps(value)
    return _SUSPECT if _may_hide_big_int(text) else text.decode()


@dataclass
class _Block:
    """A block's columns as Python lists. JSON text is bytes, with b"" for NULL (JSON text is
    never empty); `tasks` holds the rows' own `task_name` when the table's rows carry one."""

    ints: list[list[Any]]
    texts: list[list[Any]]
    jsons: list[list[bytes]]
    tasks: list[Any]


def _columns(rows: list[dict], names: tuple[str, ...]) -> list[list[Any]]:
    """Each named field of every row, column by column (one C-level call per row); an absent
    key reads as None."""
    try:
        return [list(column) for column in zip(*map(itemgetter(*names), rows), strict=True)]
    except KeyError:
        return [[row.get(name) for row in rows] for name in names]


def _fast_block(rows: list[Any], shape: TableShape) -> tuple[_Block, set[int]]:
    """Every column via orjson, and the rows the exact path must redo.

    Those are rows orjson could not read or that are not objects, integers that are not int64,
    and rows whose JSON text holds `e+` (maybe an integer orjson turned into a float).
    """
    redo: set[int] = set()
    if set(map(type, rows)) != {dict}:
        redo.update(i for i, row in enumerate(rows) if type(row) is not dict)
        rows = [row if type(row) is dict else {} for row in rows]
    columns = _columns(rows, shape.fields)
    ints = columns[: len(shape.ints)]
    texts = columns[len(ints) : len(ints) + len(shape.texts)]
    nested = columns[len(ints) + len(texts) : len(ints) + len(texts) + len(shape.jsons)]
    for values in ints:
        if set(map(type, values)) != {int} or min(values) < INT64_MIN or max(values) > INT64_MAX:
            redo.update(
                i
                for i, v in enumerate(values)
                if type(v) is not int or not INT64_MIN <= v <= INT64_MAX
            )
    for n, values in enumerate(texts):
        if not set(map(type, values)) <= _PLAIN_TEXT:
            texts[n] = values = list(map(_fast_text, values))
            redo.update(i for i, v in enumerate(values) if v is _SUSPECT)
    jsons = []
    for values in nested:
        if None in values:
            jsons.append([b"" if v is None else orjson.dumps(v) for v in values])
        else:
            jsons.append(list(map(orjson.dumps, values)))
        if _may_hide_big_int(b"".join(jsons[-1])):
            redo.update(i for i, text in enumerate(jsons[-1]) if _may_hide_big_int(text))
    tasks = columns[-1] if shape.row_has_task_name else []
    return _Block(ints, texts, jsons, tasks), redo


def _patch(block: _Block, row: int, cells: Cells) -> None:
    """Put one exactly-parsed row's cells into the block."""
    ints, texts, jsons, task = cells
    for column, value in zip(block.ints, ints, strict=True):
        column[row] = value
    for column, value in zip(block.texts, texts, strict=True):
        column[row] = value
    for column, value in zip(block.jsons, jsons, strict=True):
        column[row] = b"" if value is None else value
    if block.tasks:
        block.tasks[row] = task


def _json_array(texts: list[bytes]) -> pa.Array:
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    offsets = np.zeros(len(texts) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    validity, nulls = None, 0
    if not lengths.all():
        present = lengths > 0
        validity = pa.py_buffer(np.packbits(present, bitorder="little"))
        nulls = len(texts) - int(present.sum())
    data = pa.py_buffer(b"".join(texts))
    return pa.StringArray.from_buffers(len(texts), pa.py_buffer(offsets), data, validity, nulls)


@dataclass
class _Lines:
    """The non-blank lines of a chunk with their 1-based numbers; `last` is an unterminated one."""

    numbers: list[int]
    raws: list[bytes]
    last: int | None


def _block_batch(lines: _Lines, job: ChunkJob, result: ChunkResult) -> pa.RecordBatch:
    """One block as a record batch; rows the fast path cannot vouch for are redone exactly."""
    shape = SHAPES[job.table]
    block, redo = _fast_block(_loads_all(lines.raws), shape)
    for row in sorted(redo):
        line = lines.numbers[row]
        raw = lines.raws[row]
        _patch(block, row, _exact_cells(job.path, line, raw, line == lines.last, shape))
    tasks = block.tasks
    mismatches = len(tasks) - tasks.count(job.task_name) - tasks.count(None)
    if mismatches:
        result.mismatches += mismatches
        example = next(t for t in tasks if t is not None and t != job.task_name)
        result.mismatch_example = result.mismatch_example or str(example)
    rows = len(lines.raws)
    arrays = [pa.repeat(job.run_id, rows), pa.repeat(job.task_name, rows)]
    arrays += [pa.array(values, pa.int64()) for values in block.ints]
    arrays += [pa.array(values, pa.string()) for values in block.texts]
    arrays += [_json_array(texts) for texts in block.jsons]
    return pa.RecordBatch.from_arrays(arrays, names=list(shape.columns))


def parse_chunk(data: bytes, job: ChunkJob) -> ChunkResult:
    """Parse the lines of one chunk into record batches of `BLOCK_ROWS` rows (the writer
    regroups them into row groups).

    A last line without a newline is parsed too: if it is complete JSON it is a row, if not the
    error says the file looks truncated (still being written). Blank lines are skipped but
    counted, as `formats.jsonl.iter_raw_lines` does.
    """
    raws = data.split(b"\n")
    tail = raws.pop()  # what follows the last newline: empty unless the file ends without one
    result = ChunkResult([], len(raws) + bool(tail), 0, None)
    last = None
    if tail.strip():
        raws.append(tail)
        last = len(raws)
    numbers = [n for n, raw in enumerate(raws, 1) if raw and not raw.isspace()]
    if len(numbers) < len(raws):
        raws = [raws[n - 1] for n in numbers]
    for start in range(0, len(raws), BLOCK_ROWS):
        end = start + BLOCK_ROWS
        block = _Lines(numbers[start:end], raws[start:end], last)
        result.batches.append(_block_batch(block, job, result))
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
