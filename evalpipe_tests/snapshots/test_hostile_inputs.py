"""Issue 15: hostile dumps cannot reach outside their root, and a hostile store cannot make a
snapshot reuse, read or restore what it should not.

Dumps come from the project's generator (`small_dumps`) or are the small home of `make_tree`;
the hostile parts are added by hand: symlinks out of the root, a FIFO, a socket, a file swapped
for a symlink mid-snapshot, a stored object altered in place, a manifest with escaping entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from evalpipe.snapshots.manifests import (
    ProgressEvent,
    SnapshotError,
    manifest_key,
    object_key,
    restore_snapshot,
    take_snapshot,
    verify_snapshot,
)
from evalpipe.snapshots.store import SnapshotTarget, redact_credentials
from evalpipe.sources.olmes.samples import generate_dumps
from evalpipe_tests.snapshots.backends import (
    BIG,
    NOW,
    PREDICTIONS,
    Backend,
    digests,
    make_tree,
    snapshot,
)

SECRET = b"root:x:0:0:EVALPIPE-OUTSIDE-SECRET:/root:/bin/sh\n"
T = TypeVar("T")


@pytest.fixture
def small_dumps(tmp_path: Path) -> Path:
    """One generated run directory: a real dump layout, small enough to store on S3 quickly."""
    generate_dumps(tmp_path / "dumps", runs=1, tasks=2, instances=7)
    return tmp_path / "dumps"


def a_run(dumps: Path) -> tuple[Path, Path]:
    """A generated run directory and one of its predictions files."""
    predictions = sorted(dumps.rglob("*-predictions.jsonl"))[0]
    return predictions.parent, predictions


def stored_objects(backend: Backend) -> dict[str, bytes]:
    return {key: backend.read(key) for key in backend.stored() if key.startswith("objects/")}


def finishes_within(seconds: float, work: Callable[[], T]) -> T:
    """Run `work` on a daemon thread: a read blocked on a FIFO fails the test, not the run."""
    outcome: list[T] = []
    thread = threading.Thread(target=lambda: outcome.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds}s: blocked opening a FIFO?"
    assert outcome, "the work raised; see the thread's traceback above"
    return outcome[0]


def test_symlinks_leaving_their_source_are_refused_unread_and_reported(
    backend: Backend, small_dumps: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Links out of the dumps root, absolute or relative, to a file or a directory, even into
    another snapshot source: none is stored or read; each is skipped, named in a warning, and
    listed in the result and the manifest."""
    outside = tmp_path / "outside"
    (outside / "tree").mkdir(parents=True)
    (outside / "passwd").write_bytes(SECRET)
    (outside / "tree" / "shadow").write_bytes(SECRET)
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "part-0.parquet").write_bytes(SECRET)
    run, _ = a_run(small_dumps)
    regular_files = len(digests(small_dumps))
    links = {
        "passwd": outside / "passwd",
        "relative-passwd": Path(os.path.relpath(outside / "passwd", run)),
        "etc": outside / "tree",
        "other-source": lake / "part-0.parquet",
    }
    for name, target in links.items():
        (run / name).symlink_to(target)
    caplog.set_level(logging.WARNING, logger="evalpipe")

    result = snapshot({"dumps": small_dumps}, backend)

    refused = {f"dumps/{run.relative_to(small_dumps).as_posix()}/{name}" for name in links}
    assert {line.split(": ", 1)[0] for line in result.skipped} == refused
    assert all("outside its source" in line for line in result.skipped)
    assert result.manifest["skipped"] == list(result.skipped)
    assert all(path in caplog.text for path in refused)
    assert not refused & {entry["path"] for entry in result.manifest["files"]}
    assert result.files == regular_files
    assert not [key for key, data in stored_objects(backend).items() if SECRET in data]
    assert verify_snapshot(backend.url, client=backend.client).ok


