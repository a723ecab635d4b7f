"""A run's tables are published together by one commit record: readers see its previous
complete version or its new complete version, never a mix, whatever a crash interrupts."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalpipe.storage.lake import MAX_KEY_CHARS, SCHEMAS, Lake, partition_key

RUN = "2025-11-03_posttrain/_eval_results/org_model__main"
PROJECT = Path(__file__).resolve().parents[2]


def metric_rows(n: int, value: float, run: str = RUN) -> list[dict]:
    return [
        {
            "run_id": run,
            "task_name": f"t{i}",
            "metric": "acc",
            "value": value,
            "filter": None,
            "stderr": None,
        }
        for i in range(n)
    ]


def test_partition_keys_are_directory_safe_and_distinct_for_any_length() -> None:
    assert "/" not in partition_key(RUN)
    long_a, long_b = "d/" + "x" * 250 + "a", "d/" + "x" * 250 + "b"
    keys = {partition_key(long_a), partition_key(long_b)}
    assert len(keys) == 2 and all(len(k) <= MAX_KEY_CHARS for k in keys)


def test_a_run_id_of_any_length_is_stored_and_read_back(tmp_path: Path) -> None:
    run = "2025_dump/" + "very_long_model_name_" * 14 + "__main"
    lake = Lake(tmp_path / "lake")
    lake.write("task_metrics", run, metric_rows(2, 0.5, run))
    assert lake.read("task_metrics", run).column("run_id").to_pylist() == [run, run]
    assert lake.run_ids("task_metrics") == [run]


def test_write_replaces_exactly_one_partition(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write("task_metrics", RUN, metric_rows(3, 0.5))
    lake.write("task_metrics", "other/run", metric_rows(2, 0.1, "other/run"))
    lake.write("task_metrics", RUN, metric_rows(1, 0.9))
    assert lake.read("task_metrics", RUN).to_pylist() == metric_rows(1, 0.9)
    assert lake.read("task_metrics", "other/run").num_rows == 2
    assert lake.run_ids("task_metrics") == sorted([RUN, "other/run"])
    assert lake.read_all("task_metrics").num_rows == 3


def test_old_versions_are_kept_one_generation_then_removed(tmp_path: Path) -> None:
    """The previous version stays for readers of a warehouse built before the commit."""
    lake = Lake(tmp_path / "lake")
    for value in (0.1, 0.2, 0.3):
        lake.write("task_metrics", RUN, metric_rows(1, value))
    files = sorted(lake.run_dir("task_metrics", RUN).glob("*.parquet"))
    assert len(files) == 2
    assert lake.partition_file("task_metrics", RUN) in files


def test_failure_in_the_middle_of_a_write_keeps_the_previous_partition(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write("task_metrics", RUN, metric_rows(3, 0.5))
    batch = pa.RecordBatch.from_pylist(metric_rows(1000, 0.7), schema=SCHEMAS["task_metrics"])
    with pytest.raises(RuntimeError, match="disk on fire"), lake.stage(RUN, ["task_metrics"]) as s:
        s.writer("task_metrics").write_batch(batch)
        raise RuntimeError("disk on fire")
    assert lake.read("task_metrics", RUN).to_pylist() == metric_rows(3, 0.5)
    leftovers = list(lake.run_dir("task_metrics", RUN).iterdir())
    assert leftovers == [lake.partition_file("task_metrics", RUN)]


def test_rows_that_do_not_fit_the_schema_are_rejected_before_replacing(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write("task_metrics", RUN, metric_rows(2, 0.5))
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        lake.write(
            "task_metrics", RUN, [{"run_id": RUN, "task_name": "t", "metric": "m", "value": "x"}]
        )
    assert lake.read("task_metrics", RUN).num_rows == 2


def test_unknown_table_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown lake table 'nope'"):
        Lake(tmp_path).files("nope")


def test_a_commit_of_some_tables_keeps_the_others(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write("task_metrics", RUN, metric_rows(2, 0.5))
    with lake.stage(RUN, ["task_metrics", "task_choices"]) as staged:
        staged.write(
            "task_metrics", pa.Table.from_pylist(metric_rows(5, 0.1), SCHEMAS["task_metrics"])
        )
        staged.write("task_choices", pa.Table.from_pylist([], SCHEMAS["task_choices"]))
        staged.commit(["task_choices"])
    assert lake.read("task_metrics", RUN).num_rows == 2, "the uncommitted table is dropped"
    assert lake.read("task_choices", RUN).num_rows == 0
    assert len(list(lake.run_dir("task_metrics", RUN).glob("*.parquet"))) == 1


WRITER = """
import sys
from pathlib import Path
import pyarrow as pa
from evalpipe.storage.lake import Lake
from evalpipe.storage.schemas import SCHEMAS

