"""The sample generator must produce every quirk of real OLMES dumps, consistently and repeatably.

Readers, checks and benchmarks are tested against these dumps, so a quirk missing here is a
quirk nobody tests. See `shared/docs/olmes-dump-format.md`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from evalpipe.results.suites import BUILTIN_SUITES
from evalpipe.sources.olmes.samples import generate_dumps, run_dir_bytes

PROJECT_ROOT = Path(__file__).resolve().parents[3]
RECORD_KEYS = [
    "task_name", "task_hash", "model_hash", "model_config", "task_config", "compute_config",
    "processing_time", "current_date", "num_instances", "beaker_info", "metrics", "task_idx",
]  # fmt: skip
TASK_CONFIG_KEYS = [
    "task_name", "task_core", "limit", "split", "num_shots", "fewshot_seed", "primary_metric",
    "random_subsample_seed", "context_kwargs", "generation_kwargs", "metric_kwargs",
    "native_id_field", "fewshot_source", "dataset_path", "dataset_name", "use_chat_format",
    "version", "revision", "compute_gold_bpb", "external_eval", "custom_kwargs",
    "skip_model_judges", "model_max_length", "metadata",
]  # fmt: skip
TASK_FILE = re.compile(r"^task-(\d{3})-(.+)-(metrics\.json|config\.json|predictions\.jsonl|"
                       r"requests\.jsonl|recorded-inputs\.jsonl)$")  # fmt: skip
HUGE_LIMIT = 10_000_000_000_000_000_000


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """4 runs, 12 tasks: 9 MC members of core_9mcqa plus 3 generative minerva members."""
    root = tmp_path_factory.mktemp("dumps")
    return root, generate_dumps(root, runs=4, tasks=12, instances=20, seed=7)


def _lines(run_dir: Path) -> list[str]:
    return (run_dir / "metrics-all.jsonl").read_text(encoding="utf-8").splitlines()


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _lines(run_dir)]


def _task_files(run_dir: Path) -> dict[tuple[str, str], int]:
    """(task_name, artifact) -> task_idx from the file names."""
    files = {}
    for path in run_dir.iterdir():
        match = TASK_FILE.match(path.name)
        if match:
            files[(match[2], match[3])] = int(match[1])
    return files


def _names_at(run_dir: Path, idx: int) -> set[str]:
    """Task names whose files carry the prefix `task-{idx:03d}-`."""
    return {name for (name, _), i in _task_files(run_dir).items() if i == idx}


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _prefix(run_dir: Path, task_name: str) -> Path:
    (idx,) = {i for (name, _), i in _task_files(run_dir).items() if name == task_name}
    return run_dir / f"task-{idx:03d}-{task_name}"


def _is_old_format(run_dir: Path) -> bool:
    return not (run_dir / "metrics.json").exists()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_arguments_give_byte_identical_dumps(tmp_path: Path) -> None:
    """Tests and benchmarks compare runs across processes, so output must not drift."""
    first = generate_dumps(tmp_path / "a", runs=4, tasks=12, instances=10, seed=3)
    second = generate_dumps(tmp_path / "b", runs=4, tasks=12, instances=10, seed=3)
    generate_dumps(tmp_path / "c", runs=4, tasks=12, instances=10, seed=4)
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in second
    ]
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _tree(tmp_path / "a") != _tree(tmp_path / "c")


def test_runs_are_spread_over_two_dumps_at_different_depths(
    dumps: tuple[Path, list[Path]],
) -> None:
    """Readers must discover run directories at any depth, in more than one dump."""
    root, run_dirs = dumps
    assert run_dirs == sorted(run_dirs) and len(run_dirs) == 4
    rel = [d.relative_to(root).parts for d in run_dirs]
    assert {parts[0] for parts in rel} == {"2025-10-08_posttrain", "2025-11-03_posttrain"}
    assert {len(parts) for parts in rel} == {3, 4}
    assert all(parts[1] == "_eval_results" for parts in rel)
    assert all(re.fullmatch(r"[^_/]+_.+__.+", parts[-1]) for parts in rel)
    assert all(run_dir_bytes(d) > 0 for d in run_dirs)


def test_one_model_is_rerun_later(dumps: tuple[Path, list[Path]]) -> None:
    """A later run of the same model and revision (in the later dump) supersedes the other."""
    root, run_dirs = dumps
    runs: dict[tuple[str, str], list[tuple[str, datetime, datetime]]] = {}
    for run_dir in run_dirs:
        records = _records(run_dir)
        config = records[0]["model_config"]
        dates = [datetime.strptime(r["current_date"], "%Y-%m-%d %H:%M:%S UTC") for r in records]
        dump = run_dir.relative_to(root).parts[0]
        runs.setdefault((config["model"], config["revision"]), []).append(
            (dump, min(dates), max(dates))
        )
    assert len(runs) == 3
    (reruns,) = [sorted(found) for found in runs.values() if len(found) == 2]
    (earlier_dump, _, earlier_end), (later_dump, later_start, _) = reruns
    assert earlier_dump < later_dump
    assert later_start > earlier_end


def test_records_follow_the_oe_eval_schema(dumps: tuple[Path, list[Path]]) -> None:
    """Twelve keys in order, 24 task_config keys, string batch_size, md5 hashes, dates."""
    _, run_dirs = dumps
    beaker_kinds = set()
    for run_dir in run_dirs:
        records = _records(run_dir)
        for record in records:
            assert list(record) == RECORD_KEYS
            assert list(record["task_config"]) == TASK_CONFIG_KEYS
            assert isinstance(record["compute_config"]["batch_size"], str)
            assert None not in record["compute_config"].values()
            assert re.fullmatch(r"[0-9a-f]{32}", record["task_hash"])
            assert re.fullmatch(r"[0-9a-f]{32}", record["model_hash"])
            datetime.strptime(record["current_date"], "%Y-%m-%d %H:%M:%S UTC")
            assert isinstance(record["processing_time"], float)
            assert "primary_score" in record["metrics"]
            beaker_kinds.add(bool(record["beaker_info"]))
        limits = [r["task_config"]["limit"] for r in records]
        assert HUGE_LIMIT in limits, "every run has the int64-overflowing limit"
        assert all(x is None or isinstance(x, int) for x in limits)
        assert all(line == json.dumps(json.loads(line)) for line in _lines(run_dir))
    assert beaker_kinds == {True, False}


def test_aggregates_come_first_with_null_task_idx_and_no_files(
    dumps: tuple[Path, list[Path]],
) -> None:
    """Aggregates exist only in metrics-all.jsonl; a per-file pipeline would miss them."""
    _, run_dirs = dumps
    for run_dir in run_dirs:
        records = _records(run_dir)
        idxs = [r["task_idx"] for r in records]
        n_aggregates = idxs.index(next(i for i in idxs if i is not None))
        assert n_aggregates == 2
        assert all(i is not None for i in idxs[n_aggregates:])
        names = {r["task_name"] for r in records[:n_aggregates]}
        assert names == {"core_9mcqa:rc::olmes:full", "minerva_math::tulu"}
        assert not {name for name, _ in _task_files(run_dir)} & names


def test_aggregate_scores_are_the_suite_means_of_present_members(
    dumps: tuple[Path, list[Path]],
) -> None:
    """Checks recompute aggregates from members and compare exactly."""
    _, run_dirs = dumps
    for run_dir in run_dirs:
        records = _records(run_dir)
        by_name = {r["task_name"]: r for r in records if r["task_idx"] is not None}
        for aggregate in (r for r in records if r["task_idx"] is None):
            suite = BUILTIN_SUITES[aggregate["task_name"]]
            members = [by_name[m] for m in suite.members if m in by_name]
            scores = [m["metrics"]["primary_score"] for m in members]
            sizes = [m["num_instances"] for m in members]
            micro = sum(s * n for s, n in zip(scores, sizes, strict=True)) / sum(sizes)
            assert suite.averaging == "macro"
            assert aggregate["task_config"]["primary_metric"] == "macro"
            assert aggregate["metrics"]["primary_score"] == sum(scores) / len(scores)
            assert aggregate["metrics"]["primary_score_macro"] == sum(scores) / len(scores)
            assert aggregate["metrics"]["primary_score_micro"] == micro
            assert aggregate["num_instances"] == sum(sizes)
        minerva = [n for n in by_name if n.startswith("minerva_math_")]
        assert len(minerva) == 3, "tasks=12 adds 3 of the 7 minerva members"


def test_per_task_metrics_json_is_the_metrics_all_line(dumps: tuple[Path, list[Path]]) -> None:
    """Reconstruction copies line bytes; config.json is the same object, other whitespace."""
    _, run_dirs = dumps
    new_format = [d for d in run_dirs if not _is_old_format(d)]
    assert len(new_format) == 3
    for run_dir in new_format:
        for line in _lines(run_dir):
            record = json.loads(line)
            if record["task_idx"] is None:
                continue
            prefix = run_dir / f"task-{record['task_idx']:03d}-{record['task_name']}"
            assert Path(f"{prefix}-metrics.json").read_bytes() == line.encode("utf-8")
            config_text = Path(f"{prefix}-config.json").read_text(encoding="utf-8")
            assert json.loads(config_text) == record["task_config"]
            assert config_text not in line


def test_task_records_match_their_predictions(dumps: tuple[Path, list[Path]]) -> None:
    """num_instances counts prediction rows; primary_score is their mean primary metric."""
    _, run_dirs = dumps
    for run_dir in run_dirs:
        for record in _records(run_dir):
            if record["task_idx"] is None:
                continue
            rows = _jsonl(Path(f"{_prefix(run_dir, record['task_name'])}-predictions.jsonl"))
            values = [row["metrics"][record["task_config"]["primary_metric"]] for row in rows]
            assert record["num_instances"] == len(rows)
            assert record["metrics"]["primary_score"] == sum(values) / len(values)
            assert set(values) <= {0.0, 1.0}


def test_task_prefixes_are_reused_by_a_second_invocation(
    dumps: tuple[Path, list[Path]],
) -> None:
    """`task-000-` names two tasks in one directory, so files map to records by name."""
    _, run_dirs = dumps
    reused = 0
    for run_dir in run_dirs:
        files = _task_files(run_dir)
        reused += len(_names_at(run_dir, 0)) > 1
        for record in _records(run_dir):
            if record["task_idx"] is not None:
                assert files[(record["task_name"], "predictions.jsonl")] == record["task_idx"]
    assert reused == len(run_dirs), "minerva is its own invocation in every run"
    split = [d for d in run_dirs if len(_names_at(d, 0)) == 3]
    assert len(split) == 1, "one run also splits the MC tasks over two invocations"


def test_some_metrics_all_lines_are_exact_duplicates(dumps: tuple[Path, list[Path]]) -> None:
    """Re-runs append verbatim lines; readers must drop them."""
    _, run_dirs = dumps
    duplicated = [d for d in run_dirs if len(set(_lines(d))) < len(_lines(d))]
    assert len(duplicated) == 1
    lines = _lines(duplicated[0])
    assert lines[-2:] == lines[2:4]


def test_new_format_runs_have_summaries_and_a_vestigial_metrics_jsonl(
    dumps: tuple[Path, list[Path]],
) -> None:
    """metrics.jsonl holds bare strings only; nothing in it may be parsed as a record."""
    _, run_dirs = dumps
    for run_dir in (d for d in run_dirs if not _is_old_format(d)):
        vestigial = _jsonl(run_dir / "metrics.jsonl")
        assert vestigial and all(isinstance(v, str) for v in vestigial)
        assert set(vestigial) == {"all_primary_scores", "tasks", "model_config"}
        summary = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        assert list(summary) == ["all_primary_scores", "tasks", "model_config"]
        assert all(re.fullmatch(r".+: \d\.\d{4}", s) for s in summary["all_primary_scores"])
        assert len(summary["tasks"]) == len(set(_lines(run_dir)))


def test_old_format_run_has_a_task_only_in_artifact_files(
    dumps: tuple[Path, list[Path]],
) -> None:
    """Old dumps lack per-task metrics/config files and some variants' metrics-all rows."""
    _, run_dirs = dumps
    (old,) = [d for d in run_dirs if _is_old_format(d)]
    files = _task_files(old)
    assert not (old / "metrics.jsonl").exists()
    assert {kind for _, kind in files} == {
        "predictions.jsonl",
        "requests.jsonl",
        "recorded-inputs.jsonl",
    }
    recorded = {r["task_name"] for r in _records(old)}
    artifact_only = {name for name, _ in files} - recorded
    assert artifact_only == {"arc_challenge:mc::olmes:full"}
    prefix = _prefix(old, "arc_challenge:mc::olmes:full")
    assert all("task_name" not in row for row in _jsonl(Path(f"{prefix}-predictions.jsonl")))
    for kind in ("requests", "recorded-inputs"):
        rows = _jsonl(Path(f"{prefix}-{kind}.jsonl"))
        assert {row["task_name"] for row in rows} == {"arc_challenge:mc::olmes:full"}


