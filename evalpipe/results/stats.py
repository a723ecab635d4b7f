"""Paired significance tests for two runs of the same task, paired on the instance (doc_id).

Two models evaluated on the same documents share per-document difficulty, so comparing them
instance by instance (paired) is far more sensitive than comparing two aggregate scores.

Conventions used throughout:

* ``a`` is the baseline, ``b`` the candidate; ``diff = mean_b - mean_a`` (positive: b is better
  on a higher-is-better metric).
* The bootstrap p-value is two-sided and obtained by inverting the percentile interval:
  ``p = min(1, 2 * min(k_le + 1, k_ge + 1) / (B + 1))`` where ``k_le``/``k_ge`` count resampled
  diffs ``<= 0`` / ``>= 0``. It agrees with the reported interval (``p < 1 - confidence`` roughly
  when 0 lies outside it) and, thanks to the +1s, is never exactly 0.

Pure numpy/pandas: scipy is only used by the tests, as a reference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

# Resampled elements per block (~3 MB of indices + gathered values): cache-sized blocks are
# faster than huge ones and bound memory whatever the sample size.
_BLOCK_ELEMENTS = 1 << 18
# Resampled diffs within this (scaled) distance of 0 count as 0: float noise in a macro
# average must not decide on which side of 0 a tie falls.
_ZERO_TOLERANCE = 1e-12


@dataclass(frozen=True)
class PairedTestResult:
    """Outcome of `paired_bootstrap`; means and diff are macro over strata when stratified."""

    n: int
    n_strata: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float
    iterations: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class McNemarResult:
    """Outcome of `mcnemar_exact`: ``n01`` = a wrong & b right, ``n10`` = a right & b wrong."""

    n: int
    n01: int
    n10: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Paired:
    """Two runs aligned on their key: ``a[i]`` and ``b[i]`` belong to the same instance.

    ``only_left``/``only_right`` count instances missing from the other run, so a caller can
    report (or refuse) a comparison over a partial overlap instead of silently shrinking it.
    """

    keys: pd.DataFrame
    a: np.ndarray
    b: np.ndarray
    strata: np.ndarray | None
    only_left: int
    only_right: int

    @property
    def n(self) -> int:
        return len(self.a)


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    *,
    iterations: int = 10_000,
    seed: int = 0,
    strata: np.ndarray | None = None,
    confidence: float = 0.95,
) -> PairedTestResult:
    """Paired (optionally stratified) bootstrap of ``mean(b) - mean(a)``.

    Instances are resampled as pairs, which keeps the per-document correlation between runs.
    With ``strata`` each stratum is resampled on its own with its own size, and the statistic
    is the macro average of per-stratum means, which is how suite aggregates (e.g. MMLU over
    subjects) are scored; resampling the pool would let large strata swamp small ones.
    """
    a_arr, b_arr = _validated_pair(a, b)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    groups = _strata_groups(strata, len(a_arr))

    mean_a = float(np.mean([a_arr[g].mean() for g in groups]))
    mean_b = float(np.mean([b_arr[g].mean() for g in groups]))
    boot = _bootstrap_diffs([b_arr[g] - a_arr[g] for g in groups], iterations, seed)

    alpha = 1 - confidence
    ci_low, ci_high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return PairedTestResult(
        n=len(a_arr),
        n_strata=len(groups),
        mean_a=mean_a,
        mean_b=mean_b,
        diff=mean_b - mean_a,
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        p_value=_two_sided_p(boot),
        confidence=confidence,
        iterations=iterations,
        seed=seed,
    )


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> McNemarResult:
    """Exact McNemar test for 0/1 metrics: a two-sided binomial test on the discordant pairs.

    Only pairs where the runs disagree carry information; under H0 each disagreement is equally
    likely to go either way, so ``min(n01, n10) ~ Binomial(n01 + n10, 1/2)``.
    """
    a_arr, b_arr = _validated_pair(a, b)
    for name, values in (("a", a_arr), ("b", b_arr)):
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"mcnemar_exact needs 0/1 values; {name} has other values")
    n01 = int(np.count_nonzero((a_arr == 0) & (b_arr == 1)))
    n10 = int(np.count_nonzero((a_arr == 1) & (b_arr == 0)))
    p_value = min(1.0, 2 * _binom_half_cdf(min(n01, n10), n01 + n10))
    return McNemarResult(n=len(a_arr), n01=n01, n10=n10, p_value=p_value)


def pair_instances(
    left: pd.DataFrame,
    right: pd.DataFrame,
    key: str = "doc_id",
    value: str = "value",
    stratum: str | None = None,
) -> Paired:
    """Inner-join two runs' per-instance values on ``key`` (plus ``stratum``), sorted by key.

    The stratum is part of the join key because doc_ids restart per member task in aggregates.
    Duplicated keys are rejected: a many-to-many join would silently weight some instances.
    """
    keys = [key] if stratum is None else [stratum, key]
    sides = {"left": left, "right": right}
    for side, frame in sides.items():
        missing = sorted(set([*keys, value]) - set(frame.columns))
        if missing:
            raise ValueError(f"{side} frame lacks column(s) {missing}")
        if frame.duplicated(keys).any():
            raise ValueError(f"{side} frame has duplicated {keys} rows")

    merged = pd.merge(
        left[[*keys, value]].rename(columns={value: "_a"}),
        right[[*keys, value]].rename(columns={value: "_b"}),
        on=keys,
        how="outer",
        indicator=True,
    )
    both = merged[merged["_merge"] == "both"].sort_values(keys, kind="stable")
    return Paired(
        keys=both[keys].reset_index(drop=True),
        a=both["_a"].to_numpy(dtype=float),
        b=both["_b"].to_numpy(dtype=float),
        strata=None if stratum is None else both[stratum].to_numpy(),
        only_left=int((merged["_merge"] == "left_only").sum()),
        only_right=int((merged["_merge"] == "right_only").sum()),
    )


def _validated_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a_arr = np.asarray(a, dtype=float)
    b_arr = np.asarray(b, dtype=float)
    if a_arr.ndim != 1 or b_arr.ndim != 1:
        raise ValueError("a and b must be one-dimensional")
    if len(a_arr) != len(b_arr):
        raise ValueError(
            f"a and b must be aligned pairs; lengths differ ({len(a_arr)} != {len(b_arr)})"
        )
    if len(a_arr) == 0:
        raise ValueError("a and b are empty: nothing to compare")
    if np.isnan(a_arr).any() or np.isnan(b_arr).any():
        raise ValueError("a and b must not contain NaN; drop or impute missing instances first")
    return a_arr, b_arr


def _strata_groups(strata: np.ndarray | None, n: int) -> list[np.ndarray]:
    """Index arrays, one per stratum (in sorted label order); the whole sample if unstratified."""
    if strata is None:
        return [np.arange(n)]
    labels = np.asarray(strata)
    if labels.shape != (n,):
        raise ValueError(f"strata must have one label per pair ({n}), got shape {labels.shape}")
    _, codes = np.unique(labels, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)


def _bootstrap_diffs(diffs: list[np.ndarray], iterations: int, seed: int) -> np.ndarray:
    """Macro mean over strata of resampled per-stratum mean diffs, one value per iteration.

    Iterations run in blocks, one stratum at a time, so at most ~`_BLOCK_ELEMENTS` resampled
    indices live at once.
    """
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // max(len(d) for d in diffs))
    out = np.empty(iterations)
    for start in range(0, iterations, block):
        rows = min(block, iterations - start)
        acc = np.zeros(rows)
        for d in diffs:
            idx = rng.integers(0, len(d), size=(rows, len(d)), dtype=np.int32)
            acc += d[idx].mean(axis=1)
        out[start : start + rows] = acc / len(diffs)
    return out


def _two_sided_p(boot: np.ndarray) -> float:
    """Percentile-inversion p-value, with +1 smoothing so it is never exactly 0."""
    tol = _ZERO_TOLERANCE * max(1.0, float(np.abs(boot).max()))
    k_le = int(np.count_nonzero(boot <= tol))
    k_ge = int(np.count_nonzero(boot >= -tol))
    return min(1.0, 2 * (min(k_le, k_ge) + 1) / (len(boot) + 1))


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), summed in log space so large n cannot overflow."""
    if n == 0:
        return 1.0
    i = np.arange(1, k + 1)
    log_terms = np.concatenate(([0.0], np.cumsum(np.log(n - i + 1) - np.log(i))))
    top = log_terms.max()
    return math.exp(top - n * math.log(2) + math.log(np.exp(log_terms - top).sum()))
