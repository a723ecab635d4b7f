"""Snapshots of evalpipe's data: the source dumps, the lake and the reconstructed artifacts.

The warehouse is not included: it is rebuilt from the lake on restore. Layout under the target,
after DVC (content-addressed objects, so unchanged files are never uploaded twice) and Iceberg
(immutable metadata published by swapping one small pointer):

    objects/<sha256[:2]>/<sha256>    file contents, written once and shared by all snapshots
    snapshots/<id>/manifest.json     every file's path, size and sha256, totals and stats
    latest.json                      the newest committed snapshot, with its manifest's sha256
    versions.json                    the log of committed snapshots, oldest first

A snapshot commits in that order: missing objects, a listing that proves every object the manifest
names is stored with the right size, the manifest, latest.json, then versions.json. Each step adds
new keys or atomically replaces one, so an interruption leaves the previous snapshot and latest.json
as they were, and a retry uploads only what never arrived. One writer per target is assumed:
concurrent snapshots could drop each other's versions.json entry.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from threading import Lock
from typing import Any, Literal

from evalpipe.core.config import Settings
from evalpipe.snapshots.store import (
    MAX_CONCURRENCY,
    Download,
    MiB,
    SnapshotTarget,
    Store,
    Upload,
    iter_file,
    open_store,
)
from evalpipe.storage.lake import Lake
from evalpipe.storage.warehouse import read_runs_with_status

logger = logging.getLogger(__name__)

FORMAT = "evalpipe-snapshot/1"
LATEST_KEY = "latest.json"
VERSIONS_KEY = "versions.json"
OBJECTS_PREFIX = "objects/"
_ID_RE = re.compile(r"^\d{12}(-\d+)?$")
_SOURCE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

Stage = Literal[
    "hash", "upload", "stored", "manifest", "latest", "versions", "done", "verify", "restore"
]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report; `str(event)` is a ready-to-print line, the fields feed a progress bar.

    Byte counts are totals for the current stage. Events for transfers may come from worker
    threads, but never concurrently.
    """

    stage: Stage
    message: str
    path: str | None = None
    done_bytes: int = 0
    total_bytes: int = 0
    done_files: int = 0
    total_files: int = 0

    def __str__(self) -> str:
        return self.message


Progress = Callable[[ProgressEvent], None]


class SnapshotError(RuntimeError):
    """A snapshot operation failed; the message says what state the target was left in."""


