"""Instance tables: every row of every file lands, JSON text parses back exactly, bad input fails
only its run and leaves the previous partitions as they were. Every test runs once per scanner
(C and pure Python: the `scanner` fixture)."""

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalpipe.core.jsonl import DumpFormatError, count_lines
from evalpipe.sources.olmes.instances import TABLES, InstanceIngestReport, ingest_instances
from evalpipe.sources.olmes.reader import find_run_dirs, index_task_files, read_metrics_all
from evalpipe.sources.olmes.samples import generate_dumps
from evalpipe.storage.lake import Lake
from evalpipe_tests.conftest import is_old_format

KIND_TABLES = {
    "predictions.jsonl": "predictions",
    "requests.jsonl": "requests",
    "recorded-inputs.jsonl": "recorded_inputs",
}
JSON_COLUMNS = {
    "predictions": ("metrics", "model_output"),
    "requests": ("doc", "request"),
    "recorded_inputs": ("doc", "requests"),
}
RUN = "dump/_eval_results/run"

pytestmark = pytest.mark.usefixtures("scanner")


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("instances") / "dumps"
    generate_dumps(root, runs=4, tasks=11, instances=25)
    return root


@pytest.fixture(scope="module")
def ingested(
    scanner: str, dumps: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Lake, dict[Path, InstanceIngestReport]]:
    """Every sample run ingested once per scanner, serially (parallel is compared with serial
    below)."""
    lake = Lake(tmp_path_factory.mktemp("lake"))
    reports = {
        run_dir: ingest_instances(str(run_dir.relative_to(dumps)), run_dir, lake, workers=1)
        for run_dir in find_run_dirs(dumps)
    }
    return lake, reports


def source_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line.strip()]


def task_rows(lake: Lake, table: str, run_id: str, task: str) -> list[dict]:
    return [r for r in lake.read(table, run_id).to_pylist() if r["task_name"] == task]


def instance_files(run_dir: Path):
    """(table, task name, path) of each instance file, tasks matched by name."""
    tasks, _ = index_task_files(run_dir)
    for task, files in tasks.items():
        for kind, path in files.paths.items():
            if kind in KIND_TABLES:
                yield KIND_TABLES[kind], task, path


def partition_bytes(lake: Lake, run_id: str) -> dict[str, bytes]:
    return {t: lake.partition_file(t, run_id).read_bytes() for t in TABLES}


def lake_files(lake: Lake) -> list[Path]:
    """Every data file in the lake (commit records and locks aside)."""
    return sorted(p for p in lake.root.rglob("*") if p.is_file() and p.parent.name != "_runs")


