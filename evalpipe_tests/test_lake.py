"""Lake partitions are replaced whole and atomically: a crash leaves the previous file readable."""

from pathlib import Path

import pyarrow as pa
import pytest

from evalpipe.lake import SCHEMAS, Lake, partition_key, run_id_from_key

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
