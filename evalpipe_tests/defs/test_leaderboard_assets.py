"""Leaderboard assets rebuild after ingest, show previews in the UI and write the report page."""

import dagster as dg
import duckdb

from evalpipe.core.config import Settings
from evalpipe.definitions import build_definitions
from evalpipe.defs.runner import ingest
from evalpipe.storage.lake import Lake


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    return event.asset_materialization.metadata


def test_ingest_refreshes_the_boards_with_previews_and_the_report(settings: Settings) -> None:
    with dg.instance_for_test() as instance:
        report = ingest(build_definitions(settings), settings, instance, progress=lambda _: None)
        assert len(report.outcomes) == 4 and report.refreshed

        lake = Lake(settings.lake)
        tasks = lake.read_derived("leaderboard_tasks").to_pandas()
        runs = lake.read_all("runs").to_pandas()
        entries = runs[["model", "revision"]].drop_duplicates()
        assert len(entries) == 3, "the sample re-runs one model: 4 runs, 3 (model, revision)"
        assert not tasks.duplicated(["model", "revision", "task_name"]).any()
        results = lake.read_all("task_results").to_pandas().merge(runs[["run_id", "model"]])
        newest = results.sort_values("evaluated_at").groupby(["model", "task_name"]).tail(1)
        ranked = tasks.merge(newest[["model", "task_name", "run_id"]], on=["model", "task_name"])
        assert (ranked["run_id_x"] == ranked["run_id_y"]).all(), "the newest run wins each task"
        assert tasks.groupby("task_name")["rank"].min().eq(1).all()

        boards = {
            name: latest_metadata(instance, name)
            for name in ("leaderboard_tasks", "leaderboard_benchmarks", "leaderboard_overall")
        }
        assert boards["leaderboard_tasks"]["superseded_rows"].value > 0
        assert boards["leaderboard_tasks"]["dagster/row_count"].value == len(tasks)
        assert boards["leaderboard_overall"]["top_rows"].value.startswith("| rank | model |")

        page = settings.reports / "leaderboard.html"
        assert latest_metadata(instance, "leaderboard_report")["path"].value == str(page)
        html = page.read_text(encoding="utf-8")
        assert 'id="overall"' in html and 'id="tasks"' in html
        assert "http://" not in html and "https://" not in html
        standings = lake.read_derived("leaderboard_runs").to_pandas().set_index("run_id")
        assert sorted(standings.index) == sorted(runs["run_id"])
        rerun = standings.loc[standings["rows_superseded"] > 0]
        assert len(rerun) == 1 and rerun["superseded_by"].notna().all()
        assert rerun["superseded_by"].iloc[0] in set(runs["run_id"])
        # The header's counts come from the same table: 4 runs, and the parts add up to it.
        assert '<b id="count-runs">4</b> runs' in html
        parts = standings["standing"].value_counts()
        for standing, n in parts.items():
            assert f'<b id="count-{standing.replace(" ", "-")}">{n}</b>' in html
        assert parts.sum() == 4


def test_warehouse_exposes_boards_and_run_status(settings: Settings) -> None:
    with dg.instance_for_test() as instance:
        ingest(build_definitions(settings), settings, instance, progress=lambda _: None)

    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        statuses = dict(con.execute("SELECT status, count(*) FROM runs GROUP BY 1").fetchall())
        overall = con.execute("SELECT count(*) FROM leaderboard_overall").fetchone()[0]
    assert statuses == {"ok": 4}
    assert overall == 3
