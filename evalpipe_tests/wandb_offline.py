"""Read back what the `wandb` client recorded in offline mode, to test what would be uploaded.

An offline run is `offline-run-<time>-<id>/run-<id>.wandb` (with `-1`, `-2`, ... after the id when
a resumed run starts within the same second as its earlier directory): W&B's transaction log (a LevelDB-style
log of 32 KiB blocks, each record a 7-byte header of CRC, length and type, then data) of
`wandb_internal_pb2.Record` messages, the very records `wandb sync` uploads. The client has no
reader for it any more (and `wandb.Api()` cannot see offline runs), so this is one: it gives
the run's id, name, group, tags, config, summary, logged history rows and artifacts.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

FILE_HEADER = 7  # ":W&B", a 2-byte magic, a version byte
BLOCK = 32768
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    found, pending, offset = [], b"", FILE_HEADER
    while offset + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < RECORD_HEADER:
            offset += left_in_block  # padding at the end of a block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + RECORD_HEADER])
        chunk = data[offset + RECORD_HEADER : offset + RECORD_HEADER + length]
        offset += RECORD_HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            found.append(record)
            pending = b""
    return found


@dataclass
class OfflineRun:
    """One offline run's records, folded the way the server would fold them."""

    directory: Path
    id: str = ""
    name: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[pb.ArtifactRecord] = field(default_factory=list)

    def table(self, key: str) -> dict[str, Any]:
        """A logged table's JSON (`columns`, `data`), from the file its summary names."""
        path = self.summary[f"{key}/path"]
        return json.loads((self.directory / "files" / path).read_text())


def _value(text: str) -> Any:
    return json.loads(text)


def read_offline_run(directory: Path) -> OfflineRun:
    [log] = directory.glob("run-*.wandb")
    run = OfflineRun(directory)
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.name, run.project = r.run_id, r.display_name, r.project
            run.group, run.job_type, run.tags = r.run_group, r.job_type, list(r.tags)
            for item in r.config.update:
                run.config[item.key] = _value(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[item.key] = _value(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                run.summary[key] = _value(item.value_json)
        elif kind == "history":
            run.history.append(
                {i.key or "/".join(i.nested_key): _value(i.value_json) for i in record.history.item}
            )
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
    return run


def run_directories(wandb_dir: Path, wandb_id: str) -> list[Path]:
    """The offline directories of one W&B run, in the order the client wrote them."""
    name = re.compile(rf"offline-run-(\d{{8}}_\d{{6}})-{re.escape(wandb_id)}(?:-(\d+))?")
    found = []
    for path in (wandb_dir / "wandb").glob("offline-run-*"):
        if match := name.fullmatch(path.name):
            found.append(((match[1], int(match[2] or 0)), path))
    return [path for _, path in sorted(found)]


def offline_runs(wandb_dir: Path) -> dict[str, OfflineRun]:
    """Every offline run under `WANDB_DIR`, by W&B run id (a resumed run's later directories
    fold into its earlier ones, in time order, as `wandb sync` would upload them)."""
    runs: dict[str, OfflineRun] = {}
    for directory in sorted((wandb_dir / "wandb").glob("offline-run-*")):
        run = read_offline_run(directory)
        known = runs.get(run.id)
        if known is None:
            runs[run.id] = run
            continue
        known.config.update(run.config)
        known.summary.update(run.summary)
        known.history += run.history
        known.artifacts += run.artifacts
        known.tags = run.tags or known.tags
        known.directory = run.directory
    return runs