@dataclass(frozen=True)
class SnapshotResult:
    """What `take_snapshot` did. `to_dict()` leaves out the (possibly huge) manifest."""

    snapshot_id: str
    uri: str
    target: str
    files: int
    bytes_total: int
    files_uploaded: int
    bytes_uploaded: int
    bytes_reused: int
    duration_s: float
    dry_run: bool
    missing_sources: tuple[str, ...]
    manifest: Mapping[str, Any] = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["manifest"]
        data["missing_sources"] = list(self.missing_sources)
        return data


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of re-hashing a stored snapshot; `missing`/`corrupted` hold manifest paths."""

    snapshot_id: str
    ok: bool
    manifest_ok: bool
    checked: int
    bytes_checked: int
    missing: tuple[str, ...]
    corrupted: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "missing": list(self.missing), "corrupted": list(self.corrupted)}


@dataclass(frozen=True)
class RestoreResult:
    snapshot_id: str
    dest: str
    files: int
    bytes: int
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SnapshotDiff:
    """Paths added, removed or changed going from snapshot `a` to snapshot `b`."""

    a: str
    b: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged_count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
        }


@dataclass(frozen=True)
class _LocalFile:
    path: str  # manifest path: "<source>/<relative posix path>"
    local: Path
    size: int
    sha256: str
    mtime_ns: int


def default_sources(settings: Settings) -> dict[str, Path]:
    """What a snapshot contains: everything needed to rebuild the warehouse."""
    return {
        "dumps": settings.dumps,
        "lake": settings.lake,
        "reconstructed": settings.reconstructed,
    }


def snapshot_stats(lake: Lake) -> dict[str, Any]:
    """Runs per model, tasks and instances of the healthy (`ok`) runs, for the manifest."""
    runs = read_runs_with_status(lake)
    ok = runs.loc[runs["status"] == "ok"]
    results = lake.read_all("task_results", columns=["run_id", "task_name"]).to_pandas()
    results = results[results["run_id"].isin(ok["run_id"])]
    predictions = lake.read_all("predictions", columns=["run_id"]).to_pandas()
    return {
        "runs": len(ok),
        "runs_quarantined": int((runs["status"] == "quarantined").sum()),
        "runs_per_model": {str(k): int(v) for k, v in ok.groupby("model").size().items()},
        "tasks": int(results["task_name"].nunique()),
        "task_results": len(results),
        "instances": int(predictions["run_id"].isin(ok["run_id"]).sum()),
    }


def object_key(sha256: str) -> str:
    return f"{OBJECTS_PREFIX}{sha256[:2]}/{sha256}"


def manifest_key(snapshot_id: str) -> str:
    return f"snapshots/{snapshot_id}/manifest.json"


def take_snapshot(
    sources: Mapping[str, Path],
    target: SnapshotTarget | str,
    *,
    client: Any = None,
    note: str = "",
    stats: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> SnapshotResult:
    """Store the files under `sources` ({top-level name: local dir}) as a new snapshot.

    Missing source dirs are skipped and listed in the result. `client` is a boto3 S3 client for
    s3:// targets (default: one built from the AWS_* variables). A dry run hashes and plans but
    writes nothing. Raises SnapshotError, whose message says what the target was left in.
    """
    started = time.monotonic()
    emit = progress or _ignore
    target = _as_target(target)
    stats_copy = _json_copy(stats or {}, "stats")
    created = _utc(now)
    files, summary, missing = _scan(sources, emit)
    if not files:
        raise SnapshotError(
            f"nothing to snapshot: no files under {', '.join(sources) or 'any source'}"
        )
    store = open_store(target, client)
    stage, snapshot_id, previous = "reading the target", "", None
    try:
        log = _read_versions(store)
        latest = _read_json(store, LATEST_KEY)
        previous = latest["version"] if latest else None
        snapshot_id = _allocate_id(store, created, log, latest)
        uploads, sources_of = _plan_uploads(files, store.list_sizes(OBJECTS_PREFIX))
        manifest = _manifest(
            target, snapshot_id, created, note, files, summary, missing, stats_copy
        )
        manifest["transfer"] = {
            "files_uploaded": len(uploads),
            "bytes_uploaded": sum(up.size for up in uploads),
            "bytes_reused": manifest["totals"]["bytes"] - sum(up.size for up in uploads),
        }
        if not dry_run:
            stage = "uploading objects"
            names = {up.key: sources_of[up.sha256].path for up in uploads}
            if uploads:
                tracker = _Tracker(emit, "upload", "uploading", names, uploads)
                store.put_files(uploads, tracker.on_bytes, tracker.on_done)
            stage = "checking the stored objects"
            _check_stored(store, files, [sources_of[up.sha256] for up in uploads])
            manifest_bytes = _dumps(manifest)
            entry = _version_entry(manifest, hashlib.sha256(manifest_bytes).hexdigest())
            stage = "writing the manifest"
            emit(ProgressEvent("manifest", f"writing {manifest['uri']}"))
            store.put_bytes(manifest_key(snapshot_id), manifest_bytes)
            stage = "replacing latest.json"
            emit(ProgressEvent("latest", f"pointing latest.json at {snapshot_id}"))
            store.put_bytes(LATEST_KEY, _dumps(entry))
            stage = "appending to versions.json"
            emit(ProgressEvent("versions", f"appending {snapshot_id} to versions.json"))
            logged = {e["version"] for e in log}
            if latest and latest["version"] not in logged:
                log.append(latest)  # an earlier run stopped between latest.json and this step
            log.append(entry)
            store.put_bytes(VERSIONS_KEY, _dumps({"format": FORMAT, "versions": log}))
    except Exception as exc:
        raise SnapshotError(_failure(target, snapshot_id, stage, previous, exc)) from exc
    transfer = manifest["transfer"]
    result = SnapshotResult(
        snapshot_id=snapshot_id,
        uri=manifest["uri"],
        target=target.url,
        files=len(files),
        bytes_total=manifest["totals"]["bytes"],
        files_uploaded=transfer["files_uploaded"],
        bytes_uploaded=transfer["bytes_uploaded"],
        bytes_reused=transfer["bytes_reused"],
        duration_s=round(time.monotonic() - started, 3),
        dry_run=dry_run,
        missing_sources=tuple(missing),
        manifest=manifest,
    )
    verb = "would upload" if dry_run else "uploaded"
    done = (
        f"snapshot {snapshot_id}{' (dry run)' if dry_run else ''}: {result.files} files, "
        f"{verb} {result.files_uploaded} ({_fmt(result.bytes_uploaded)}), "
        f"reused {_fmt(result.bytes_reused)}, {result.duration_s:.1f}s"
    )
    emit(ProgressEvent("done", done, total_bytes=result.bytes_total, total_files=result.files))
    logger.info("%s -> %s", done, result.uri)
    return result


def list_snapshots(target: SnapshotTarget | str, *, client: Any = None) -> list[dict[str, Any]]:
    """The version log, oldest first, each entry with `latest: bool`."""
    store = open_store(_as_target(target), client)
    log = _read_versions(store)
    latest = _read_json(store, LATEST_KEY)
    if latest and latest["version"] not in {e["version"] for e in log}:
        log.append(latest)
    current = latest["version"] if latest else None
    return [{**entry, "latest": entry["version"] == current} for entry in log]


def verify_snapshot(
    target: SnapshotTarget | str,
    snapshot_id: str | None = None,
    *,
    client: Any = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Re-hash every stored object of a snapshot (default: latest), streaming, in parallel."""
    emit = progress or _ignore
    store = open_store(_as_target(target), client)
    snapshot_id, expected_sha = _resolve(store, snapshot_id)
    raw = _fetch_manifest(store, snapshot_id)
    manifest_ok = expected_sha is None or hashlib.sha256(raw).hexdigest() == expected_sha
    try:
        entries = json.loads(raw)["files"]
    except (ValueError, KeyError, TypeError):
        return VerifyReport(snapshot_id, False, False, 0, 0, (), (manifest_key(snapshot_id),))
    paths_of: dict[tuple[str, int], list[str]] = {}
    for entry in entries:
        paths_of.setdefault((entry["sha256"], entry["size"]), []).append(entry["path"])
    total_bytes = sum(size for _, size in paths_of)

    def check(obj: tuple[str, int]) -> tuple[tuple[str, int], str, int]:
        sha, size = obj
        digest, seen = hashlib.sha256(), 0
        try:
            for chunk in store.read_chunks(object_key(sha)):
                digest.update(chunk)
                seen += len(chunk)
        except FileNotFoundError:
            return obj, "missing", 0
        return obj, "ok" if (digest.hexdigest(), seen) == (sha, size) else "corrupted", seen

    missing: list[str] = []
    corrupted: list[str] = []
    checked_bytes = 0
    with ThreadPoolExecutor(MAX_CONCURRENCY) as pool:
        for n, (obj, status, seen) in enumerate(pool.map(check, paths_of), 1):
            checked_bytes += seen
            if status == "missing":
                missing.extend(paths_of[obj])
            elif status == "corrupted":
                corrupted.extend(paths_of[obj])
            emit(
                ProgressEvent(
                    "verify",
                    f"verified {n}/{len(paths_of)} objects ({status}: {paths_of[obj][0]})",
                    path=paths_of[obj][0],
                    done_bytes=checked_bytes,
                    total_bytes=total_bytes,
                    done_files=n,
                    total_files=len(paths_of),
                )
            )
    return VerifyReport(
        snapshot_id=snapshot_id,
        ok=manifest_ok and not missing and not corrupted,
        manifest_ok=manifest_ok,
        checked=len(entries),
        bytes_checked=checked_bytes,
        missing=tuple(sorted(missing)),
        corrupted=tuple(sorted(corrupted)),
    )