def test_one_task_has_no_requests_file(dumps: tuple[Path, list[Path]]) -> None:
    """requests.jsonl is optional; every task still has predictions and recorded inputs."""
    _, run_dirs = dumps
    missing = []
    for run_dir in run_dirs:
        files = _task_files(run_dir)
        tasks = {name for name, _ in files}
        assert all((t, "predictions.jsonl") in files for t in tasks)
        assert all((t, "recorded-inputs.jsonl") in files for t in tasks)
        missing += [(run_dir, t) for t in tasks if (t, "requests.jsonl") not in files]
    assert len(missing) == 1


def test_rows_carry_mixed_native_ids_labels_and_non_ascii(
    dumps: tuple[Path, list[Path]],
) -> None:
    """native_id int/str/null in one dump, int and str labels, UTF-8 text in the files."""
    _, run_dirs = dumps
    run_dir = run_dirs[-1]
    native_kinds: set[str] = set()
    for record in (r for r in _records(run_dir) if r["task_idx"] is not None):
        prefix = _prefix(run_dir, record["task_name"])
        generative = record["task_config"]["primary_metric"] == "exact_match"
        preds = _jsonl(Path(f"{prefix}-predictions.jsonl"))
        for row in preds:
            assert list(row) == [
                "doc_id", "native_id", "metrics", "model_output", "label", "task_hash",
                "model_hash",
            ]  # fmt: skip
            assert row["task_hash"] == record["task_hash"]
            native = row["native_id"]
            native_kinds.add(type(native).__name__)
            if isinstance(native, str) and not native.isascii():
                native_kinds.add("non-ascii")
        n_outputs = {len(row["model_output"]) for row in preds}
        assert len(n_outputs) == 1, "choices are fixed per task"
        if generative:
            assert n_outputs == {1}
            assert all(isinstance(row["label"], str) for row in preds)
            assert {"continuation", "sum_logits", "num_tokens"} <= set(preds[0]["model_output"][0])
        else:
            assert 2 <= n_outputs.pop() <= 5
            assert all(isinstance(row["label"], int) for row in preds)
            assert {
                "sum_logits", "num_tokens", "num_tokens_all", "is_greedy", "logits_per_token",
                "logits_per_char", "logits_per_byte", "num_chars",
            } <= set(preds[0]["model_output"][0])  # fmt: skip
        recorded = _jsonl(Path(f"{prefix}-recorded-inputs.jsonl"))
        assert len(recorded) == 3
        assert list(recorded[0]) == ["doc", "task_name", "doc_id", "native_id", "label", "requests"]
        requests_path = Path(f"{prefix}-requests.jsonl")
        if requests_path.exists():
            requests = _jsonl(requests_path)
            assert len(requests) == len(preds) * len(preds[0]["model_output"])
            expected = "generate_until" if generative else "loglikelihood"
            assert {r["request_type"] for r in requests} == {expected}
            assert list(requests[0]) == [
                "request_type", "doc", "request", "idx", "task_name", "doc_id", "native_id",
                "label",
            ]  # fmt: skip
    assert native_kinds == {"int", "str", "NoneType", "non-ascii"}
    text = b"".join(p.read_bytes() for p in run_dir.glob("*.jsonl"))
    for sample in ("«l'énergie»", "温度", "答案是"):
        assert sample.encode("utf-8") in text


