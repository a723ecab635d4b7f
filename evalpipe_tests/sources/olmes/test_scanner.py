"""The pure-Python scanner is a drop-in for the C one: on the seed corpus, the instance-parse
tests' inputs and the sample dumps, both return the same buffers byte for byte, `parse_chunk`
makes the same Arrow batches (or the same error) and the ingest writes the same tables. Which one
runs is reported, and `EVALPIPE_SCANNER` chooses it."""

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from evalpipe.core.jsonl import DumpFormatError
from evalpipe.sources.olmes import instance_parse, scanner
from evalpipe.sources.olmes.instance_parse import SHAPES, ChunkResult
from evalpipe.sources.olmes.instances import TABLES, ingest_instances
from evalpipe.sources.olmes.reader import find_run_dirs
from evalpipe.sources.olmes.scanner import SCANNERS, ScanRows
from evalpipe.storage.lake import Lake
from evalpipe_tests.sources.olmes.conftest import requires_c
from evalpipe_tests.sources.olmes.scan_check import check_chunk, corpus_inputs, job, scan_args
from evalpipe_tests.sources.olmes.test_instance_parse import (
    REFUSED_LINES,
    VALID_LINES,
    line_of,
    mutations,
)

ROOT = Path(__file__).parents[3]


@contextmanager
def scanning_with(name: str) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(instance_parse, "scan_rows", SCANNERS[name])
        yield


def parsed(data: bytes, table: str, name: str) -> ChunkResult | str:
    """`parse_chunk`'s batches with one scanner, or its error."""
    with scanning_with(name):
        try:
            return instance_parse.parse_chunk(data, job(table))
        except DumpFormatError as exc:
            return str(exc)


def comparison_inputs(dumps: Path) -> list[bytes]:
    """The corpus, the instance-parse tests' lines and near misses, and the sample dump files."""
    rng = random.Random(7)
    lines = [line for line, _ in REFUSED_LINES] + VALID_LINES
    lines += mutations(line_of(), rng, 1000) + mutations(b'{"doc_id":1,"idx":-2}', rng, 500)
    files = [path.read_bytes() for path in sorted(dumps.rglob("*.jsonl"))]
    return [*corpus_inputs(), *lines, b"\n".join(lines), *files]


@requires_c
def test_both_scanners_return_the_same_buffers_and_batches(pristine_dumps: Path) -> None:
    for data in comparison_inputs(pristine_dumps):
        for table in SHAPES:
            c, python = (SCANNERS[name](data, *scan_args(table)) for name in ("c", "python"))
            assert c == python, (table, data[:300])
            assert parsed(data, table, "c") == parsed(data, table, "python"), (table, data[:300])


@requires_c
def test_the_c_scanner_converts_only_what_the_stdlib_reads_the_same_on_the_corpus() -> None:
    for data in corpus_inputs():
        check_chunk(data, SCANNERS["c"])


@requires_c
def test_the_ingest_writes_the_same_tables_with_either_scanner(
    pristine_dumps: Path, tmp_path: Path
) -> None:
    for run_dir in find_run_dirs(pristine_dumps):
        run_id = str(run_dir.relative_to(pristine_dumps))
        tables = {}
        for name in ("c", "python"):
            lake = Lake(tmp_path / name)
            with scanning_with(name):
                ingest_instances(run_id, run_dir, lake, workers=2, chunk_bytes=20_000)
            tables[name] = {table: lake.read(table, run_id) for table in TABLES}
        assert tables["c"] == tables["python"], run_id


@requires_c
@pytest.mark.parametrize("digits", [640, 0])
def test_the_integer_digit_limit_is_pythons_at_the_time_of_the_call(digits: int) -> None:
    """A program may change it (`sys.set_int_max_str_digits`); 0 is no limit."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(digits)
    try:
        for length in (640, 641, 5000):
            data = b'{"doc_id": 1, "idx": 0, "label": ' + b"9" * length + b"}"
            check_chunk(data, SCANNERS["c"])
            _, rows, *_ = SCANNERS["c"](data, *scan_args("requests"))
            assert rows == (0 if 0 < digits < length else 1), length
    finally:
        sys.set_int_max_str_digits(before)


def in_a_new_process(code: str, choice: str | None) -> subprocess.CompletedProcess:
    """Run `code` in a Python whose EVALPIPE_SCANNER is `choice` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "EVALPIPE_SCANNER"}
    env.update({"EVALPIPE_SCANNER": choice} if choice is not None else {})
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )


def implementation_in_a_new_process(choice: str | None) -> subprocess.CompletedProcess:
    code = "from evalpipe.sources.olmes.scanner import scanner_implementation as s; print(s())"
    return in_a_new_process(code, choice)


def test_the_scanner_in_use_is_reported_and_the_environment_chooses_it() -> None:
    built = "c" if "c" in SCANNERS else "python"
    for choice, expected in [(None, built), ("auto", built), ("python", "python"), (" C ", "c")]:
        if expected == "c" and "c" not in SCANNERS:
            continue
        run = implementation_in_a_new_process(choice)
        assert run.stdout.strip() == expected, (choice, run.stderr[-2000:])
    run = implementation_in_a_new_process("rust")
    assert run.returncode != 0 and "EVALPIPE_SCANNER must be one of" in run.stderr


def test_insisting_on_c_without_the_extension_fails_loudly() -> None:
    python_only = {"python": SCANNERS["python"]}
    assert scanner._choose("auto", python_only) == "python"
    with pytest.raises(ImportError, match="C scanner was not built"):
        scanner._choose("c", python_only)


def test_this_process_reports_the_scanner_the_ingest_uses() -> None:
    active: ScanRows = SCANNERS[scanner.scanner_implementation()]
    assert scanner.scan_rows is active


def test_the_pure_python_scanner_parses_on_one_thread() -> None:
    """It holds the GIL: a second parser thread only contends for it."""
    code = "from evalpipe.sources.olmes.instances import default_workers as w; print(w())"
    run = in_a_new_process(code, "python")
    assert run.stdout.strip() == "1", run.stderr[-2000:]