def restore_snapshot(
    target: SnapshotTarget | str,
    snapshot_id: str | None,
    dest: Path,
    *,
    client: Any = None,
    progress: Progress | None = None,
) -> RestoreResult:
    """Recreate a snapshot's tree under `dest` (absent or empty), byte for byte.

    Each file is downloaded to a temp name, checked against its sha256, then renamed into place.
    """
    started = time.monotonic()
    emit = progress or _ignore
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SnapshotError(f"restore destination {dest} must be absent or an empty directory")
    store = open_store(_as_target(target), client)
    snapshot_id, manifest = _load_manifest(store, snapshot_id)
    entries = manifest["files"]
    finals = [dest.joinpath(*_safe_parts(entry["path"])) for entry in entries]
    token = uuid.uuid4().hex[:12]
    downloads = [
        Download(object_key(e["sha256"]), final.with_name(f".{final.name}.{token}.part"), e["size"])
        for e, final in zip(entries, finals, strict=True)
    ]
    names = {down.key: entry["path"] for down, entry in zip(downloads, entries, strict=True)}
    tracker = _Tracker(emit, "restore", "downloading", names, downloads)
    try:
        for final in finals:
            final.parent.mkdir(parents=True, exist_ok=True)
        store.get_files(downloads, tracker.on_bytes)
        for n, (entry, down, final) in enumerate(zip(entries, downloads, finals, strict=True), 1):
            sha, size = _hash(down.dest)
            if (sha, size) != (entry["sha256"], entry["size"]):
                raise SnapshotError(
                    f"stored object for {entry['path']} hashes to {sha} ({size} bytes), expected "
                    f"{entry['sha256']} ({entry['size']} bytes); run `evalpipe snapshots verify "
                    f"{snapshot_id}`"
                )
            os.replace(down.dest, final)
            emit(
                ProgressEvent(
                    "restore",
                    f"restored {entry['path']}",
                    path=entry["path"],
                    done_files=n,
                    total_files=len(entries),
                )
            )
    except Exception as exc:
        raise SnapshotError(
            f"restoring snapshot {snapshot_id} into {dest} failed: {exc}. {dest} is incomplete; "
            "remove it before retrying."
        ) from exc
    finally:
        for down in downloads:
            down.dest.unlink(missing_ok=True)
    return RestoreResult(
        snapshot_id=snapshot_id,
        dest=str(dest),
        files=len(entries),
        bytes=sum(e["size"] for e in entries),
        duration_s=round(time.monotonic() - started, 3),
    )


