"""The instance tests run on every line scanner this install has: the C extension (when `pip`
built it) and the pure-Python fallback, which must give the same tables."""

from collections.abc import Iterator

import pytest

from evalpipe.sources.olmes import instance_parse
from evalpipe.sources.olmes.scanner import SCANNERS, ScanRows

requires_c = pytest.mark.skipif(
    "c" not in SCANNERS,
    reason="the C scanner was not built (under `make test`, EVALPIPE_SCANNER=c makes that an error)",
)


@pytest.fixture(params=sorted(SCANNERS))
def scan_rows(request: pytest.FixtureRequest) -> ScanRows:
    """Each scanner's `scan_rows` in turn."""
    return SCANNERS[request.param]


@pytest.fixture(scope="module", params=sorted(SCANNERS))
def scanner(request: pytest.FixtureRequest) -> Iterator[str]:
    """The ingest parses with each scanner in turn, for all of a module's tests at a time."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(instance_parse, "scan_rows", SCANNERS[request.param])
        yield request.param
