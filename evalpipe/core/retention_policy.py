"""The retention and archive policy: one TOML file, validated, with defaults that lose nothing.

`evalpipe.core.config.load_retention_policy` finds the file (`EVALPIPE_RETENTION_FILE`); this
module parses and checks it. Every key is optional: a missing one takes the default below, and
the defaults archive without deleting anything local, keep a year of snapshots and never delete
an object younger than three days. An unknown key or a bad value is an error naming the file,
the line and the problem, never silently ignored (a typo in `delete_local` must not delete).

    [archive]
    after_days = 30          # a run directory unchanged this long is archived
    target = ""              # file:///abs/path or s3://bucket/prefix; "" = $EVALPIPE_HOME/archive
    delete_local = false     # remove the local copy once its archive is verified
    sources = ["olmes"]      # which sources' run directories are archived

    [snapshots]
    keep_last = 7            # a snapshot is kept if ANY rule keeps it; `latest` always is
    keep_daily = 14
    keep_weekly = 8
    keep_monthly = 12
    pinned = []              # snapshot ids kept forever (also `evalpipe snapshots pin ID`)

    [objects]
    grace_hours = 72         # an unreferenced stored object younger than this is kept (>= 24)

    [dagster]
    runs_older_than_days = 90
    keep_last_per_job = 20

    [lake]
    partial_hours = 1        # hidden in-progress lake files older than this are swept
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

MIN_GRACE_HOURS = 24
"""An upload in flight must never look orphaned: no grace period shorter than a day."""


@dataclass(frozen=True)
class ArchivePolicy:
    after_days: int = 30
    target: str = ""
    delete_local: bool = False
    sources: tuple[str, ...] = ("olmes",)


@dataclass(frozen=True)
class SnapshotPolicy:
    keep_last: int = 7
    keep_daily: int = 14
    keep_weekly: int = 8
    keep_monthly: int = 12
    pinned: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObjectPolicy:
    grace_hours: float = 72


@dataclass(frozen=True)
class DagsterPolicy:
    runs_older_than_days: int = 90
    keep_last_per_job: int = 20


@dataclass(frozen=True)
class LakePolicy:
    partial_hours: float = 1


@dataclass(frozen=True)
class RetentionPolicy:
    """The whole policy; `archive_target` is resolved against EVALPIPE_HOME by config."""

    archive: ArchivePolicy = field(default_factory=ArchivePolicy)
    snapshots: SnapshotPolicy = field(default_factory=SnapshotPolicy)
    objects: ObjectPolicy = field(default_factory=ObjectPolicy)
    dagster: DagsterPolicy = field(default_factory=DagsterPolicy)
    lake: LakePolicy = field(default_factory=LakePolicy)
    origin: str = "embedded defaults"


SECTIONS: dict[str, type] = {
    "archive": ArchivePolicy,
    "snapshots": SnapshotPolicy,
    "objects": ObjectPolicy,
    "dagster": DagsterPolicy,
    "lake": LakePolicy,
}


class PolicyError(ValueError):
    """The policy file is unreadable or invalid; the message names file, line and problem."""


def parse_policy(text: str, origin: str) -> RetentionPolicy:
    """Parse and validate policy TOML; `origin` (the file name) goes into every error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{origin}: not valid TOML: {exc}") from exc
    sections: dict[str, Any] = {}
    for name, values in data.items():
        if name not in SECTIONS:
            raise PolicyError(
                f"{origin}:{_line(text, name, None)}: unknown section [{name}]; "
                f"known: {', '.join(f'[{s}]' for s in SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise PolicyError(f"{origin}:{_line(text, None, name)}: {name} must be a [section]")
        sections[name] = _section(text, origin, name, values)
    return RetentionPolicy(**sections, origin=origin)


def load_policy_file(path: Path) -> RetentionPolicy:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(
            f"{path}: cannot read the retention policy ({exc.strerror or exc}); "
            "fix EVALPIPE_RETENTION_FILE or unset it to use the defaults"
        ) from exc
    return parse_policy(text, str(path))


def _section(text: str, origin: str, name: str, values: dict[str, Any]) -> Any:
    cls = SECTIONS[name]
    known = {f.name: f for f in fields(cls)}
    checked: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{origin}:{_line(text, name, key)}"
        if key not in known:
            raise PolicyError(
                f"{where}: unknown key {key!r} in [{name}]; known: {', '.join(known)}"
            )
        checked[key] = _value(where, name, key, value, getattr(cls(), key))
    return cls(**checked)


def _value(where: str, section: str, key: str, value: Any, default: Any) -> Any:
    """`value` checked against the type and range its default implies."""
    label = f"[{section}] {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise PolicyError(f"{where}: {label} must be true or false, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise PolicyError(f"{where}: {label} must be a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise PolicyError(f"{where}: {label} must be a string, got {value!r}")
        if key == "target" and value and not re.match(r"^(file:///|s3://[^/@]+)", value):
            raise PolicyError(
                f"{where}: {label} must be file:///absolute/path or s3://bucket[/prefix], "
                f"got {value!r}"
            )
        return value
    number_types = (int,) if isinstance(default, int) else (int, float)
    if isinstance(value, bool) or not isinstance(value, number_types):
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise PolicyError(f"{where}: {label} must be {kind}, got {value!r}")
    if value < 0:
        raise PolicyError(f"{where}: {label} must not be negative, got {value}")
    if key == "grace_hours" and value < MIN_GRACE_HOURS:
        raise PolicyError(
            f"{where}: {label} must be at least {MIN_GRACE_HOURS} (an upload still in progress "
            f"must not look orphaned), got {value}"
        )
    return value


def _line(text: str, section: str | None, key: str | None) -> int:
    """The 1-based line of `key` inside `[section]` (or of the section header), for errors."""
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1)
            if key is None and current == section:
                return number
            continue
        if key is not None and current == section and re.match(rf"^{re.escape(key)}\s*=", line):
            return number
    return 1