def diff_snapshots(
    target: SnapshotTarget | str, a: str, b: str, *, client: Any = None
) -> SnapshotDiff:
    """Compare two snapshots by path and content hash, from their manifests only."""
    store = open_store(_as_target(target), client)
    old = {e["path"]: e["sha256"] for e in _load_manifest(store, a)[1]["files"]}
    new = {e["path"]: e["sha256"] for e in _load_manifest(store, b)[1]["files"]}
    common = old.keys() & new.keys()
    changed = sorted(p for p in common if old[p] != new[p])
    return SnapshotDiff(
        a=a,
        b=b,
        added=tuple(sorted(new.keys() - old.keys())),
        removed=tuple(sorted(old.keys() - new.keys())),
        changed=tuple(changed),
        unchanged_count=len(common) - len(changed),
    )


# --- taking a snapshot ---------------------------------------------------------------------


def _scan(
    sources: Mapping[str, Path], emit: Progress
) -> tuple[list[_LocalFile], dict[str, dict[str, int]], list[str]]:
    """Hash every file under the sources; returns files, per-source totals, missing sources."""
    found: list[tuple[str, Path]] = []
    summary: dict[str, dict[str, int]] = {}
    missing: list[str] = []
    for name, root in sources.items():
        if not _SOURCE_RE.match(name):
            raise ValueError(f"snapshot source name {name!r} must be a plain directory name")
        root = Path(root)
        if not root.exists():
            missing.append(name)
            continue
        if not root.is_dir():
            raise ValueError(f"snapshot source {name!r} is not a directory: {root}")
        summary[name] = {"files": 0, "bytes": 0}
        for dirpath, dirnames, filenames in os.walk(root):
            # hidden entries are writes in progress (`.x.partial`) and commit journals
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(f for f in filenames if not f.startswith(".")):
                local = Path(dirpath, filename)
                if local.is_file():
                    found.append((f"{name}/{local.relative_to(root).as_posix()}", local))
    total = sum(local.stat().st_size for _, local in found)
    files: list[_LocalFile] = []
    done = 0
    for path, local in found:
        files.append(_hash_local(path, local))
        done += files[-1].size
        source = summary[path.split("/", 1)[0]]
        source["files"] += 1
        source["bytes"] += files[-1].size
        emit(
            ProgressEvent(
                "hash",
                f"hashed {path}",
                path=path,
                done_bytes=done,
                total_bytes=total,
                done_files=len(files),
                total_files=len(found),
            )
        )
    return files, summary, missing


def _hash_local(path: str, local: Path) -> _LocalFile:
    """Hash one file, refusing one that changes underneath us (a half-written lake file)."""
    before = local.stat()
    sha, size = _hash(local)
    after = local.stat()
    if (before.st_size, before.st_mtime_ns) != (
        after.st_size,
        after.st_mtime_ns,
    ) or size != after.st_size:
        raise SnapshotError(f"{local} changed while it was hashed; snapshot when writers are idle")
    return _LocalFile(path, local, size, sha, after.st_mtime_ns)


