"""Lake partitions are replaced whole and atomically: a crash leaves the previous file readable."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalpipe.storage.lake import (
    COMMITS_DIR,
    SCHEMAS,
    Lake,
    commit_journal,
    partition_key,
    run_id_from_key,
)

RUN = "2025-11-03_posttrain/_eval_results/org_model__main"


def metric_rows(n: int, value: float) -> list[dict]:
    return [
        {"run_id": RUN, "task_name": f"t{i}", "metric": "acc", "value": value} for i in range(n)
    ]


def test_run_ids_with_slashes_round_trip_through_partition_keys() -> None:
    key = partition_key(RUN)
    assert "/" not in key
    assert run_id_from_key(key) == RUN


def test_write_replaces_exactly_one_partition(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write("task_metrics", RUN, metric_rows(3, 0.5))
    lake.write("task_metrics", "other/run", metric_rows(2, 0.1))
    lake.write("task_metrics", RUN, metric_rows(1, 0.9))
    assert lake.read("task_metrics", RUN).to_pylist() == metric_rows(1, 0.9)
    assert lake.read("task_metrics", "other/run").num_rows == 2
    assert lake.run_ids("task_metrics") == sorted([RUN, "other/run"])


def test_failure_in_the_middle_of_a_write_keeps_the_previous_partition(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write("task_metrics", RUN, metric_rows(3, 0.5))
    batch = pa.RecordBatch.from_pylist(metric_rows(1000, 0.7), schema=SCHEMAS["task_metrics"])
    with (
        pytest.raises(RuntimeError, match="disk on fire"),
        lake.writer("task_metrics", RUN) as writer,
    ):
        writer.write_batch(batch)
        raise RuntimeError("disk on fire")
    assert lake.read("task_metrics", RUN).to_pylist() == metric_rows(3, 0.5)
    leftovers = [p.name for p in lake.partition_file("task_metrics", RUN).parent.iterdir()]
    assert leftovers == ["data.parquet"]


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
        Lake(tmp_path).partition_file("nope", RUN)


STAGED = ("task_metrics", "task_choices")
CRASHING_COMMIT = """
import os, sys
from pathlib import Path
import pyarrow as pa
import pyarrow.parquet as pq
from evalpipe.storage.lake import Lake, PartitionWriter

published = PartitionWriter.publish

def publish_then_die(self):
    published(self)
    os._exit(9)  # a crash (power cut, OOM kill) right after the first rename

PartitionWriter.publish = publish_then_die
lake, run = Lake(Path(sys.argv[1])), sys.argv[2]
rows = {
    "task_metrics": {"run_id": run, "task_name": "new", "metric": "acc", "value": 1.0},
    "task_choices": {"run_id": run, "task_name": "new", "n_choices": 4, "generative": False},
}
with lake.stage(run, rows) as staged:
    for table, row in rows.items():
        writer = staged.writer(table)
        writer.write_table(pa.Table.from_pylist([row], writer.schema))
    staged.commit()
"""


def staged_tasks(lake: Lake) -> dict[str, list[str]]:
    return {t: [r["task_name"] for r in lake.read(t, RUN).to_pylist()] for t in STAGED}


def test_a_crash_between_the_renames_of_a_staged_commit_is_rolled_forward(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write(
        "task_metrics", RUN, [{"run_id": RUN, "task_name": "old", "metric": "acc", "value": 0.0}]
    )
    lake.write(
        "task_choices",
        RUN,
        [{"run_id": RUN, "task_name": "old", "n_choices": 2, "generative": False}],
    )
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_COMMIT, str(lake.root), RUN],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
    )
    assert crashed.returncode == 9, crashed.stderr
    assert staged_tasks(lake) == {"task_metrics": ["new"], "task_choices": ["old"]}  # half done

    assert lake.finish_interrupted_commits() == 1
    assert staged_tasks(lake) == {"task_metrics": ["new"], "task_choices": ["new"]}
    assert not list((lake.root / COMMITS_DIR).glob("*.json"))
    assert lake.finish_interrupted_commits() == 0


def test_a_commit_in_progress_is_not_touched_by_recovery(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write("task_metrics", RUN, metric_rows(1, 0.5))
    staged = lake.root / "task_metrics" / ".staged.partial"
    staged.write_bytes(b"not yet renamed")
    with commit_journal(lake.root, [(staged, lake.partition_file("task_metrics", RUN))]):
        assert lake.finish_interrupted_commits() == 0  # its committer holds the lock
        assert staged.exists()
    assert not list((lake.root / COMMITS_DIR).glob("*.json"))  # removed by its committer
    assert lake.read("task_metrics", RUN).to_pylist() == metric_rows(1, 0.5)


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
