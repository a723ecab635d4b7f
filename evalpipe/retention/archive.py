"""Archiving run directories into a content-addressed store, verified, and restoring them.

An archive is the run directory's files as objects (`objects/<sha256[:2]>/<sha256>`, shared
with the snapshots when both use one target) plus `archives/<id>/manifest.json` naming each
file's name, size, sha256 and mtime. The steps, each safe to interrupt:

1. hash every local file; upload the objects the store does not provably hold;
2. read every object back and check its sha256 (a store that lost or mangled bytes fails here);
3. write the manifest, read it back and check it;
4. the caller records the archive in the `archives` table;
5. only then, and only with `delete_local`, re-hash the local files: any file that changed or
   appeared since stops the deletion (reported); otherwise the directory is renamed to a hidden
   name (one atomic step: scanners skip hidden directories, so ingest never sees a half-deleted
   run) and removed.

An archive's id is derived from its content, so a re-run after an interruption finds and
completes the same archive instead of making a second one. Restore writes into a hidden
directory beside the destination, checks every file's sha256, sets each file's mtime back
(so the run's fingerprint is unchanged and ingest does not re-ingest it) and renames the
directory into place: the destination is either absent or complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from evalpipe.core.inventory import RunScan
from evalpipe.retention.objects import ARCHIVES_PREFIX
from evalpipe.snapshots.manifests import _SHA256_RE, SnapshotError, _dumps, object_key
from evalpipe.snapshots.store import Download, Store, Upload, digest, iter_file

FORMAT = "evalpipe-archive/1"
DELETING_RE = re.compile(r"^\.(?P<name>.+)\.(?P<id>[0-9a-f]{16})\.deleting$")


class ArchiveError(SnapshotError):
    """An archive step failed; nothing local was deleted."""


@dataclass(frozen=True)
class ArchivedFile:
    name: str
    size: int
    sha256: str
    mtime_ns: int


@dataclass(frozen=True)
class Archive:
    """One verified archive, as the `archives` table records it."""

    archive_id: str
    source: str
    run_id: str
    local_path: str
    fingerprint: str
    target: str
    manifest_uri: str
    manifest_sha256: str
    files: int
    bytes: int
    archived_at: datetime


def manifest_key(archive_id: str) -> str:
    return f"{ARCHIVES_PREFIX}{archive_id}/manifest.json"


def hash_run(scan: RunScan) -> list[ArchivedFile]:
    """Every file of the run with its sha256; a file that changes while hashed is an error."""
    files = []
    for entry in scan.inventory.files:
        path = scan.inventory.run_dir / entry.name
        sha, size = digest(iter_file(path))
        after = path.stat()
        if (size, after.st_mtime_ns) != (entry.size, entry.mtime_ns) or size != after.st_size:
            raise ArchiveError(f"{path} changed while it was archived; not archived this time")
        files.append(ArchivedFile(entry.name, entry.size, sha, entry.mtime_ns))
    return files


def archive_id_for(source: str, run_id: str, files: Sequence[ArchivedFile]) -> str:
    listing = "\n".join(f"{f.name}\0{f.size}\0{f.sha256}\0{f.mtime_ns}" for f in files)
    return hashlib.sha256(f"{source}\0{run_id}\0{listing}".encode()).hexdigest()[:16]


def archive_run(store: Store, scan: RunScan, now: datetime | None = None) -> Archive:
    """Store one run directory and verify every byte of it; see the module docstring."""
    now = now or datetime.now(timezone.utc)
    files = hash_run(scan)
    archive_id = archive_id_for(scan.source, scan.run_id, files)
    key = manifest_key(archive_id)
    run_dir = scan.inventory.run_dir
    distinct = {f.sha256: f for f in files}
    wanted = [Upload(object_key(sha), run_dir / f.name, f.size, sha) for sha, f in distinct.items()]
    store.put_files([up for up in wanted if not store.holds(up)])
    for up in wanted:
        if digest(store.read_chunks(up.key)) != (up.sha256, up.size):
            raise ArchiveError(f"{store.target.uri(up.key)} read back wrong; nothing recorded")
    manifest = {
        "format": FORMAT,
        "id": archive_id,
        "source": scan.source,
        "run_id": scan.run_id,
        "local_path": str(run_dir),
        "fingerprint": scan.inventory.fingerprint,
        "archived_at": now.isoformat(timespec="seconds"),
        "files": [f.__dict__ for f in files],
    }
    if store.exists(key):  # an earlier, interrupted run got this far: keep its manifest
        raw = store.get_bytes(key)
        if [ArchivedFile(**f) for f in json.loads(raw)["files"]] != files:
            raise ArchiveError(f"{store.target.uri(key)} exists with other content")
        now = datetime.fromisoformat(json.loads(raw)["archived_at"])
    else:
        raw = _dumps(manifest)
        store.put_bytes(key, raw)
        if store.get_bytes(key) != raw:
            raise ArchiveError(f"{store.target.uri(key)} read back wrong; nothing recorded")
    return Archive(
        archive_id=archive_id,
        source=scan.source,
        run_id=scan.run_id,
        local_path=str(run_dir),
        fingerprint=scan.inventory.fingerprint,
        target=store.target.url,
        manifest_uri=store.target.uri(key),
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        files=len(files),
        bytes=sum(f.size for f in files),
        archived_at=now,
    )


def load_manifest(store: Store, archive: Archive) -> list[ArchivedFile]:
    """The archive's file list, from a manifest whose bytes match the recorded sha256."""
    raw = store.get_bytes(manifest_key(archive.archive_id))
    if hashlib.sha256(raw).hexdigest() != archive.manifest_sha256:
        raise ArchiveError(f"{archive.manifest_uri} does not match its recorded sha256")
    files = [ArchivedFile(**f) for f in json.loads(raw)["files"]]
    for f in files:
        if "/" in f.name or f.name in ("", ".", "..") or not _SHA256_RE.fullmatch(f.sha256):
            raise ArchiveError(f"{archive.manifest_uri}: unsafe entry {f.name!r}; refused")
    return files