def _hash(local: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in iter_file(local):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _allocate_id(
    store: Store, created: datetime, log: list[dict[str, Any]], latest: dict[str, Any] | None
) -> str:
    """`YYYYMMDDHHMM`, or `-2`, `-3`... when that minute is taken (also by an orphan manifest
    left by a run that failed before updating latest.json)."""
    base = created.strftime("%Y%m%d%H%M")
    taken = {e["version"] for e in log} | ({latest["version"]} if latest else set())
    for n in itertools.count(1):
        candidate = base if n == 1 else f"{base}-{n}"
        if candidate not in taken and not store.exists(manifest_key(candidate)):
            return candidate
    raise AssertionError("unreachable")


def _plan_uploads(
    files: Sequence[_LocalFile], stored: Mapping[str, int]
) -> tuple[list[Upload], dict[str, _LocalFile]]:
    """One upload per distinct content that is not already stored with the right size."""
    first: dict[str, _LocalFile] = {}
    for f in files:
        first.setdefault(f.sha256, f)
    uploads = [
        Upload(object_key(sha), f.local, f.size, sha)
        for sha, f in first.items()
        if stored.get(object_key(sha)) != f.size
    ]
    return uploads, first


def _check_stored(
    store: Store, files: Sequence[_LocalFile], uploaded: Sequence[_LocalFile]
) -> None:
    """The manifest may only name objects that are stored now, from sources that did not move."""
    stored = store.list_sizes(OBJECTS_PREFIX)
    bad = [f.path for f in files if stored.get(object_key(f.sha256)) != f.size]
    if bad:
        raise OSError(
            f"{len(bad)} object(s) missing or of the wrong size after upload, e.g. {bad[0]}"
        )
    for f in uploaded:
        now = f.local.stat()
        if (now.st_size, now.st_mtime_ns) != (f.size, f.mtime_ns):
            raise OSError(
                f"{f.local} changed while it was uploaded; snapshot when writers are idle"
            )


class _Tracker:
    """Turns per-key byte/done callbacks from transfer threads into throttled ProgressEvents."""

    def __init__(
        self,
        emit: Progress,
        stage: Stage,
        verb: str,
        names: Mapping[str, str],
        items: Sequence[Upload] | Sequence[Download],
    ) -> None:
        self._emit, self._stage, self._verb, self._names = emit, stage, verb, names
        self._total_bytes = sum(item.size for item in items)
        self._total_files = len(items)
        self._bytes = self._files = self._last_percent = 0
        self._lock = Lock()

    def _event(self, stage: Stage, message: str, key: str) -> ProgressEvent:
        return ProgressEvent(
            stage,
            message,
            path=self._names.get(key, key),
            done_bytes=self._bytes,
            total_bytes=self._total_bytes,
            done_files=self._files,
            total_files=self._total_files,
        )

    def on_bytes(self, key: str, n: int) -> None:
        with self._lock:
            self._bytes += n
            percent = self._bytes * 100 // max(self._total_bytes, 1)
            if percent > self._last_percent:
                self._last_percent = percent
                line = f"{self._verb} {percent}% ({_fmt(self._bytes)} of {_fmt(self._total_bytes)})"
                self._emit(self._event(self._stage, line, key))

    def on_done(self, key: str) -> None:
        with self._lock:
            self._files += 1
            line = f"stored {self._names.get(key, key)} ({self._files}/{self._total_files} files)"
            self._emit(self._event("stored", line, key))


def _manifest(
    target: SnapshotTarget,
    snapshot_id: str,
    created: datetime,
    note: str,
    files: Sequence[_LocalFile],
    summary: Mapping[str, Mapping[str, int]],
    missing: Sequence[str],
    stats: Mapping[str, Any],
) -> dict[str, Any]:
    total = sum(f.size for f in files)
    timestamp = created.isoformat(timespec="seconds").replace("+00:00", "Z")
    return {
        "format": FORMAT,
        "id": snapshot_id,
        "version": snapshot_id,
        "created_at": timestamp,
        "timestamp": timestamp,
        "date": created.date().isoformat(),
        "note": note,
        "uri": target.uri(manifest_key(snapshot_id)),
        "sources": dict(summary),
        "missing_sources": list(missing),
        "totals": {"files": len(files), "bytes": total, "objects": len({f.sha256 for f in files})},
        "size_mb": round(total / MiB, 3),
        "stats": dict(stats),
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256}
            for f in sorted(files, key=lambda f: f.path)
        ],
    }


