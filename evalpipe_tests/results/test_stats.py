"""Paired significance tests: exactness against scipy, calibration by simulation, edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from evalpipe.results.stats import mcnemar_exact, pair_instances, paired_bootstrap


def _correlated_binary(rng: np.random.Generator, n: int, p01: float, p10: float):
    """0/1 pairs with P(a=0,b=1)=p01 and P(a=1,b=0)=p10, so the true diff is p01 - p10."""
    u = rng.random(n)
    a = np.where(u < p01, 0, np.where(u < p01 + p10, 1, rng.integers(0, 2, n)))
    b = np.where(u < p01, 1, np.where(u < p01 + p10, 0, a))
    return a.astype(float), b.astype(float)


@pytest.mark.parametrize(
    ("n01", "n10", "n_same"),
    [(0, 0, 10), (1, 0, 5), (3, 9, 20), (9, 3, 0), (12, 12, 4), (40, 61, 300), (0, 25, 25)],
)
def test_mcnemar_matches_scipy_binomtest(n01: int, n10: int, n_same: int) -> None:
    a = np.array([0] * n01 + [1] * n10 + [1] * n_same)
    b = np.array([1] * n01 + [0] * n10 + [1] * n_same)

    result = mcnemar_exact(a, b)

    assert (result.n, result.n01, result.n10) == (n01 + n10 + n_same, n01, n10)
    expected = 1.0 if n01 + n10 == 0 else binomtest(min(n01, n10), n01 + n10, 0.5).pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-9)


def test_mcnemar_large_discordance_stays_finite() -> None:
    a = np.array([0] * 3000 + [1] * 2000)
    b = 1 - a

    result = mcnemar_exact(a, b)

    assert result.p_value == pytest.approx(binomtest(2000, 5000, 0.5).pvalue, rel=1e-8)
    assert 0 < result.p_value < 1e-40


def test_mcnemar_rejects_non_binary_values() -> None:
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact(np.array([0, 1, 0.5]), np.array([0, 1, 1]))


def test_bootstrap_direction_and_fields() -> None:
    a = np.array([0.0, 0.0, 1.0, 0.0])
    b = np.array([1.0, 1.0, 1.0, 0.0])

    result = paired_bootstrap(a, b, iterations=500)

    assert (result.n, result.n_strata) == (4, 1)
    assert (result.mean_a, result.mean_b, result.diff) == (0.25, 0.75, 0.5)
    assert result.to_dict()["diff"] == 0.5
    assert set(result.to_dict()) >= {"ci_low", "ci_high", "p_value", "iterations", "seed"}


def test_bootstrap_ci_contains_truth_and_matches_normal_approximation() -> None:
    rng = np.random.default_rng(7)
    a, b = _correlated_binary(rng, 5000, p01=0.15, p10=0.10)
    d = b - a

    result = paired_bootstrap(a, b, iterations=4000, seed=3)

    assert result.ci_low < 0.05 < result.ci_high
    half = 1.959964 * d.std(ddof=1) / np.sqrt(len(d))
    assert result.ci_low == pytest.approx(d.mean() - half, abs=0.1 * half)
    assert result.ci_high == pytest.approx(d.mean() + half, abs=0.1 * half)
    assert result.p_value < 0.001


def test_bootstrap_coverage_simulation() -> None:
    rng = np.random.default_rng(2024)
    true_diff = 0.08 - 0.05
    hits = 0
    sims = 300
    for i in range(sims):
        a, b = _correlated_binary(rng, 300, p01=0.08, p10=0.05)
        result = paired_bootstrap(a, b, iterations=1000, seed=i)
        hits += result.ci_low <= true_diff <= result.ci_high
    assert 0.90 <= hits / sims <= 0.99


def test_p_value_never_zero_and_one_without_difference() -> None:
    ones = np.ones(50)

    separated = paired_bootstrap(np.zeros(50), ones, iterations=999)
    identical = paired_bootstrap(ones, ones, iterations=999)

    assert separated.p_value == pytest.approx(2 / 1000)
    assert (separated.ci_low, separated.ci_high) == (1.0, 1.0)
    assert identical.p_value == 1.0


def test_bootstrap_is_reproducible_with_seed() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(200), rng.random(200)

    first = paired_bootstrap(a, b, iterations=2000, seed=11)
    again = paired_bootstrap(a, b, iterations=2000, seed=11)
    other = paired_bootstrap(a, b, iterations=2000, seed=12)

    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_single_stratum_equals_plain_bootstrap() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(300), rng.random(300)

    plain = paired_bootstrap(a, b, iterations=3000, seed=5)
    stratified = paired_bootstrap(a, b, iterations=3000, seed=5, strata=np.full(300, "arc"))

    assert stratified == plain


def test_stratified_statistic_is_macro_over_strata() -> None:
    # Stratum x (4 docs): a = 1, 1, 1, 1 and b = 1, 1, 1, 0 -> means 1.0 and 0.75.
    # Stratum y (2 docs): a = 0, 0 and b = 1, 1 -> means 0.0 and 1.0.
    # Macro: a = 0.5, b = 0.875, diff = 0.375.  Micro: a = 4/6, b = 5/6, diff = 1/6.
    a = np.array([1, 1, 1, 1, 0, 0.0])
    b = np.array([1, 1, 1, 0, 1, 1.0])
    strata = np.array(["x", "x", "x", "x", "y", "y"])

    macro = paired_bootstrap(a, b, iterations=2000, strata=strata)
    micro = paired_bootstrap(a, b, iterations=2000)

    assert (macro.mean_a, macro.mean_b, macro.diff) == (0.5, 0.875, 0.375)
    assert micro.mean_a == pytest.approx(4 / 6)
    assert micro.diff == pytest.approx(1 / 6)
    # Stratum y never varies (both docs flip 0 -> 1), so only x spreads the macro diff,
    # in steps of 0.25 / 2: resampled x diffs lie in {0, -0.25, ..., -1}.
    assert 0.0 <= macro.ci_low < macro.diff < macro.ci_high == 0.5


def test_stratified_bootstrap_holds_stratum_sizes_fixed() -> None:
    # Each stratum is constant within itself, so resampling within strata cannot move the
    # macro diff; pooled resampling of the same data would.
    a = np.zeros(30)
    b = np.array([1.0] * 10 + [0.0] * 20)
    strata = np.array(["x"] * 10 + ["y"] * 20)

    result = paired_bootstrap(a, b, iterations=500, strata=strata)

    assert result.ci_low == result.ci_high == result.diff == 0.5


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        (np.zeros(3), np.zeros(4), {}, "lengths differ"),
        (np.array([]), np.array([]), {}, "empty"),
        (np.array([0.0, np.nan]), np.zeros(2), {}, "NaN"),
        (np.zeros((2, 2)), np.zeros((2, 2)), {}, "one-dimensional"),
        (np.zeros(3), np.zeros(3), {"strata": np.array(["x", "y"])}, "one label per pair"),
        (np.zeros(3), np.zeros(3), {"iterations": 0}, "iterations"),
        (np.zeros(3), np.zeros(3), {"confidence": 1.0}, "confidence"),
    ],
)
def test_bootstrap_rejects_invalid_inputs(a, b, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b, **kwargs)


@pytest.mark.parametrize(("a", "b"), [(np.zeros(3), np.zeros(2)), (np.array([]), np.array([]))])
def test_mcnemar_rejects_invalid_shapes(a, b) -> None:
    with pytest.raises(ValueError, match=r"lengths differ|empty"):
        mcnemar_exact(a, b)


def test_pair_instances_aligns_and_counts_unmatched() -> None:
    left = pd.DataFrame({"doc_id": [3, 1, 2, 7], "value": [0.3, 0.1, 0.2, 0.7]})
    right = pd.DataFrame({"doc_id": [2, 3, 4, 5, 1], "value": [2.0, 3.0, 4.0, 5.0, 1.0]})

    paired = pair_instances(left, right)

    assert paired.keys["doc_id"].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(paired.a, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(paired.b, [1.0, 2.0, 3.0])
    assert (paired.n, paired.only_left, paired.only_right) == (3, 1, 2)
    assert paired.strata is None


def test_pair_instances_joins_on_stratum_too() -> None:
    left = pd.DataFrame({"task": ["x", "x", "y"], "doc_id": [0, 1, 0], "acc": [1, 0, 1]})
    right = pd.DataFrame({"task": ["y", "x", "y"], "doc_id": [0, 0, 1], "acc": [0, 1, 1]})

    paired = pair_instances(left, right, value="acc", stratum="task")

    assert paired.keys.to_dict("list") == {"task": ["x", "y"], "doc_id": [0, 0]}
    np.testing.assert_array_equal(paired.strata, ["x", "y"])
    np.testing.assert_array_equal(paired.a, [1.0, 1.0])
    np.testing.assert_array_equal(paired.b, [1.0, 0.0])
    assert (paired.only_left, paired.only_right) == (1, 1)


def test_pair_instances_rejects_duplicates_and_missing_columns() -> None:
    good = pd.DataFrame({"doc_id": [1, 2], "value": [0.0, 1.0]})
    with pytest.raises(ValueError, match="right frame has duplicated"):
        pair_instances(good, pd.DataFrame({"doc_id": [1, 1], "value": [0.0, 1.0]}))
    with pytest.raises(ValueError, match=r"left frame lacks column\(s\) \['value'\]"):
        pair_instances(good.drop(columns="value"), good)
