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

What is stored: the regular files under each source, and nothing from outside it. Hidden entries
(writes in progress, commit journals) are left out. A symlink whose target resolves to a regular
file inside the same source is stored as that file (ingest reads it as one, so a restored tree
must hold it); any other symlink (leaving the source, even for another source; to a directory;
dangling) and any special file (FIFO, socket, device) is skipped without being opened, logged as a
warning and listed under `skipped` in the result and the manifest. A file or directory that
cannot be read fails the snapshot, naming it, before anything is written: a snapshot that
silently lacks data would be worse than none.

An object already stored is reused only when the store proves its content (`Store.holds`); a
snapshot never names an object that was altered in place. Manifests come from storage, so every
entry's path and sha256 are checked before use: `verify` reports unsafe or malformed entries and
`restore` refuses a manifest with any.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from threading import Lock
from typing import Any, Literal

from evalpipe.core.config import Settings
from evalpipe.snapshots.leases import lease
from evalpipe.snapshots.store import (
    MAX_CONCURRENCY,
    Download,
    MiB,
    SnapshotTarget,
    Store,
    Upload,
    digest,
    iter_file,
    open_store,
    redact_credentials,
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
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

Stage = Literal[
    "skip",
    "hash",
    "reuse",
    "upload",
    "stored",
    "manifest",
    "latest",
    "versions",
    "done",
    "verify",
    "restore",
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
    skipped: tuple[str, ...]  # "<manifest path>: <why>", for entries left out unread
    manifest: Mapping[str, Any] = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["manifest"]
        data["missing_sources"] = list(self.missing_sources)
        data["skipped"] = list(self.skipped)
        return data


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of re-hashing a stored snapshot; `missing`/`corrupted` hold manifest paths,
    `invalid` the manifest entries never used (unsafe path, malformed sha256 or size), each
    with its problem."""

    snapshot_id: str
    ok: bool
    manifest_ok: bool
    checked: int
    bytes_checked: int
    missing: tuple[str, ...]
    corrupted: tuple[str, ...]
    invalid: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "missing": list(self.missing),
            "corrupted": list(self.corrupted),
            "invalid": list(self.invalid),
        }


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
    """What a snapshot contains: everything needed to rebuild the warehouse (the lake holds
    the reconstructed artifacts too)."""
    return {"dumps": settings.dumps, "lake": settings.lake}


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
    files, summary, missing, skipped = _scan(sources, emit)
    if not files:
        raise SnapshotError(
            f"nothing to snapshot: no files under {', '.join(sources) or 'any source'}"
        )
    store = open_store(target, client)
    stage, snapshot_id, previous = "reading the target", "", None
    held = ExitStack()
    try:
        log = _read_versions(store)
        latest = _read_json(store, LATEST_KEY)
        previous = latest["version"] if latest else None
        snapshot_id = _allocate_id(store, created, log, latest)
        if not dry_run:  # before deciding which stored objects to reuse: see leases.py
            stage = "taking the snapshot lease"
            held.enter_context(lease(store, "snapshot", against=["sweep"]))
            stage = "reading the target"
        uploads, sources_of = _plan_uploads(files, store, emit)
        manifest = _manifest(
            target, snapshot_id, created, note, files, summary, missing, skipped, stats_copy
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
    finally:
        held.close()  # the lease, once the snapshot is committed or has failed
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
        skipped=tuple(manifest["skipped"]),
        manifest=manifest,
    )
    verb = "would upload" if dry_run else "uploaded"
    done = (
        f"snapshot {snapshot_id}{' (dry run)' if dry_run else ''}: {result.files} files, "
        f"{verb} {result.files_uploaded} ({_fmt(result.bytes_uploaded)}), "
        f"reused {_fmt(result.bytes_reused)}, {result.duration_s:.1f}s"
    )
    if skipped:
        done += f"; skipped {len(skipped)} entries that are not regular files of their source"
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
    """Re-hash every stored object of a snapshot (default: latest), streaming, in parallel.

    Entries with an unsafe path or a malformed sha256/size are reported as `invalid`, and their
    objects never read: such a sha256 could name a key outside `objects/`.
    """
    emit = progress or _ignore
    store = open_store(_as_target(target), client)
    snapshot_id, expected_sha = _resolve(store, snapshot_id)
    raw = _fetch_manifest(store, snapshot_id)
    manifest_ok = expected_sha is None or hashlib.sha256(raw).hexdigest() == expected_sha
    try:
        entries = json.loads(raw)["files"]
    except (ValueError, KeyError, TypeError):
        entries = None
    if not isinstance(entries, list):
        return VerifyReport(snapshot_id, False, False, 0, 0, (), (manifest_key(snapshot_id),))
    judged = [(entry, _entry_problem(entry)) for entry in entries]
    invalid = [problem for _, problem in judged if problem]
    valid = [entry for entry, problem in judged if not problem]
    paths_of: dict[tuple[str, int], list[str]] = {}
    for entry in valid:
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
        ok=manifest_ok and not missing and not corrupted and not invalid,
        manifest_ok=manifest_ok,
        checked=len(valid),
        bytes_checked=checked_bytes,
        missing=tuple(sorted(missing)),
        corrupted=tuple(sorted(corrupted)),
        invalid=tuple(invalid),
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
    A manifest with any unsafe or malformed entry is refused before anything is written.
    """
    started = time.monotonic()
    emit = progress or _ignore
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SnapshotError(f"restore destination {dest} must be absent or an empty directory")
    store = open_store(_as_target(target), client)
    snapshot_id, manifest = _load_manifest(store, snapshot_id)
    entries = manifest.get("files")
    problems = _entry_problems(entries)
    if problems:
        raise SnapshotError(
            f"refusing to restore snapshot {snapshot_id}: {len(problems)} unsafe or malformed "
            f"manifest entries, e.g. {problems[0]}; nothing was written to {dest}"
        )
    finals = [dest.joinpath(*PurePosixPath(entry["path"]).parts) for entry in entries]
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
            sha, size = digest(iter_file(down.dest))
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
            f"restoring snapshot {snapshot_id} into {dest} failed: {redact_credentials(str(exc))}."
            f" {dest} is incomplete; remove it before retrying."
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
) -> tuple[list[_LocalFile], dict[str, dict[str, int]], list[str], list[str]]:
    """Hash every regular file under the sources; returns files, per-source totals, missing
    sources and the entries skipped unread ("<manifest path>: <why>")."""
    found: list[tuple[str, Path]] = []
    summary: dict[str, dict[str, int]] = {}
    missing: list[str] = []
    skipped: list[str] = []
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
        regular, refused = _walk_source(name, root)
        found += regular
        for path, why in refused:
            skipped.append(f"{path}: {why}")
            logger.warning("snapshot skips %s: %s", path, why)
            emit(ProgressEvent("skip", f"skipped {path}: {why}", path=path))
    total = sum(os.stat(local).st_size for _, local in found)
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
    return files, summary, missing, skipped


def _walk_source(name: str, root: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """The regular files under `root` as (manifest path, file to read) and the entries skipped
    as (manifest path, why), sorted. Hidden entries are writes in progress (`.x.partial`) and
    commit journals: left out silently. See the module docstring for symlinks and special files.
    """
    real_root = root.resolve()
    files: list[tuple[str, Path]] = []
    skipped: list[tuple[str, str]] = []
    pending = [root]
    while pending:
        for entry in _list_dir(pending.pop()):
            if entry.name.startswith("."):
                continue
            path = f"{name}/{Path(entry.path).relative_to(root).as_posix()}"
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                files.append((path, Path(entry.path)))
            elif entry.is_symlink():
                target, why = _link_target(Path(entry.path), real_root)
                if target is None:
                    skipped.append((path, why))
                else:
                    files.append((path, target))
            else:
                skipped.append((path, "not a regular file (a FIFO, socket or device); skipped"))
    return sorted(files), sorted(skipped)


def _list_dir(directory: Path) -> list[os.DirEntry[str]]:
    """A directory's entries; one that cannot be listed fails the snapshot, naming it."""
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError as exc:
        raise SnapshotError(
            f"cannot list {directory}: {exc.strerror or exc}; nothing was stored. Fix its "
            "permissions or move it out of the snapshot sources."
        ) from exc


def _link_target(link: Path, real_root: Path) -> tuple[Path | None, str]:
    """The regular file inside `real_root` that `link` resolves to, or (None, why not)."""
    try:
        target = link.resolve()
    except RuntimeError:  # a symlink loop, on Python < 3.13
        return None, "symlink loop; skipped"
    if not target.is_relative_to(real_root):
        return None, f"symlink to {target}, outside its source {real_root}; refused"
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return None, f"symlink to {target}, which does not exist; skipped"
    if stat.S_ISDIR(mode):
        return None, f"symlink to the directory {target}; not followed"
    if not stat.S_ISREG(mode):
        return None, f"symlink to {target}, which is not a regular file; skipped"
    return target, ""


def _hash_local(path: str, local: Path) -> _LocalFile:
    """Hash one file, refusing one that changes underneath us (a half-written lake file) and
    failing, named, on one that cannot be read (the snapshot would silently lack it)."""
    try:
        before = local.lstat()
        sha, size = digest(iter_file(local))
        after = local.lstat()
    except OSError as exc:
        raise SnapshotError(
            f"cannot read {path} ({local}): {exc.strerror or exc}; nothing was stored. Fix its "
            "permissions or move it out of the snapshot sources."
        ) from exc
    if (before.st_size, before.st_mtime_ns) != (
        after.st_size,
        after.st_mtime_ns,
    ) or size != after.st_size:
        raise SnapshotError(f"{local} changed while it was hashed; snapshot when writers are idle")
    return _LocalFile(path, local, size, sha, after.st_mtime_ns)


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
    files: Sequence[_LocalFile], store: Store, emit: Progress
) -> tuple[list[Upload], dict[str, _LocalFile]]:
    """One upload per distinct content the store does not provably hold: an object of the
    right size may still have been altered in place, so `Store.holds` must vouch for it."""
    first: dict[str, _LocalFile] = {}
    for f in files:
        first.setdefault(f.sha256, f)
    wanted = [Upload(object_key(sha), f.local, f.size, sha) for sha, f in first.items()]
    sizes = store.list_sizes(OBJECTS_PREFIX)
    candidates = [up for up in wanted if sizes.get(up.key) == up.size]
    held: set[str] = set()
    with ThreadPoolExecutor(MAX_CONCURRENCY) as pool:
        proofs = zip(candidates, pool.map(store.holds, candidates), strict=True)
        for n, (up, ok) in enumerate(proofs, 1):
            if ok:
                held.add(up.key)
            name = first[up.sha256].path
            emit(
                ProgressEvent(
                    "reuse",
                    f"checked stored object {n}/{len(candidates)} "
                    f"({'reusing it' if ok else 'not proven, uploading it again'}: {name})",
                    path=name,
                    done_files=n,
                    total_files=len(candidates),
                )
            )
    return [up for up in wanted if up.key not in held], first


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
        now = f.local.lstat()
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
    skipped: Sequence[str],
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
        "skipped": list(skipped),
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
    head += f"{type(exc).__name__}: {redact_credentials(str(exc))}."
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
    manifest = json.loads(raw)
    if not isinstance(manifest, dict):
        raise SnapshotError(f"{store.target.uri(manifest_key(snapshot_id))} is not a manifest")
    return snapshot_id, manifest


def _entry_problems(entries: Any) -> list[str]:
    """What is wrong with a manifest's file list, entry by entry (empty: safe to use)."""
    if not isinstance(entries, list):
        return ["the manifest has no list of files"]
    return [problem for problem in map(_entry_problem, entries) if problem]


def _entry_problem(entry: Any) -> str | None:
    """Why a manifest entry must not be used, or None. Manifests come from storage: a path must
    not escape the restore directory, nor a sha256 the `objects/` prefix."""
    if not isinstance(entry, dict):
        return f"{entry!r}: not a file entry"
    path, sha, size = entry.get("path"), entry.get("sha256"), entry.get("size")
    if not isinstance(path, str) or not _is_safe_path(path):
        return f"{path!r}: unsafe path (must be relative, without empty, . or .. parts)"
    if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
        return f"{path}: sha256 {sha!r} is not 64 lowercase hex digits"
    if type(size) is not int or size < 0:
        return f"{path}: size {size!r} is not a byte count"
    return None


def _is_safe_path(path: str) -> bool:
    """Relative, normalized, no `..`: an empty part also rules out "", "/abs" and "a//b"."""
    return all(part not in ("", ".", "..") for part in path.split("/"))


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
