"""Ingesting the sample dumps gives exactly the tables, check results and leaderboards it gave
before the core was rebuilt around sources (golden digests taken from the earlier layout).

A digest is the sha256 of a table's rows, canonicalized: rows sorted, the dumps root written as
`<DUMPS>`, and the columns that depend on when and where the test runs (ingest and check times,
file mtimes and the fingerprints made from them, absolute source paths) left out. Columns added
since the golden was taken are not compared; every golden column is.
"""

import hashlib
import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from evalpipe.core.config import Settings
from evalpipe.definitions import build_definitions
from evalpipe.defs.runner import get_instance, ingest
from evalpipe.storage.lake import Lake
from evalpipe.storage.schemas import SCHEMAS

GOLDEN = Path(__file__).parent / "golden" / "sample_outputs.json"
CHECKS_AT_GOLDEN = {
    "task_results_schema_and_ranges",
    "task_rows_match_source",
    "aggregates_match_members",
    "aggregate_members_present",
    "no_source_conflicts",
    "predictions_schema_and_keys",
    "predictions_match_num_instances",
    "requests_schema_and_keys",
    "source_task_files_match_metrics_all",
}
"""Checks added since the golden was taken have rows of their own; these keep theirs."""
VARIES_BY_RUN = {
    "ingested_at",
    "checked_at",
    "status_checked_at",
    "mtime",
    "fingerprint",
    "source_dir",
}


def canonical(value: object, dumps: Path) -> object:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 12)
    if isinstance(value, str):
        return value.replace(str(dumps), "<DUMPS>")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def table_digest(
    files: list[Path], dumps: Path, columns: list[str] | None, checks: set[str] | None = None
) -> dict:
    tables = [pq.read_table(f) for f in files]
    names = columns or sorted({n for t in tables for n in t.schema.names} - VARIES_BY_RUN)
    rows = sorted(
        json.dumps({k: canonical(r.get(k), dumps) for k in names}, sort_keys=True, default=str)
        for t in tables
        for r in t.to_pylist()
        if checks is None or r["check"] in checks
    )
    digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return {"columns": names, "rows": len(rows), "sha256": digest}


def lake_digests(
    lake: Path, dumps: Path, golden: dict | None = None, checks: set[str] | None = None
) -> dict:
    """Per table (run-partitioned and derived), its digest over the golden's columns."""
    committed = Lake(lake)
    files = {t: committed.files(t) for t in SCHEMAS if committed.has_data(t)}
    files.update({f.stem: [f] for f in (lake / "derived").glob("*.parquet")})
    return {
        table: table_digest(
            paths,
            dumps,
            (golden or {}).get(table, {}).get("columns"),
            checks if table == "run_checks" else None,
        )
        for table, paths in sorted(files.items())
    }


@pytest.fixture(scope="module")
def ingested(pristine_dumps: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from evalpipe.core.config import load_settings

    home = tmp_path_factory.mktemp("golden")
    settings = load_settings(
        {
            "EVALPIPE_HOME": str(home / "home"),
            "EVALPIPE_DUMPS": str(pristine_dumps),
            "EVALPIPE_SETTLE_SECONDS": "0",
            "DAGSTER_HOME": str(home / "dagster"),
        }
    )
    report = ingest(
        build_definitions(settings), settings, get_instance(settings), progress=lambda _: None
    )
    assert not report.failed
    return settings


def test_every_table_check_and_board_matches_the_golden_digest(ingested: Settings) -> None:
    golden = json.loads(GOLDEN.read_text())
    actual = lake_digests(ingested.lake, ingested.dumps, golden, CHECKS_AT_GOLDEN)
    assert sorted(golden) == sorted(set(actual) & set(golden)), "a golden table is missing"
    for table, expected in golden.items():
        assert actual[table] == expected, f"{table} differs from the golden digest"