def changed_files(run_dir: Path, files: Sequence[ArchivedFile]) -> list[str]:
    """Local files that are not exactly as archived (changed, added, or unreadable)."""
    archived = {f.name: f for f in files}
    problems = []
    for entry in sorted(os.scandir(run_dir), key=lambda e: e.name):
        kept = archived.get(entry.name)
        if kept is None:
            problems.append(f"{entry.name}: not in the archive (added since)")
            continue
        try:
            sha, size = digest(iter_file(Path(entry.path)))
        except OSError as exc:
            problems.append(f"{entry.name}: cannot be read ({exc.strerror or exc})")
            continue
        if (sha, size) != (kept.sha256, kept.size):
            problems.append(f"{entry.name}: changed since it was archived")
    return problems


def delete_local(store: Store, archive: Archive) -> list[str]:
    """Remove the archived run directory if every file in it is in the verified archive;
    otherwise leave it and return what stopped the deletion."""
    run_dir = Path(archive.local_path)
    if not run_dir.is_dir():
        return []
    files = load_manifest(store, archive)
    problems = changed_files(run_dir, files)
    if problems:
        return [f"{run_dir / p}" for p in problems]
    doomed = run_dir.with_name(f".{run_dir.name}.{archive.archive_id}.deleting")
    os.rename(run_dir, doomed)
    shutil.rmtree(doomed)
    return []


def leftover_deletions(root: Path) -> list[tuple[Path, str]]:
    """Hidden `.<name>.<archive id>.deleting` directories an interrupted deletion left."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        for name in list(dirnames):
            match = DELETING_RE.match(name)
            if match:
                found.append((Path(dirpath, name), match["id"]))
            if name.startswith("."):
                dirnames.remove(name)
    return found


def restore(store: Store, archive: Archive, dest: Path | None = None) -> Path:
    """Bring the archived run directory back byte-identical (mtimes too) at `dest`, by
    default where it was. `dest` must be absent or an empty directory."""
    dest = Path(dest or archive.local_path)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ArchiveError(f"restore destination {dest} must be absent or an empty directory")
    files = load_manifest(store, archive)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.restoring")
    staging.mkdir()
    try:
        store.get_files([Download(object_key(f.sha256), staging / f.name, f.size) for f in files])
        for f in files:
            path = staging / f.name
            if digest(iter_file(path)) != (f.sha256, f.size):
                raise ArchiveError(f"{archive.manifest_uri}: {f.name} restored wrong; aborted")
            os.utime(path, ns=(f.mtime_ns, f.mtime_ns))
        if dest.exists():
            dest.rmdir()
        os.rename(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
