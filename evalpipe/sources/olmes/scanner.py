"""Which line scanner the instance ingest uses, chosen once at import.

The C extension (`_instance_scan.c`) is built by `pip install` when a C compiler is there; it is
optional, so an install without one still works, on the pure-Python scanner (`scanner_python`),
which gives the same tables more slowly and holding the GIL. `EVALPIPE_SCANNER` (see
`core.config.load_scanner_choice`) can insist on the C one or force the Python one.
"""

from __future__ import annotations

from collections.abc import Callable

from evalpipe.core.config import ScannerUnavailable, load_scanner_choice
from evalpipe.sources.olmes import scanner_python
from evalpipe.sources.olmes.scanner_python import ScanResult

ScanRows = Callable[
    [bytes, tuple[str, ...], tuple[str, ...], tuple[str, ...], str | None, str], ScanResult
]


def _built_scanners() -> dict[str, ScanRows]:
    """The scanners this install has: always Python, C when the extension was built."""
    scanners: dict[str, ScanRows] = {"python": scanner_python.scan_rows}
    try:
        from evalpipe.sources.olmes._instance_scan import scan_rows
    except ImportError:
        return scanners
    return {"c": scan_rows, **scanners}


def _choose(choice: str, built: dict[str, ScanRows]) -> str:
    """The scanner for an `EVALPIPE_SCANNER` choice; insisting on C where it was not built is an
    error, so a CI whose build failed does not pass on the slow path unnoticed."""
    if choice == "c" and "c" not in built:
        raise ScannerUnavailable(
            "EVALPIPE_SCANNER=c, but the C scanner was not built: reinstall with a C compiler "
            "and the Python headers (`pip install -e .` shows why the build failed)"
        )
    return "python" if choice == "python" or "c" not in built else "c"


SCANNERS = _built_scanners()
_ACTIVE = _choose(load_scanner_choice(), SCANNERS)
scan_rows: ScanRows = SCANNERS[_ACTIVE]


def scanner_implementation() -> str:
    """`"c"` or `"python"`: the scanner this process ingests instance files with."""
    return _ACTIVE
