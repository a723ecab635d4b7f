"""Reader for lm-evaluation-harness output: run discovery, `results_<ts>.json`, samples files.

Pure Python (no Dagster). lm-eval's `--output_path DIR` writes, per evaluation,
`DIR/<model_name_sanitized>/results_<ts>.json` and, with `--log_samples`, one
`samples_<task>_<ts>.jsonl` per task beside it (after the results file); `--output_path
FILE.json` writes `FILE_<ts>.json` with the samples in the same directory. One results file is
one run; its samples are the files of its directory with the same timestamp. See
`docs/formats/lmeval.md` for the mapping into evalpipe's tables.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalpipe.core.inventory import (
    RootScan,
    RunInventory,
    RunScan,
    stat_files,
    walk_directories,
)
from evalpipe.core.jsonl import DumpFormatError, decode_document

SOURCE_NAME = "lm-eval"
"""`runs.source` and `task_results.source` of this source's rows."""
ASSET_PREFIX = "lmeval"
"""Asset key prefix and partition set prefix (Dagster names allow no `-`)."""

TIMESTAMP = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?"
"""lm-eval's `datetime.now().isoformat()` with `:` replaced by `-`."""
RESULTS_FILE = re.compile(rf"^(?P<stem>.+)_(?P<ts>{TIMESTAMP})\.json$")
SAMPLES_FILE = re.compile(rf"^samples_(?P<task>.+)_(?P<ts>{TIMESTAMP})\.jsonl$")
NOT_METRICS = frozenset({"name", "alias", "sample_len", "sample_count"})
"""Keys of a `results` entry that are bookkeeping, not metrics."""
NO_FILTER = "none"


def is_results_file(name: str) -> bool:
    match = RESULTS_FILE.match(name)
    return match is not None and not match["stem"].startswith("samples_")


def run_file_names(results_name: str) -> Any:
    """A predicate on file names: the results file itself and its samples files."""
    ts = RESULTS_FILE.match(results_name)["ts"]

    def keep(name: str) -> bool:
        sample = SAMPLES_FILE.match(name)
        return name == results_name or (sample is not None and sample["ts"] == ts)

    return keep


def walk_results(root: Path) -> tuple[list[Path], list[str]]:
    """Every results file below `root`, at any depth, sorted, and what was skipped and why
    (`walk_directories`)."""
    found: list[Path] = []

    def visit(_directory: Path, entries: list[os.DirEntry]) -> bool:
        found.extend(Path(e.path) for e in entries if is_results_file(e.name) and not e.is_dir())
        return False

    skipped = walk_directories(root, "lm-eval root", visit)
    return sorted(found), skipped


def run_id_for(root: Path, results: Path) -> str:
    """The results file's path under the root without `.json`: readable and stable
    (`<model_name_sanitized>/results_<ts>`)."""
    return results.resolve().relative_to(root.resolve()).with_suffix("").as_posix()


def results_path(root: Path, run_id: str) -> Path:
    return root / f"{run_id}.json"


def scan_run(results: Path, root: Path) -> RunInventory:
    """Stat the run's files (its results file and samples files); reads no content."""
    files, problems = stat_files(results.parent, root, run_file_names(results.name))
    complete = any(f.name == results.name for f in files)
    return RunInventory(results.parent, files, complete, problems)


def scan_root(root: Path) -> RootScan:
    """Every run under `root` with its inventory (stats only), and what was skipped."""
    paths, skipped = walk_results(root)
    runs = [RunScan(ASSET_PREFIX, run_id_for(root, p), scan_run(p, root)) for p in paths]
    return RootScan(runs, skipped)


@dataclass(frozen=True)
class MetricValue:
    """One `metric,filter` entry of a task's results, with its standard error when reported."""

    metric: str
    filter: str | None
    value: float
    stderr: float | None

    @property
    def key(self) -> str:
        """The name lm-eval's W&B logger and evalpipe use: `acc` for the `none` filter,
        `exact_match,strict-match` otherwise."""
        return self.metric if self.filter in (None, NO_FILTER) else f"{self.metric},{self.filter}"


@dataclass
class ResultsEntry:
    """One task or group of a results file."""

    name: str
    entry: dict[str, Any]
    is_group: bool
    metrics: list[MetricValue]

    @property
    def primary(self) -> MetricValue | None:
        """The first metric row lm-eval's own table prints (its keys sorted), if any."""
        return self.metrics[0] if self.metrics else None


