"""`EVALPIPE_SCANNER`: `auto` by default, case and spaces forgiven, anything else an error that
names the variable."""

import pytest

from evalpipe.core.config import DEFAULT_SCANNER, load_scanner_choice


def test_the_scanner_choice_defaults_to_auto() -> None:
    assert load_scanner_choice({}) == load_scanner_choice({"EVALPIPE_SCANNER": ""}) == "auto"
    assert DEFAULT_SCANNER == "auto"


@pytest.mark.parametrize(("raw", "choice"), [("c", "c"), (" Python ", "python"), ("AUTO", "auto")])
def test_the_scanner_choice_is_read_forgivingly(raw: str, choice: str) -> None:
    assert load_scanner_choice({"EVALPIPE_SCANNER": raw}) == choice


def test_an_unknown_scanner_is_an_error_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="EVALPIPE_SCANNER must be one of auto, c, python"):
        load_scanner_choice({"EVALPIPE_SCANNER": "rust"})