def test_a_symlink_to_a_file_inside_its_source_is_stored_as_that_file(
    backend: Backend, small_dumps: Path, tmp_path: Path
) -> None:
    """Ingest reads such a link as the file it points to, so the snapshot holds it, and a
    restore gives back a regular file with the same bytes. A symlinked directory is not
    followed (no loops, no duplicates) and is reported."""
    run, predictions = a_run(small_dumps)
    (run / "alias-predictions.jsonl").symlink_to(predictions.name)
    (small_dumps / "loop").symlink_to(".")

    result = snapshot({"dumps": small_dumps}, backend)

    rel = f"dumps/{run.relative_to(small_dumps).as_posix()}"
    sha_of = {entry["path"]: entry["sha256"] for entry in result.manifest["files"]}
    assert sha_of[f"{rel}/alias-predictions.jsonl"] == sha_of[f"{rel}/{predictions.name}"]
    assert result.skipped == (
        f"dumps/loop: symlink to the directory {small_dumps.resolve()}; not followed",
    )
    restore_snapshot(backend.url, None, tmp_path / "restored", client=backend.client)
    alias = tmp_path / "restored" / rel / "alias-predictions.jsonl"
    assert not alias.is_symlink() and alias.read_bytes() == predictions.read_bytes()


def test_special_files_are_skipped_without_being_opened(
    small_dumps: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a FIFO that has no writer blocks forever, reading a device may never end: a
    FIFO, a socket and a link to the FIFO are skipped unopened, and reported."""
    run, _ = a_run(small_dumps)
    os.mkfifo(run / "pipe.jsonl")
    (run / "to-pipe.jsonl").symlink_to("pipe.jsonl")
    monkeypatch.chdir(run)  # a relative name keeps the socket path under the AF_UNIX limit
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("socket.jsonl")
        result = finishes_within(
            30,
            lambda: take_snapshot({"dumps": small_dumps}, (tmp_path / "store").as_uri(), now=NOW),
        )

    rel = f"dumps/{run.relative_to(small_dumps).as_posix()}"
    assert result.skipped == (
        f"{rel}/pipe.jsonl: not a regular file (a FIFO, socket or device); skipped",
        f"{rel}/socket.jsonl: not a regular file (a FIFO, socket or device); skipped",
        f"{rel}/to-pipe.jsonl: symlink to {(run / 'pipe.jsonl').resolve()}, which is not a "
        "regular file; skipped",
    )
    assert result.files == len(digests(small_dumps))


def skip_unless_permissions_bind(tmp_path: Path) -> None:
    """Root (with CAP_DAC_OVERRIDE) reads any file: there, nothing is unreadable to test."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    probe.chmod(0)
    try:
        probe.read_bytes()
    except PermissionError:
        return
    finally:
        probe.chmod(0o600)
    pytest.skip("this process reads files whatever their permissions (root)")


@pytest.mark.parametrize("what", ["file", "directory"])
def test_an_unreadable_file_or_directory_fails_the_snapshot_naming_it(
    what: str, small_dumps: Path, tmp_path: Path
) -> None:
    """Leaving it out would store a tree that looks complete and is not: the snapshot fails
    before writing anything, with a message that names what could not be read."""
    skip_unless_permissions_bind(tmp_path)
    run, predictions = a_run(small_dumps)
    victim = predictions if what == "file" else run
    mode = victim.stat().st_mode
    victim.chmod(0)
    store = tmp_path / "store"
    try:
        with pytest.raises(SnapshotError, match="Permission denied; nothing was stored") as err:
            take_snapshot({"dumps": small_dumps}, store.as_uri(), now=NOW)
    finally:
        victim.chmod(mode)
    assert str(victim) in str(err.value)
    assert not store.exists()


@pytest.mark.parametrize("when", ["before it is hashed", "before it is uploaded"])
def test_a_file_swapped_for_an_outside_symlink_mid_snapshot_is_never_read(
    backend: Backend, tmp_path: Path, when: str
) -> None:
    """A listed regular file replaced by a link to a secret while the snapshot runs: reading it
    refuses the link (O_NOFOLLOW), so the snapshot fails and the secret is stored nowhere."""
    home = tmp_path / "home"
    sources = make_tree(home)
    victim = home / PREDICTIONS  # hashed third, after empty.txt and metrics-all.jsonl
    size = victim.stat().st_size  # a same-size secret: no length check can give it away
    (tmp_path / "passwd").write_bytes(SECRET + b"#" * (size - len(SECRET)))

    def swap(event: ProgressEvent) -> None:
        hashed_all = event.done_files == event.total_files
        due = hashed_all if when == "before it is uploaded" else not hashed_all
        if event.stage == "hash" and due and not victim.is_symlink():
            victim.unlink()
            victim.symlink_to(tmp_path / "passwd")

    with pytest.raises(SnapshotError) as err:
        snapshot(sources, backend, progress=swap)

    if when == "before it is hashed":
        assert f"cannot read {PREDICTIONS}" in str(err.value)
        assert backend.stored() == {}
    else:
        assert "latest.json is unchanged" in str(err.value)
        assert not [key for key in backend.stored() if not key.startswith("objects/")]
    assert not [key for key, data in stored_objects(backend).items() if SECRET in data]


def test_a_stored_object_altered_in_place_is_uploaded_again_not_reused(
    backend: Backend, tmp_path: Path
) -> None:
    """Same size, one byte flipped, and on S3 even a checksum S3 computed for the flipped bytes:
    an object is reused only when its content is proven (re-hashed on disk; on S3, the SHA-256
    S3 verified on upload, whole or per part), so the new snapshot verifies."""
    home = tmp_path / "home"
    sources = make_tree(home, big=True)  # BIG goes up in parts on S3
    snapshot(sources, backend)
    altered = {
        object_key(hashlib.sha256((home / rel).read_bytes()).hexdigest())
        for rel in (PREDICTIONS, BIG)
    }
    for key in altered:
        flipped = bytearray(backend.read(key))
        flipped[10] ^= 0xFF
        backend.write(key, bytes(flipped))

    writes = backend.watch_object_writes()
    again = snapshot(sources, backend, note="after the objects were altered")

    assert again.files_uploaded == 2 and writes() == altered
    assert verify_snapshot(backend.url, client=backend.client).ok
    for key in altered:
        assert hashlib.sha256(backend.read(key)).hexdigest() == key.rsplit("/", 1)[1]


def test_verify_reports_and_restore_refuses_unsafe_paths_and_malformed_hashes(
    backend: Backend, tmp_path: Path
) -> None:
    """A manifest (authentic as far as latest.json says) naming absolute or `..` paths, or a
    sha256 that is not 64 lowercase hex digits (it would name a key outside `objects/`): verify
    reports each entry without reading its object, and restore writes nothing."""
    snapshot(make_tree(tmp_path / "home"), backend)
    manifest = json.loads(backend.read(manifest_key("202503141509")))
    sha = manifest["files"][0]["sha256"]
    hostile = {
        "/etc/passwd": sha,
        "dumps/../../escaped.txt": sha,
        "dumps/traversing-hash": "../../../../etc/passwd",
        "dumps/uppercase-hash": sha.upper(),
        "dumps/short-hash": sha[:63],
    }
    manifest["files"] += [{"path": p, "size": 1, "sha256": s} for p, s in hostile.items()]
    raw = json.dumps(manifest).encode()
    backend.write(manifest_key("202503141509"), raw)
    latest = json.loads(backend.read("latest.json"))
    latest["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    backend.write("latest.json", json.dumps(latest).encode())

    report = verify_snapshot(backend.url, client=backend.client)

    assert not report.ok and report.manifest_ok and report.checked == 6
    assert (report.missing, report.corrupted) == ((), ())
    assert len(report.invalid) == len(hostile)
    assert all(any(path in problem for problem in report.invalid) for path in hostile)
    with pytest.raises(SnapshotError, match=r"refusing to restore .* unsafe path"):
        restore_snapshot(backend.url, None, tmp_path / "restored", client=backend.client)
    assert not (tmp_path / "restored").exists()


def test_credentials_in_urls_are_redacted_and_nothing_else() -> None:
    """What botocore says when AWS_ENDPOINT_URL embeds user:password, and look-alikes."""
    refused = 'Could not connect to the endpoint URL: "http://user:secret@127.0.0.1:9/b?x=1"'
    assert redact_credentials(refused) == (
        'Could not connect to the endpoint URL: "http://***@127.0.0.1:9/b?x=1"'
    )
    assert redact_credentials("https://AKIA:p@ss@minio:9000/x, s3://key@bucket/p") == (
        "https://***@minio:9000/x, s3://***@bucket/p"
    )
    for harmless in ("file:///data/user@host/x", "mail ops@example.com", "http://127.0.0.1:9/"):
        assert redact_credentials(harmless) == harmless
    with pytest.raises(ValueError, match="unsupported snapshot target") as err:
        SnapshotTarget.parse("http://user:secret@127.0.0.1:9/bucket")
    assert "secret" not in str(err.value) and "http://***@127.0.0.1:9/bucket" in str(err.value)