@dataclass
class LmevalRun:
    """Everything the tables need from one results file."""

    path: Path
    data: dict[str, Any]
    entries: list[ResultsEntry]
    samples: dict[str, Path] = field(default_factory=dict)
    """Task → its samples file (empty without `--log_samples`)."""

    @property
    def config(self) -> dict[str, Any]:
        value = self.data.get("config")
        return value if isinstance(value, dict) else {}

    @property
    def tasks(self) -> list[ResultsEntry]:
        return [e for e in self.entries if not e.is_group]

    @property
    def groups(self) -> list[ResultsEntry]:
        return [e for e in self.entries if e.is_group]

    def section(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        return value if isinstance(value, dict) else {}

    def leaves(self, group: str) -> list[str]:
        """The tasks a group aggregates, through nested groups, as lm-eval walks them."""
        subtasks = self.section("group_subtasks")
        found: list[str] = []
        for name in subtasks.get(group) or []:
            found += self.leaves(name) if subtasks.get(name) else [name]
        return found

    @property
    def evaluated_at(self) -> datetime | None:
        date = self.data.get("date")
        if isinstance(date, (int, float)) and not isinstance(date, bool) and math.isfinite(date):
            return datetime.fromtimestamp(date, tz=timezone.utc)
        return None

    def model_identity(self) -> tuple[str | None, str | None, str | None]:
        """(model, revision, model_hash): the pretrained name and revision from `model_args`
        (a mapping, or the `k=v,k2=v2` string older versions wrote), else `model_name`."""
        args = model_args(self.config.get("model_args"))
        model = args.get("pretrained") or args.get("model") or self.data.get("model_name")
        revision = args.get("revision") or self.config.get("model_revision")
        model_hash = self.config.get("model_sha") or self.data.get("model_sha")
        if not model:
            model = self.config.get("model")
        return _text(model), _text(revision), _text(model_hash)


def model_args(value: Any) -> dict[str, Any]:
    """`config.model_args` as a mapping, whichever form lm-eval wrote it in."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        return {}
    pairs = (part.split("=", 1) for part in value.split(",") if "=" in part)
    return {k.strip(): v.strip() for k, v in pairs}


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def metric_values(entry: dict[str, Any]) -> list[MetricValue]:
    """Every numeric metric of a results entry, in lm-eval's table order (keys sorted), each
    with its `<metric>_stderr,<filter>` (None where absent or `N/A`)."""
    values = []
    for key in sorted(entry):
        if key in NOT_METRICS:
            continue
        metric, comma, filter_name = key.partition(",")
        value = _number(entry[key])
        if metric.endswith("_stderr") or value is None:
            continue
        stderr_key = f"{metric}_stderr{comma}{filter_name}"
        values.append(
            MetricValue(
                metric, filter_name if comma else None, value, _number(entry.get(stderr_key))
            )
        )
    return values


def read_json_file(path: Path) -> Any:
    """A whole JSON file (NaN allowed, as Python's json writes it; duplicate keys refused)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DumpFormatError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    return decode_document(path, raw)


def read_results(path: Path, inventory: RunInventory | None = None) -> LmevalRun:
    """Parse one results file and find its samples files. Raises `DumpFormatError` naming the
    file (and line) for anything that is not lm-eval's results layout."""
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise DumpFormatError(path, 1, f"expected a JSON object, got {type(data).__name__}")
    results = data.get("results")
    if not isinstance(results, dict):
        raise DumpFormatError(path, None, "no 'results' object: not an lm-eval results file")
    subtasks = data.get("group_subtasks")
    subtasks = subtasks if isinstance(subtasks, dict) else {}
    groups = data.get("groups")
    group_names = {n for n, members in subtasks.items() if members} | set(
        groups if isinstance(groups, dict) else {}
    )
    entries = []
    for name, entry in results.items():
        if not isinstance(entry, dict):
            raise DumpFormatError(
                path, None, f"results[{name!r}] is {type(entry).__name__}, not an object"
            )
        values = metric_values(entry)
        is_group = name in group_names
        if is_group and not values:
            continue  # a group without aggregate metrics: lm-eval's table shows no row for it
        entries.append(ResultsEntry(name, entry, is_group, values))
    if inventory is None:
        inventory = scan_run(path, path.parent)
    samples = {}
    for f in inventory.files:
        match = SAMPLES_FILE.match(f.name)
        if match:
            samples[match["task"]] = inventory.run_dir / f.name
    unknown = sorted(set(samples) - {e.name for e in entries if not e.is_group})
    if unknown:
        raise DumpFormatError(
            samples[unknown[0]],
            None,
            f"samples of task {unknown[0]!r}, which {path.name} has no results for",
        )
    return LmevalRun(path, data, entries, samples)


@dataclass
class SampleDoc:
    """One document of a samples file, its lines for every filter merged."""

    doc_id: int
    target: str | None
    native_id: str | None
    resps: Any
    filtered: dict[str, Any]
    metrics: dict[str, Any]
    first_line: int


def iter_sample_docs(path: Path) -> Iterator[SampleDoc]:
    """The documents of a samples file in file order. lm-eval writes one line per document
    and filter; they are merged into one document whose metrics are named like `MetricValue.key`
    (`acc`, `exact_match,strict-match`). Raises `DumpFormatError` naming the line."""
    from evalpipe.core.jsonl import iter_jsonl

    docs: dict[int, SampleDoc] = {}
    for line, _raw, value in iter_jsonl(path):
        if not isinstance(value, dict):
            raise DumpFormatError(path, line, f"expected a JSON object, got {type(value).__name__}")
        doc_id = value.get("doc_id")
        if isinstance(doc_id, bool) or not isinstance(doc_id, int):
            raise DumpFormatError(path, line, f"doc_id must be an integer, got {doc_id!r}")
        filter_name = value.get("filter", NO_FILTER)
        names = value.get("metrics", [])
        if not isinstance(filter_name, str) or not isinstance(names, list):
            raise DumpFormatError(path, line, "'filter' must be a string and 'metrics' a list")
        doc = docs.get(doc_id)
        if doc is None:
            source_doc = value.get("doc")
            native = source_doc.get("id") if isinstance(source_doc, dict) else None
            target = value.get("target")
            doc = docs[doc_id] = SampleDoc(
                doc_id=doc_id,
                target=None if target is None else str(target),
                native_id=None if native is None else str(native),
                resps=value.get("resps"),
                filtered={},
                metrics={},
                first_line=line,
            )
        if filter_name in doc.filtered:
            raise DumpFormatError(
                path,
                line,
                f"doc_id {doc_id} appears twice for filter {filter_name!r} "
                f"(first on line {doc.first_line})",
            )
        doc.filtered[filter_name] = value.get("filtered_resps")
        for name in names:
            key = MetricValue(str(name), filter_name, 0.0, None).key
            doc.metrics[key] = value.get(str(name))
    yield from docs.values()
