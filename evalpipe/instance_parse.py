"""The hot loop of the instance ingest: byte ranges of instance JSONL files → Arrow record batches.

Used in the ingesting process (one worker) and in worker processes started as
`python -m evalpipe.instance_parse` (see `instance_tables`): a worker reads chunk jobs as JSON
lines on stdin and answers each with one framed reply on stdout. Workers are fresh interpreters
that import only this module and `formats.jsonl` (no Dagster, no GX, not even pandas: Arrow
arrays are built from buffers, because converting Python lists makes pyarrow import pandas,
0.3 s and 50 MB per worker).

Lines are parsed a block at a time: orjson reads the block, columns are pulled out with C-level
`map`/`zip` (Python code per row would cost more than the parsing), and nested values are
written back with orjson. Rows that path cannot vouch for are redone with the stdlib `json`, so
nothing is lost and every error names its line:

- orjson rejects `NaN`/`Infinity` and silently reads integers beyond 64 bits as floats. Such a
  float is at least 9.2e18, and orjson writes every float that large with an exponent (`e+`),
  so a row whose JSON text contains `e+` (rare in real text) is re-read exactly.
- Anything else unusual (a non-object row, a non-integer `doc_id`, a value orjson rejects) also
  goes to the exact path, which raises the precise `DumpFormatError`.

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
from itertools import repeat
from operator import is_not, itemgetter
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import pyarrow as pa

from evalpipe.formats.jsonl import DumpFormatError, decode_line

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
BIG_FLOAT_MARK = b"e+"
"""orjson writes floats >= 1e16 (so every integer it could not keep) with this exponent."""
BLOCK_ROWS = 512
"""Rows parsed together: enough to amortize per-block costs, few enough to stay in cache."""


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

# --- the exact path: the stdlib `json`, precise errors ------------------------------------------


def _exact_json(value: Any) -> bytes:
    """Stdlib JSON text (keeps NaN and big integers); escapes lone surrogates, which UTF-8 cannot hold."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


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
    texts = [_exact_text(path, line, name, row.get(name)) for name in shape.texts]
    jsons = [None if row.get(n) is None else _exact_json(row[n]) for n in shape.jsons]
    return ints, texts, jsons, row.get("task_name")


# --- the fast path: orjson, a block at a time ---------------------------------------------------

_PLAIN_TEXT = {str, type(None)}
_SUSPECT = object()  # a fast-path text that may hide a big integer: redo the row exactly


def _may_hide_big_int(text: bytes) -> bool:
    """Whether `e+` occurs: a `+` first (memchr), then every `+` checked at once with numpy,
    much faster than a two-byte search through text full of `e`s."""
    if b"+" not in text:
        return False
    codes = np.frombuffer(text, np.uint8)
    return bool(np.any((codes[1:] == ord("+")) & (codes[:-1] == ord("e"))))


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
    return _SUSPECT if BIG_FLOAT_MARK in text else text.decode()


def _columns(rows: list[dict], names: tuple[str, ...]) -> list[list[Any]]:
    """Each named field of every row, column by column (one C-level call per row); an absent
    key reads as None."""
    try:
        return [list(column) for column in zip(*map(itemgetter(*names), rows), strict=True)]
    except KeyError:
        return [[row.get(name) for row in rows] for name in names]


@dataclass
class _Block:
    """A block's columns as lists. JSON text is bytes, b"" for NULL (JSON text is never empty);
    `joined` caches each JSON column's concatenation (None once a row was patched); `tasks` holds
    the rows' own `task_name` when the table's rows carry one."""

    ints: list[list[Any]]
    texts: list[list[Any]]
    jsons: list[list[bytes]]
    joined: list[bytes | None]
    tasks: list[Any]


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
    n_ints, n_texts = len(shape.ints), len(shape.texts)
    ints = columns[:n_ints]
    texts = columns[n_ints : n_ints + n_texts]
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
    jsons, joined = [], []
    for values in columns[n_ints + n_texts : n_ints + n_texts + len(shape.jsons)]:
        if None in values:
            texts_of_column = [b"" if v is None else orjson.dumps(v) for v in values]
        else:
            texts_of_column = list(map(orjson.dumps, values))
        data = b"".join(texts_of_column)
        if _may_hide_big_int(data):
            redo.update(i for i, text in enumerate(texts_of_column) if BIG_FLOAT_MARK in text)
        jsons.append(texts_of_column)
        joined.append(data)
    tasks = columns[-1] if shape.row_has_task_name else []
    return _Block(ints, texts, jsons, joined, tasks), redo


def _patch(block: _Block, row: int, cells: Cells) -> None:
    """Put one exactly-parsed row's cells into the block."""
    ints, texts, jsons, task = cells
    for column, value in zip(block.ints, ints, strict=True):
        column[row] = value
    for column, value in zip(block.texts, texts, strict=True):
        column[row] = value
    for column, value in zip(block.jsons, jsons, strict=True):
        column[row] = b"" if value is None else value
    block.joined = [None] * len(block.jsons)
    if block.tasks:
        block.tasks[row] = task


# --- Arrow arrays from buffers ------------------------------------------------------------------


