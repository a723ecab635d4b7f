"""One renderer for every table a person reads: CLI output and UI previews."""

import json

import pandas as pd

from evalpipe.core.output import frame_markdown, render


def test_markdown_previews_show_first_rows_escape_pipes_and_count_the_rest() -> None:
    frame = pd.DataFrame({"model": ["a|b", None, "c"], "score": [0.123456, float("nan"), 1.0]})
    lines = frame_markdown(frame, limit=2).splitlines()
    assert lines[0] == "| model | score |"
    assert lines[2] == r"| a\|b | 0.123456 |"
    assert lines[3] == "| null | null |"
    assert lines[-1] == "_1 more rows_"
    assert frame_markdown(pd.DataFrame()) == "_no rows_"


def test_long_cells_are_cut_for_previews() -> None:
    text = frame_markdown(pd.DataFrame({"detail": ["x" * 200]}), max_chars=10)
    assert "| xxxxxxxxx… |" in text


def test_render_speaks_every_format() -> None:
    columns, rows = ["name", "value"], [["a", 1.5], ["b", None]]
    assert json.loads(render(columns, rows, "json")) == [
        {"name": "a", "value": 1.5},
        {"name": "b", "value": None},
    ]
    assert render(columns, rows, "csv").splitlines() == ["name,value", "a,1.5", "b,"]
    table = render(columns, rows, "table").splitlines()
    assert table[0].split() == ["name", "value"] and table[2].split() == ["a", "1.5000"]


def test_decimals_render_as_json_numbers() -> None:
    from decimal import Decimal

    assert json.loads(render(["x"], [(Decimal("1.50"),)], "json")) == [{"x": 1.5}]
