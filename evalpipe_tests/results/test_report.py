"""The report page, as a person sees it in a browser: headings, sorting, links, charts, escaping.

The browser tests open the written file in headless Chromium (see `chromium.py`); they skip,
saying how to install it, only where Chromium is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from evalpipe.results.leaderboard import (
    OVERALL_COLUMNS,
    RUNS_COLUMNS,
    TASK_COLUMNS,
    build_leaderboards,
)
from evalpipe.results.report import render_report, write_report
from evalpipe_tests.chromium import Page, chromium, require_chromium

HOSTILE_MODEL = '<script>alert(1)</script> & "x"'
HOSTILE_TASK = "mmlu<img src=x onerror=window.pwned=1>"
GENERATED_AT = datetime(2025, 1, 3, 12, 0, tzinfo=timezone.utc)
DAY1 = pd.Timestamp("2025-01-01", tz="UTC")
DAY2 = pd.Timestamp("2025-01-02", tz="UTC")
NOTES = ("1 superseded re-run", "1 quarantined run excluded")


@pytest.fixture(scope="module")
def boards() -> dict[str, pd.DataFrame]:
    """4 healthy models x 3 tasks + 1 benchmark; a re-run, a quarantined run, a missing score."""
    runs = pd.DataFrame(
        [
            ("r1", "m1", "main", "ok"),
            ("r1b", "m1", "main", "ok"),
            ("r2", "m2", "main", "ok"),
            ("r3", "m3", "step100", "ok"),
            ("rh", HOSTILE_MODEL, "main", "ok"),
            ("rq", "m4", "main", "quarantined"),
        ],
        columns=["run_id", "model", "revision", "status"],
    )
    scores = {
        "r1": {"arc": 0.50, "hellaswag": 0.41, HOSTILE_TASK: 0.33, "suite": 0.41},
        "r1b": {"arc": 0.62},  # a day later: supersedes r1 on arc
        "r2": {"arc": 0.71, "hellaswag": 0.58, HOSTILE_TASK: 0.47, "suite": 0.59},
        "r3": {"arc": 0.80, "hellaswag": 0.66, HOSTILE_TASK: 0.52, "suite": 0.66},
        "rh": {"arc": 0.25, "hellaswag": 0.30, HOSTILE_TASK: float("nan"), "suite": 0.28},
        "rq": {"arc": 0.99, "suite": 0.99},
    }
    results = pd.DataFrame(
        [
            (run, task, score, DAY2 if run == "r1b" else DAY1)
            for run, by_task in scores.items()
            for task, score in by_task.items()
        ],
        columns=["run_id", "task_name", "primary_score", "evaluated_at"],
    ).assign(primary_metric="acc_norm", num_instances=100)
    results["is_aggregate"] = results["task_name"] == "suite"
    built = build_leaderboards(runs, results, pd.DataFrame(columns=["task_name", "n_choices"]))
    return {
        "overall": built.overall,
        "benchmarks": built.benchmarks.table,
        "tasks": built.tasks.table,
        "runs": built.runs,
    }


@pytest.fixture(scope="module")
def html(boards: dict[str, pd.DataFrame]) -> str:
    return render_report(**boards, generated_at=GENERATED_AT, notes=NOTES)


@pytest.fixture(scope="module")
def report_url(html: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = write_report(tmp_path_factory.mktemp("home") / "reports", html)
    return path.as_uri()


@pytest.fixture(scope="module")
def browser() -> Iterator[Page]:
    with chromium(require_chromium()) as page:
        yield page


@pytest.fixture
def page(browser: Page, report_url: str) -> Page:
    """The report freshly loaded: no sorting or scrolling left over from another test."""
    browser.navigate(report_url)
    return browser


def column(page: Page, table: str, name: str) -> list[str]:
    """Texts of one column of a table, top to bottom, as displayed."""
    return page.evaluate(
        f"""(() => {{
            const table = document.querySelector({json.dumps(table)});
            const heads = [...table.tHead.rows[0].cells].map((th) => th.textContent);
            const i = heads.indexOf({json.dumps(name)});
            return [...table.tBodies[0].rows].map((row) => row.cells[i].textContent);
        }})()"""
    )


def click_header(page: Page, table: str, name: str) -> dict[str, str]:
    """Click a column header like a person would; return its aria-sort and arrow."""
    return page.evaluate(
        f"""(() => {{
            const table = document.querySelector({json.dumps(table)});
            const th = [...table.tHead.rows[0].cells]
                .find((th) => th.textContent === {json.dumps(name)});
            th.click();
            return {{
                sort: th.getAttribute("aria-sort"),
                arrow: getComputedStyle(th.querySelector("button"), "::after").content,
            }};
        }})()"""
    )


def test_page_shows_sections_counts_generated_at_and_notes(page: Page) -> None:
    headings = page.evaluate("[...document.querySelectorAll('h2')].map((h) => h.textContent)")
    nav = page.evaluate("[...document.querySelectorAll('nav a')].map((a) => a.hash)")
    header = page.evaluate("document.querySelector('header').innerText")

    assert headings == ["Overall", "Benchmarks", "Tasks", "Models", "Runs"]
    assert nav == ["#overall", "#benchmarks", "#tasks", "#models", "#runs"]
    assert "2025-01-03 12:00:00+00:00" in header
    # r1 lost arc to r1b (partly superseded); rq was quarantined (left out). The parts add
    # up to the runs counted, and the Runs table lists the same runs.
    for count in ("6 runs", "4 ranked", "1 partly superseded", "1 left out", "4 models"):
        assert count in header
    for count in ("3 tasks", "1 benchmark", *NOTES):
        assert count in header
    assert sorted(column(page, "#runs table", "run_id")) == ["r1", "r1b", "r2", "r3", "rh", "rq"]


def test_runs_table_says_what_superseded_a_run(page: Page) -> None:
    run_ids = column(page, "#runs table", "run_id")
    superseded_by = column(page, "#runs table", "superseded_by")
    standing = column(page, "#runs table", "standing")

    assert superseded_by[run_ids.index("r1")] == "r1b"
    assert standing[run_ids.index("r1")] == "partly superseded"
    assert standing[run_ids.index("rq")] == "left out"
    heads = page.evaluate(
        "[...document.querySelector('#runs table').tHead.rows[0].cells].map((th) => th.textContent)"
    )
    assert heads == RUNS_COLUMNS


def test_overall_table_lists_the_best_model_first(
    page: Page, boards: dict[str, pd.DataFrame]
) -> None:
    heads = page.evaluate("[...document.querySelectorAll('#overall th')].map((t) => t.innerText)")

    assert heads == OVERALL_COLUMNS
    assert column(page, "#overall table", "model")[0] == "m3"
    assert column(page, "#overall table", "rank") == [str(r) for r in boards["overall"]["rank"]]


def test_clicking_a_numeric_header_sorts_ascending_then_descending(
    page: Page, boards: dict[str, pd.DataFrame]
) -> None:
    scores = boards["overall"]["mean_score"]
    expected = [f"{s:.4f}" for s in scores.sort_values()]

    first = click_header(page, "#overall table", "mean_score")
    ascending = column(page, "#overall table", "mean_score")
    second = click_header(page, "#overall table", "mean_score")
    descending = column(page, "#overall table", "mean_score")

    assert (first["sort"], ascending) == ("ascending", expected)
    assert (second["sort"], descending) == ("descending", expected[::-1])
    assert (first["arrow"], second["arrow"]) == ('"▲"', '"▼"')
    others = page.evaluate("document.querySelectorAll('#overall th[aria-sort]').length")
    assert others == 1  # the initial rank indicator moved to the clicked column


def test_clicking_a_text_header_sorts_by_text_rows_intact(
    page: Page, boards: dict[str, pd.DataFrame]
) -> None:
    overall = boards["overall"].sort_values("model")

    click_header(page, "#overall table", "model")

    assert column(page, "#overall table", "model") == overall["model"].tolist()
    assert column(page, "#overall table", "rank") == [str(r) for r in overall["rank"]]


def test_numeric_sort_puts_missing_scores_last_both_ways(page: Page) -> None:
    mmlu = '#tasks [id^="task-mmlu"] table'  # the hostile model has no mmlu score

    for order in ("ascending", "descending"):
        assert click_header(page, mmlu, "primary_score")["sort"] == order
        assert column(page, mmlu, "primary_score")[-1] == "—"


def test_task_link_scrolls_to_its_chart_with_one_bar_per_model(
    page: Page, boards: dict[str, pd.DataFrame]
) -> None:
    arc = boards["tasks"].query("task_name == 'arc'")

    page.evaluate("document.querySelector('#tasks table a[href=\"#task-arc\"]').click()")
    target = page.evaluate(
        """(() => {
            const card = document.querySelector(location.hash);
            const svg = card.querySelector("svg");
            return {
                hash: location.hash,
                top: card.getBoundingClientRect().top,
                bars: [...svg.querySelectorAll("rect.bar")].map((r) => +r.dataset.score),
                label: svg.getAttribute("aria-label"),
                width: svg.getBoundingClientRect().width,
            };
        })()"""
    )

    assert target["hash"] == "#task-arc"
    assert 0 <= target["top"] < 100  # scrolled to, just under the sticky nav
    assert target["bars"] == arc["primary_score"].tolist()  # one per model, best first
    assert target["label"] == "primary_score per model on arc"
    assert target["width"] > 300


def test_model_link_in_overall_opens_that_models_scores(page: Page) -> None:
    page.evaluate("document.querySelector('#overall tbody a').click()")
    card = page.evaluate(
        """(() => {
            const card = document.querySelector(location.hash);
            return {hash: location.hash, title: card.querySelector("h3").textContent,
                    tasks: [...card.querySelectorAll("tbody tr")].length};
        })()"""
    )

    assert card == {"hash": "#model-m3-step100", "title": "m3 @ step100", "tasks": 4}


def test_hostile_names_show_as_text_and_run_nothing(page: Page, html: str) -> None:
    models = column(page, "#overall table", "model")
    seen = page.evaluate(
        """({
            scripts: document.querySelectorAll("script").length,
            images: document.images.length,
            pwned: typeof window.pwned,
            headings: [...document.querySelectorAll("#tasks h3")].map((h) => h.textContent),
            bars: [...document.querySelectorAll("svg title")].map((t) => t.textContent),
        })"""
    )

    assert HOSTILE_MODEL in models
    assert seen["scripts"] == html.count("<script") == 1
    assert (seen["images"], seen["pwned"]) == (0, "undefined")
    assert HOSTILE_TASK in seen["headings"]
    assert f"{HOSTILE_MODEL} @ main: 0.2500" in seen["bars"]


def test_page_fetches_nothing(page: Page) -> None:
    remote = page.evaluate(
        """[...document.querySelectorAll("[src], [href]")]
            .map((e) => e.getAttribute("src") ?? e.getAttribute("href"))
            .filter((url) => !url.startsWith("#") && url !== "data:,")"""
    )

    assert remote == []
    assert page.evaluate("performance.getEntriesByType('resource').length") == 0


def test_screenshot_shows_a_rendered_page(page: Page, tmp_path: Path) -> None:
    shot = page.screenshot(tmp_path / "report.png")

    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5_000


def test_html_is_self_contained(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    assert '<link rel="stylesheet"' not in html and "@font-face" not in html
    assert "Content-Security-Policy" in html
    assert HOSTILE_MODEL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_empty_leaderboards_render_no_rows_messages() -> None:
    html = render_report(
        pd.DataFrame(columns=OVERALL_COLUMNS),
        pd.DataFrame(columns=TASK_COLUMNS),
        pd.DataFrame(columns=TASK_COLUMNS),
        generated_at=GENERATED_AT,
    )

    assert html.count("No rows.") == 5  # overall, benchmarks, task index, models, runs
    assert "<table" not in html and "<svg" not in html
    assert '<b id="count-runs">0</b> runs' in html


def test_write_report_replaces_atomically(tmp_path: Path) -> None:
    reports = tmp_path / "home" / "reports"

    first = write_report(reports, "<p>old</p>")
    second = write_report(reports, "<p>new</p>")

    assert first == second == reports / "leaderboard.html"
    assert second.read_text() == "<p>new</p>"
    assert os.listdir(reports) == ["leaderboard.html"]  # no temp file left behind
    assert second.stat().st_mode & 0o777 == 0o644
