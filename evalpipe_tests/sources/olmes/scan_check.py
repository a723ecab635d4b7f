"""The scanner's differential property, checked on one chunk of bytes (by the tests, the fuzz
target and the sanitized build's run):

- the C scanner and the pure-Python one return the same thing, buffers byte for byte;
- every line the C scanner converts, the stdlib path reads too, to the same values;
- the whole chunk either parses or fails with a `DumpFormatError`, never another exception.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from evalpipe.core.jsonl import DumpFormatError
from evalpipe.sources.olmes import instance_parse
from evalpipe.sources.olmes.instance_parse import SHAPES, ChunkJob, _exact_cells, _scanned_batch
from evalpipe.sources.olmes.scanner import ScanRows
from evalpipe.sources.olmes.scanner_python import scan_rows as python_scan_rows

TASK = "t"
CORPUS = Path(__file__).with_name("scanner_corpus")


def corpus_inputs() -> list[bytes]:
    """Each seed file of the corpus as one chunk, then each of its lines alone (its last line
    unterminated, as at the end of a file still being written)."""
    files = [path.read_bytes() for path in sorted(CORPUS.glob("*.jsonl"))]
    return files + [line for data in files for line in data.split(b"\n") if line]


def job(table: str) -> ChunkJob:
    return ChunkJob(f"dump/task-000-{TASK}-{table}.jsonl", 0, 0, table, TASK, "run")


def scan_args(table: str) -> tuple:
    """`scan_rows`'s arguments after the data, as `parse_chunk` passes them."""
    shape = SHAPES[table]
    return (
        shape.ints,
        shape.texts,
        shape.jsons,
        "task_name" if shape.row_has_task_name else None,
        TASK,
    )


def canonical(value: Any) -> str:
    """A value as comparable text: key order kept, NaN equal to NaN."""
    return json.dumps(value)


def check_converted_rows(data: bytes, table: str, scanned: tuple) -> None:
    """Each converted row holds what the stdlib path reads from its line."""
    lines, rows, ints, texts, mismatches, example, refused = scanned
    shape = SHAPES[table]
    refused_lines = {line for _, _, line, _ in refused}
    converted = [
        (number, raw)
        for number, raw in enumerate(data.split(b"\n")[:lines], 1)
        if raw.strip() and number not in refused_lines
    ]
    assert len(converted) == rows
    batch = _scanned_batch(rows, ints, texts, job(table)).to_pylist()
    names = (*shape.ints, *shape.texts, *shape.jsons)
    task_names = []
    for (number, raw), row in zip(converted, batch, strict=True):
        try:
            cells = _exact_cells("chunk", number, raw, False, shape)
        except DumpFormatError as exc:
            raise AssertionError(f"scanner converted {raw!r}, which the stdlib rejects") from exc
        expected = dict(zip(names, [*cells[0], *cells[1], *cells[2]], strict=True))
        for name in (*shape.ints, *shape.texts):
            assert row[name] == expected[name], (raw, name)
        for name in shape.jsons:
            got = None if row[name] is None else canonical(json.loads(row[name]))
            want = None if expected[name] is None else canonical(json.loads(expected[name]))
            assert got == want, (raw, name)
        task_names += [cells[3]] if cells[3] is not None and cells[3] != TASK else []
    assert (mismatches, example) == (len(task_names), task_names[0] if task_names else None)


def check_chunk(data: bytes, c_scan_rows: ScanRows) -> None:
    """Raise AssertionError where `data` breaks the property under any table's shape."""
    for table in SHAPES:
        scanned = c_scan_rows(data, *scan_args(table))
        assert scanned == python_scan_rows(data, *scan_args(table)), (table, data[:200])
        check_converted_rows(data, table, scanned)
        with contextlib.suppress(DumpFormatError):  # any other exception fails the check
            instance_parse.parse_chunk(data, job(table))
