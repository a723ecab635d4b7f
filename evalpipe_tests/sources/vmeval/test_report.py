"""The report page's VMEvalKit section, as a person sees it in headless Chromium: a chart per
domain with bars as long as the rates, a sortable table, hostile names shown as text."""

from collections.abc import Iterator
from datetime import datetime, timezone

import pandas as pd
import pytest

from evalpipe.results.leaderboard import OVERALL_COLUMNS, TASK_COLUMNS
from evalpipe.results.report import render_report, write_report
from evalpipe.sources.vmeval.rates import success_rates
from evalpipe.sources.vmeval.report import success_rates_section
from evalpipe_tests.chromium import Page, chromium, require_chromium

HOSTILE_MODEL = '<img src=x onerror="window.pwned=1">'


def evaluations() -> pd.DataFrame:
    rows = []
    for model, scores in {"luma": [5, 4, 1, None], HOSTILE_MODEL: [2, 2, 5, 4]}.items():
        for domain in ("chess", "mirror_clock"):
            for i, score in enumerate(scores):
                rows.append(
                    {
                        "evaluator": "gpt4o-eval",
                        "model": model,
                        "domain": domain,
                        "score": score,
                        "question_id": f"{domain}_{i:04d}",
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    section = success_rates_section(success_rates(evaluations()).to_pandas())
    html = render_report(
        pd.DataFrame(columns=OVERALL_COLUMNS),
        pd.DataFrame(columns=TASK_COLUMNS),
        pd.DataFrame(columns=TASK_COLUMNS),
        generated_at=datetime(2025, 1, 3, tzinfo=timezone.utc),
        sections=[section],
    )
    path = write_report(tmp_path_factory.mktemp("home") / "reports", html)
    with chromium(require_chromium()) as browser:
        browser.navigate(path.as_uri())
        yield browser


def test_one_chart_per_domain_with_bars_as_long_as_the_rates(page: Page) -> None:
    seen = page.evaluate(
        """({
            headings: [...document.querySelectorAll("#vmeval h3")].map((h) => h.textContent),
            bars: [...document.querySelectorAll("#vmeval svg rect.bar")].map(
                (r) => [Number(r.getAttribute("width")), Number(r.dataset.rate)]),
            pwned: typeof window.pwned,
        })"""
    )
    assert seen["headings"] == ["All domains", "chess", "mirror_clock"]
    assert len(seen["bars"]) == 6
    assert all(width == pytest.approx(360 * rate, abs=0.06) for width, rate in seen["bars"])
    assert seen["pwned"] == "undefined", "a model name is text, never markup"


def test_the_table_sorts_by_success_rate_numerically(page: Page) -> None:
    rates = page.evaluate(
        """(() => {
            const table = document.querySelector("#vmeval table");
            const heads = [...table.tHead.rows[0].cells];
            const th = heads.find((h) => h.textContent === "success_rate");
            th.click();
            return [...table.tBodies[0].rows].map((r) => Number(r.cells[th.cellIndex].dataset.sort));
        })()"""
    )
    assert rates == sorted(rates) and len(rates) == 6


def test_no_section_without_rates() -> None:
    assert success_rates_section(pd.DataFrame(columns=["domain"])) == ""


def test_section_is_static_html_with_names_escaped() -> None:
    section = success_rates_section(success_rates(evaluations()).to_pandas())
    assert "<script" not in section and "style=" not in section, "the page's CSP allows neither"
    assert "<img" not in section and "&lt;img src=x" in section