def _offsets(lengths: np.ndarray) -> pa.Buffer:
    if lengths.sum() >= 1 << 31:
        raise ValueError("a block's text exceeds 2 GiB; use a smaller chunk_bytes")
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.py_buffer(offsets)


def _validity(present: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(present, bitorder="little"))


def _int64_array(values: list[int]) -> pa.Array:
    return pa.Array.from_buffers(
        pa.int64(), len(values), [None, pa.py_buffer(np.array(values, np.int64))]
    )


def _string_array(values: list[str | None]) -> pa.Array:
    n = len(values)
    nulls = values.count(None)
    validity = None
    if nulls:
        validity = _validity(np.fromiter(map(is_not, values, repeat(None)), bool, n))
        values = ["" if v is None else v for v in values]
    text = "".join(values)
    if text.isascii():
        data, lengths = text.encode(), np.fromiter(map(len, values), np.int64, n)
    else:
        encoded = [v.encode() for v in values]
        data, lengths = b"".join(encoded), np.fromiter(map(len, encoded), np.int64, n)
    return pa.StringArray.from_buffers(n, _offsets(lengths), pa.py_buffer(data), validity, nulls)


def _json_array(texts: list[bytes], joined: bytes | None) -> pa.Array:
    n = len(texts)
    lengths = np.fromiter(map(len, texts), np.int64, n)
    validity, nulls = None, 0
    if not lengths.all():
        present = lengths > 0
        validity, nulls = _validity(present), n - int(present.sum())
    data = pa.py_buffer(b"".join(texts) if joined is None else joined)
    return pa.StringArray.from_buffers(n, _offsets(lengths), data, validity, nulls)


def _constant_array(text: str, n: int) -> pa.Array:
    encoded = text.encode()
    offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int32) * len(encoded))
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(encoded * n))


# --- chunks -------------------------------------------------------------------------------------


@dataclass
class _Lines:
    """A block of a chunk's lines: line `i` of the block is line `first + i` of the chunk unless
    blank lines were dropped (then `numbers` says); `last` is an unterminated last line."""

    first: int
    raws: list[bytes]
    last: int | None
    numbers: list[int] | None = None

    def number(self, i: int) -> int:
        return self.first + i if self.numbers is None else self.numbers[i]

    def without(self, blank: set[int]) -> _Lines:
        keep = [i for i in range(len(self.raws)) if i not in blank]
        raws = [self.raws[i] for i in keep]
        return _Lines(self.first, raws, self.last, [self.number(i) for i in keep])


def _block_batch(lines: _Lines, job: ChunkJob, result: ChunkResult) -> pa.RecordBatch | None:
    """One block as a record batch (None if all blank); rows the fast path cannot vouch for are
    redone exactly. Blank lines are skipped but counted, as `formats.jsonl.iter_raw_lines` does."""
    shape = SHAPES[job.table]
    rows = _loads_all(lines.raws)
    if None in rows:
        blank = {i for i, row in enumerate(rows) if row is None and not lines.raws[i].strip()}
        if blank:
            lines = lines.without(blank)
            rows = [row for i, row in enumerate(rows) if i not in blank]
            if not rows:
                return None
    block, redo = _fast_block(rows, shape)
    for i in sorted(redo):
        line = lines.number(i)
        _patch(block, i, _exact_cells(job.path, line, lines.raws[i], line == lines.last, shape))
    tasks = block.tasks
    mismatches = len(tasks) - tasks.count(job.task_name) - tasks.count(None)
    if mismatches:
        result.mismatches += mismatches
        example = next(t for t in tasks if t is not None and t != job.task_name)
        result.mismatch_example = result.mismatch_example or str(example)
    n = len(rows)
    arrays = [_constant_array(job.run_id, n), _constant_array(job.task_name, n)]
    arrays += [_int64_array(values) for values in block.ints]
    arrays += [_string_array(values) for values in block.texts]
    arrays += [_json_array(t, j) for t, j in zip(block.jsons, block.joined, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, names=list(shape.columns))


def parse_chunk(data: bytes, job: ChunkJob) -> ChunkResult:
    """Parse the lines of one chunk into record batches of up to `BLOCK_ROWS` rows (the writer
    regroups them into row groups).

    A last line without a newline is parsed too: if it is complete JSON it is a row, if not the
    error says the file looks truncated (still being written).
    """
    raws = data.split(b"\n")
    tail = raws.pop()  # what follows the last newline: empty unless the file ends without one
    result = ChunkResult([], len(raws) + bool(tail), 0, None)
    last = None
    if tail:
        raws.append(tail)
        last = len(raws)
    for start in range(0, len(raws), BLOCK_ROWS):
        block = _Lines(start + 1, raws[start : start + BLOCK_ROWS], last)
        batch = _block_batch(block, job, result)
        if batch is not None:
            result.batches.append(batch)
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


def _reply(job: ChunkJob) -> tuple[int, dict[str, Any], Any]:
    """(kind, meta, body) of one job's reply; a worker survives a bad chunk to report it."""
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
        kind, meta, body = _reply(ChunkJob(**spec))
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