lake, run = Lake(Path(sys.argv[1])), sys.argv[2]
version = 0
print("ready", flush=True)
while True:
    version += 1
    with lake.stage(run, ["task_metrics", "task_choices"]) as staged:
        for table, row in {
            "task_metrics": {"run_id": run, "task_name": "v", "metric": "m", "value": version},
            "task_choices": {"run_id": run, "task_name": "v", "n_choices": version},
        }.items():
            staged.write(table, pa.Table.from_pylist([row] * 500, SCHEMAS[table]))
        staged.commit()
"""


def committed_versions(lake: Lake) -> tuple[float, float]:
    metrics = lake.read("task_metrics", RUN).column("value").unique().to_pylist()
    choices = lake.read("task_choices", RUN).column("n_choices").unique().to_pylist()
    assert len(metrics) == len(choices) == 1
    return metrics[0], float(choices[0])


def test_kill_9_at_random_points_of_rewrites_never_shows_a_mix_of_versions(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path / "lake")
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    rng = random.Random(7)
    seen = set()
    for _ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(lake.root), RUN],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout.readline() == "ready\n"
        time.sleep(rng.random() * 0.3)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        if lake.record(RUN) is None:
            continue  # killed before its first commit
        metrics, choices = committed_versions(lake)
        assert metrics == choices, "both tables come from one version"
        seen.add(metrics)
    assert seen, "some commits landed"
    leftovers = [p for p in lake.root.rglob("*") if p.is_file() and p.suffix == ".partial"]
    assert len(leftovers) <= 8 * 2, "at most one version's files are left per kill"


def test_json_text_columns_are_written_without_dictionary_or_statistics(tmp_path: Path) -> None:
    """They are large and unique: a dictionary attempt and min/max cost time and prune nothing."""
    lake = Lake(tmp_path / "lake")
    rows = [
        {"run_id": RUN, "task_name": "t", "doc_id": i, "metrics": f'{{"acc": {i % 2}}}'}
        for i in range(100)
    ]
    lake.write("predictions", RUN, rows)
    group = pq.ParquetFile(lake.partition_file("predictions", RUN)).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert columns["metrics"].statistics is None
    assert not any("DICTIONARY" in e for e in columns["metrics"].encodings)
    assert columns["doc_id"].statistics.has_min_max and columns["doc_id"].statistics.max == 99
    assert any("DICTIONARY" in e for e in columns["task_name"].encodings)


def test_artifacts_are_published_with_the_tables_and_replaced_whole(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    for files in ({"a.json": b"1", "b.json": b"2"}, {"c.json": b"3"}):
        with lake.stage(RUN, ["task_metrics"]) as staged:
            staged.write("task_metrics", pa.Table.from_pylist([], SCHEMAS["task_metrics"]))
            staged.write_artifacts(files)
            assert lake.artifacts_dir(RUN) != staged.artifacts_dir, "invisible before the commit"
            staged.commit()
        current = lake.artifacts_dir(RUN)
        assert {p.name: p.read_bytes() for p in current.iterdir()} == files
    with lake.stage(RUN, ["task_metrics"]) as staged:
        staged.write("task_metrics", pa.Table.from_pylist([], SCHEMAS["task_metrics"]))
        staged.write_artifacts({})
        staged.commit()
    assert lake.artifacts_dir(RUN) is None
    with pytest.raises(RuntimeError), lake.stage(RUN, ["task_metrics"]) as staged:
        staged.write_artifacts({"d.json": b"4"})
        raise RuntimeError("crash before the commit")
    assert lake.artifacts_dir(RUN) is None
    assert not [
        p for p in staged.artifacts_dir.parent.glob("*") if "d.json" in str(list(p.iterdir()))
    ]