def test_single_run_has_generative_tasks_and_reused_prefixes(tmp_path: Path) -> None:
    """The benchmark shape (runs=1, tasks=10) still carries the quirks a lone run can have."""
    (run_dir,) = generate_dumps(tmp_path, runs=1, tasks=10, instances=4)
    records = _records(run_dir)
    assert [r["task_name"] for r in records[:2]] == [
        "core_9mcqa:rc::olmes:full",
        "minerva_math::tulu",
    ]
    assert records[1]["num_instances"] == 4 and len(records) == 2 + 10 + 2
    assert len(_names_at(run_dir, 0)) == 3


def test_invalid_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most 73"):
        generate_dumps(tmp_path, tasks=74)
    with pytest.raises(ValueError, match=">= 1"):
        generate_dumps(tmp_path, runs=0)


def test_cli_writes_dumps_and_reports_them(tmp_path: Path) -> None:
    """`python -m evalpipe.samples` is how the demo and benchmarks make their data."""
    out = tmp_path / "cli"
    args = ["--out", str(out), "--runs", "2", "--tasks", "3", "--instances", "5", "--seed", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "evalpipe.samples", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    files = [p for p in out.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    assert f"wrote 2 run directories, {len(files)} files, {size} bytes" in result.stdout
    api_dirs = generate_dumps(
        tmp_path / "api", runs=2, tasks=3, instances=5, seed=1, dump_suffix="-seed1"
    )
    assert _tree(out) == _tree(tmp_path / "api")
    assert len(api_dirs) == 2
    bad = subprocess.run(
        [sys.executable, "-m", "evalpipe.samples", "--out", str(out), "--tasks", "0"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and ">= 1" in bad.stderr


def test_cli_gives_distinct_run_ids_for_distinct_seeds(tmp_path: Path) -> None:
    """Two batches of different seeds in one root never share a run id (nor overwrite files)."""
    out = tmp_path / "dumps"
    printed = []
    for seed in ("0", "1", "2"):
        args = ["--out", str(out), "--runs", "2", "--tasks", "2", "--instances", "2"]
        result = subprocess.run(
            [sys.executable, "-m", "evalpipe.samples", *args, "--seed", seed],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        printed.append(set(result.stdout.splitlines()[:-1]))
    assert all(len(ids) == 2 for ids in printed)
    assert not (printed[0] & printed[1] or printed[0] & printed[2] or printed[1] & printed[2])
    assert all(r.split("/")[0].endswith("-seed1") for r in printed[1])
