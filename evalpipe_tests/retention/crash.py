"""Simulated kills: a store wrapper and patched local steps that stop the process at step N.

`Crash` derives from BaseException, like the KeyboardInterrupt or SystemExit a real kill turns
into: no `except Exception` on the way out can swallow it and carry on.
"""

from __future__ import annotations

from typing import Any

from evalpipe.snapshots.store import Store


class Crash(BaseException):
    """The process died here."""


class Crasher:
    """Counts mutating steps; the `at`-th one (1-based) raises Crash before it happens."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.steps: list[str] = []

    def step(self, name: str) -> None:
        self.steps.append(name)
        if self.at is not None and len(self.steps) == self.at:
            raise Crash(f"killed before step {self.at}: {name}")

    def wrap(self, store: Store) -> Store:
        return _CrashingStore(store, self)  # type: ignore[return-value]


class _CrashingStore:
    """A real store whose writes and deletes each count as one step."""

    def __init__(self, store: Store, crasher: Crasher) -> None:
        self._store, self._crasher = store, crasher
        self.target = store.target

    def put_bytes(self, key: str, data: bytes) -> None:
        self._crasher.step(f"put {key}")
        self._store.put_bytes(key, data)

    def put_files(self, uploads: Any, *args: Any, **kwargs: Any) -> None:
        for up in uploads:  # one step per object: a kill can land between two of them
            self._crasher.step(f"upload {up.key}")
            self._store.put_files([up], *args, **kwargs)

    def delete(self, key: str) -> None:
        self._crasher.step(f"delete {key}")
        self._store.delete(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