def _version_entry(manifest: Mapping[str, Any], manifest_sha256: str) -> dict[str, Any]:
    """One versions.json line; latest.json holds the same record for the newest snapshot."""
    return {
        "version": manifest["id"],
        "date": manifest["date"],
        "timestamp": manifest["timestamp"],
        "uri": manifest["uri"],
        "size_mb": manifest["size_mb"],
        "files": manifest["totals"]["files"],
        "bytes": manifest["totals"]["bytes"],
        "note": manifest["note"],
        "manifest": manifest_key(manifest["id"]),
        "manifest_sha256": manifest_sha256,
        **manifest["transfer"],
    }


def _failure(
    target: SnapshotTarget, snapshot_id: str, stage: str, previous: str | None, exc: Exception
) -> str:
    head = f"snapshot {snapshot_id or '(no id yet)'} to {target.url} failed while {stage}: "
    head += f"{type(exc).__name__}: {exc}."
    if stage == "reading the target":
        return f"{head} Nothing was written."
    if stage == "appending to versions.json":
        return f"{head} latest.json already names {snapshot_id}; the next snapshot logs it."
    kept = f"snapshot {previous}" if previous else "no snapshot, as before"
    return (
        f"{head} latest.json is unchanged ({kept}); objects stored so far are kept, so a retry "
        "uploads only what is missing."
    )


# --- reading snapshots ---------------------------------------------------------------------


def _resolve(store: Store, snapshot_id: str | None) -> tuple[str, str | None]:
    """The snapshot id (None = latest) and its manifest's recorded sha256, if logged."""
    latest = _read_json(store, LATEST_KEY)
    if snapshot_id is None:
        if latest is None:
            raise SnapshotError(f"no snapshot at {store.target.url} yet")
        return latest["version"], latest["manifest_sha256"]
    if not _ID_RE.match(snapshot_id):
        raise SnapshotError(f"{snapshot_id!r} is not a snapshot id (YYYYMMDDHHMM[-N])")
    for entry in [*_read_versions(store), *([latest] if latest else [])]:
        if entry["version"] == snapshot_id:
            return snapshot_id, entry["manifest_sha256"]
    return snapshot_id, None


def _fetch_manifest(store: Store, snapshot_id: str) -> bytes:
    try:
        return store.get_bytes(manifest_key(snapshot_id))
    except FileNotFoundError as exc:
        raise SnapshotError(f"no snapshot {snapshot_id} at {store.target.url}") from exc


def _load_manifest(store: Store, snapshot_id: str | None) -> tuple[str, dict[str, Any]]:
    """A manifest whose bytes match the hash recorded when it was committed."""
    snapshot_id, expected = _resolve(store, snapshot_id)
    raw = _fetch_manifest(store, snapshot_id)
    if expected is not None and hashlib.sha256(raw).hexdigest() != expected:
        raise SnapshotError(f"manifest of snapshot {snapshot_id} is corrupted (sha256 mismatch)")
    return snapshot_id, json.loads(raw)


def _safe_parts(path: str) -> tuple[str, ...]:
    """Manifest paths come from storage: never let one escape the restore directory."""
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise SnapshotError(f"unsafe path {path!r} in manifest")
    return parts


def _read_versions(store: Store) -> list[dict[str, Any]]:
    data = _read_json(store, VERSIONS_KEY)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
        raise ValueError(f"{store.target.uri(VERSIONS_KEY)} is not an evalpipe version log")
    return data["versions"]


def _read_json(store: Store, key: str) -> Any:
    try:
        return json.loads(store.get_bytes(key))
    except FileNotFoundError:
        return None


# --- small helpers -------------------------------------------------------------------------


def _as_target(target: SnapshotTarget | str) -> SnapshotTarget:
    return SnapshotTarget.parse(target) if isinstance(target, str) else target


def _utc(now: datetime | None) -> datetime:
    """Snapshot ids are UTC minutes; a naive `now` is taken to be UTC already."""
    if now is None:
        return datetime.now(timezone.utc)
    return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)


def _json_copy(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Fail before anything is uploaded if `value` cannot go into the manifest."""
    try:
        return json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"snapshot {what} must be JSON-serializable: {exc}") from exc


def _dumps(value: Any) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False).encode() + b"\n"


def _fmt(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} B"


def _ignore(event: ProgressEvent) -> None:
    """Default progress sink."""