def write_run(run_dir: Path, files: dict[str, list[str]]) -> Path:
    run_dir.mkdir(parents=True)
    for name, lines in files.items():
        (run_dir / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return run_dir


def prediction(doc_id: int, **fields) -> dict:
    return {"doc_id": doc_id, "native_id": doc_id, "metrics": {"acc": 1.0}, **fields}


def test_every_row_of_every_file_lands_under_its_task(ingested, dumps: Path) -> None:
    lake, reports = ingested
    for run_dir, report in reports.items():
        run_id = str(run_dir.relative_to(dumps))
        expected: dict[str, dict[str, int]] = {table: {} for table in TABLES}
        for table, task, path in instance_files(run_dir):
            expected[table][task] = count_lines(path)
            assert len(task_rows(lake, table, run_id, task)) == count_lines(path), path
        assert report.rows == expected
        for table in TABLES:
            assert lake.read(table, run_id).num_rows == report.table_rows[table]
        assert report.row_task_name_mismatches == 0
        assert report.bytes_read == sum(p.stat().st_size for _, _, p in instance_files(run_dir))


def test_json_columns_parse_back_to_the_source_with_key_order(ingested, dumps: Path) -> None:
    lake, reports = ingested
    run_dir = next(iter(reports))
    run_id = str(run_dir.relative_to(dumps))
    for table, task, path in instance_files(run_dir):
        rows = task_rows(lake, table, run_id, task)
        for row, line in zip(rows, source_lines(path), strict=True):
            source = json.loads(line, object_pairs_hook=list)
            source_fields = dict(source)
            for column in JSON_COLUMNS[table]:
                assert json.loads(row[column], object_pairs_hook=list) == source_fields[column]
            assert row["doc_id"] == source_fields["doc_id"]


def test_native_id_and_label_become_text_or_null(ingested, dumps: Path) -> None:
    lake, reports = ingested
    seen = set()
    for run_dir in reports:
        run_id = str(run_dir.relative_to(dumps))
        for _, task, path in instance_files(run_dir):
            if not path.name.endswith("-predictions.jsonl"):
                continue
            rows = task_rows(lake, "predictions", run_id, task)
            for row, line in zip(rows, source_lines(path), strict=True):
                source = json.loads(line)
                for column in ("native_id", "label"):
                    value = source[column]
                    seen.add(type(value))
                    assert row[column] == (None if value is None else str(value))
    assert {int, str, type(None)} <= seen, "the sample mixes int, str and null ids"


def test_artifact_only_task_of_an_old_format_run_is_present(ingested) -> None:
    _, reports = ingested
    old = [d for d in reports if is_old_format(d)]
    assert old, "the sample has an old-format run"
    for run_dir in old:
        known = {r.task_name for r in read_metrics_all(run_dir / "metrics-all.jsonl").records}
        artifact_only = {task for _, task, _ in instance_files(run_dir)} - known
        assert artifact_only, "its metrics-all.jsonl lacks a task variant"
        for task in artifact_only:
            assert reports[run_dir].rows["predictions"][task] > 0


def test_reused_task_prefixes_do_not_mix_tasks(ingested, dumps: Path) -> None:
    lake, reports = ingested
    checked = 0
    for run_dir in reports:
        run_id = str(run_dir.relative_to(dumps))
        files = [(task, p) for table, task, p in instance_files(run_dir) if table == "predictions"]
        prefixes = Counter(path.name[: len("task-000")] for _, path in files)
        for task, path in files:
            if prefixes[path.name[: len("task-000")]] < 2:
                continue
            ids = [json.loads(line)["native_id"] for line in source_lines(path)]
            rows = task_rows(lake, "predictions", run_id, task)
            assert [r["native_id"] for r in rows] == [None if i is None else str(i) for i in ids]
            checked += 1
    assert checked, "the sample reuses task-NNN prefixes"


def test_a_task_without_a_requests_file_has_no_request_rows(ingested) -> None:
    _, reports = ingested
    missing = [
        (run_dir, task)
        for run_dir in reports
        for task, files in index_task_files(run_dir)[0].items()
        if files.get("requests.jsonl") is None
    ]
    assert missing, "the sample drops one requests file"
    for run_dir, task in missing:
        assert task not in reports[run_dir].rows["requests"]
        assert task in reports[run_dir].rows["predictions"]


def test_big_integers_nan_and_odd_scalars_survive(tmp_path: Path) -> None:
    """The scanner refuses NaN, and floats or lists where text is wanted; the stdlib path keeps them, and
    lines the scanner takes keep their source text verbatim."""
    big = 10**20
    rows = [
        prediction(0, metrics={"big": big, "neg": -(2**64), "u64": 2**64 - 1}, label=big),
        prediction(1, model_output=[{"x": float("nan"), "y": float("inf")}], label=True),
        prediction(2, native_id="数学_2", label=[1, 2.5], model_output=[{"n": 1e300, "s": "数学"}]),
        prediction(3, native_id=None, label=None, metrics=None),
        prediction(4, metrics={"note": "one+two, the+e+1"}),  # "e+" in plain text
        prediction(5, metrics={"s": "Ärger"}),
    ]
    run_dir = write_run(
        tmp_path / "run", {"task-000-t-predictions.jsonl": [json.dumps(r) for r in rows]}
    )
    lake = Lake(tmp_path / "lake")
    ingest_instances(RUN, run_dir, lake, workers=1)
    stored = lake.read("predictions", RUN).to_pylist()
    assert json.loads(stored[0]["metrics"]) == {"big": big, "neg": -(2**64), "u64": 2**64 - 1}
    assert stored[0]["label"] == str(big)
    nan_row = json.loads(stored[1]["model_output"])[0]
    assert math.isnan(nan_row["x"]) and nan_row["y"] == math.inf
    assert stored[1]["label"] == "true"
    assert stored[2]["native_id"] == "数学_2" and json.loads(stored[2]["label"]) == [1, 2.5]
    assert json.loads(stored[2]["model_output"]) == [{"n": 1e300, "s": "数学"}]
    assert "数学" in stored[2]["model_output"]  # the stdlib path writes UTF-8, not \\u escapes
    assert stored[5]["metrics"] == json.dumps(rows[5]["metrics"])  # scanned: the source's text
    assert stored[3]["native_id"] is None and stored[3]["label"] is None
    assert stored[3]["metrics"] is None and stored[3]["model_output"] is None
    assert json.loads(stored[4]["metrics"]) == rows[4]["metrics"]


def test_a_non_integer_doc_id_names_its_file_and_line(tmp_path: Path) -> None:
    """Blank lines are skipped but counted, so the reported line is the file's own."""
    lines = [json.dumps(prediction(i)) for i in range(3)] + ["", "  "]
    lines.append(json.dumps(prediction(2.5)))
    run_dir = write_run(tmp_path / "run", {"task-000-t-predictions.jsonl": lines})
    with pytest.raises(DumpFormatError, match="'doc_id' must be an integer") as error:
        ingest_instances(RUN, run_dir, Lake(tmp_path / "lake"), workers=1)
    assert (error.value.path.name, error.value.line) == ("task-000-t-predictions.jsonl", 6)


def test_a_row_naming_another_task_is_kept_under_the_files_task(tmp_path: Path) -> None:
    request = {"request_type": "loglikelihood", "doc": {}, "request": {}, "idx": 0, "doc_id": 0}
    lines = [json.dumps(request | {"task_name": name}) for name in ("t", "other", "t", "t")]
    run_dir = write_run(tmp_path / "run", {"task-000-t-requests.jsonl": lines})
    lake = Lake(tmp_path / "lake")
    report = ingest_instances(RUN, run_dir, lake, workers=1)
    assert report.row_task_name_mismatches == 1
    assert set(lake.read("requests", RUN).column("task_name").to_pylist()) == {"t"}
    assert "'other'" in report.findings[0].message


@pytest.fixture
def run_copy(dumps: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the run whose biggest requests file is made ~1 MB (many chunks)."""
    source = next(d for d in find_run_dirs(dumps) if not is_old_format(d))
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    big = max(run_dir.glob("*-requests.jsonl"), key=lambda p: p.stat().st_size)
    text = big.read_bytes()
    big.write_bytes(text * (1_000_000 // len(text) + 1))
    return run_dir, big


def test_a_malformed_line_fails_the_run_and_keeps_its_previous_partitions(
    run_copy: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir, big = run_copy
    lake = Lake(tmp_path / "lake")
    ingest_instances(RUN, run_dir, lake, workers=1)
    before = partition_bytes(lake, RUN)
    lines = big.read_bytes().split(b"\n")
    bad_line = len(lines) * 2 // 3
    lines[bad_line - 1] = lines[bad_line - 1][:500]
    big.write_bytes(b"\n".join(lines))
    for workers in (1, 2):
        with pytest.raises(DumpFormatError, match="malformed JSON") as error:
            ingest_instances(RUN, run_dir, lake, workers=workers, chunk_bytes=64_000)
        assert (error.value.path, error.value.line) == (big, bad_line)
        assert partition_bytes(lake, RUN) == before
        assert set(lake_files(lake)) == {lake.partition_file(t, RUN) for t in TABLES}


def test_a_truncated_last_line_is_an_error_not_dropped(tmp_path: Path, dumps: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(find_run_dirs(dumps)[0], run_dir)
    path = next(run_dir.glob("*-predictions.jsonl"))
    lines = source_lines(path)
    path.write_bytes(path.read_bytes()[:-30])  # a dump still being written
    with pytest.raises(DumpFormatError, match="truncated last line") as error:
        ingest_instances(RUN, run_dir, Lake(tmp_path / "lake"), workers=1)
    assert (error.value.path, error.value.line) == (path, len(lines))


def read_all(lake: Lake) -> dict[str, pa.Table]:
    return {table: lake.read(table, RUN) for table in TABLES}


def test_batch_size_and_workers_do_not_change_the_tables(
    run_copy: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir, _ = run_copy
    serial, small, parallel = Lake(tmp_path / "a"), Lake(tmp_path / "b"), Lake(tmp_path / "c")
    ingest_instances(RUN, run_dir, serial, workers=1)
    ingest_instances(RUN, run_dir, small, workers=1, batch_rows=7, chunk_bytes=10_000)
    report = ingest_instances(RUN, run_dir, parallel, workers=2, chunk_bytes=64_000)
    assert report.workers == 2
    expected = read_all(serial)
    assert read_all(small) == expected
    assert read_all(parallel) == expected
    row_groups = pq.ParquetFile(small.partition_file("requests", RUN)).num_row_groups
    assert row_groups >= expected["requests"].num_rows // 7
