"""Success rates and evaluator agreement over the evaluations of healthy data roots.

Unlike the upstream plots (which read a missing score as 0, so every skipped or failed
evaluation counts as a failure), a rate here is successes over the evaluations that were
scored; the skipped ones are counted beside it (`n_skipped`), and `upstream_rate` shows the
figure the plots would print. Success is a score of 4 or more.
"""

from __future__ import annotations

import math
from itertools import combinations

import pandas as pd
import pyarrow as pa

Z_95 = 1.959963984540054
KEY = ["dataset", "experiment", "model", "domain", "question_id"]
"""Two evaluators are compared on the same question of the same model's run set."""

SUCCESS_RATES = pa.schema(
    [
        ("evaluator", pa.string()),
        ("model", pa.string()),
        ("domain", pa.string()),
        ("n_scored", pa.int64()),
        ("n_skipped", pa.int64()),
        ("successes", pa.int64()),
        ("success_rate", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("upstream_rate", pa.float64()),
        ("mean_score", pa.float64()),
    ]
)
AGREEMENT = pa.schema(
    [
        ("evaluator_a", pa.string()),
        ("evaluator_b", pa.string()),
        ("n", pa.int64()),
        ("percent_agreement", pa.float64()),
        ("cohen_kappa", pa.float64()),
        ("spearman_rho", pa.float64()),
    ]
)
ALL_DOMAINS = "(all)"
"""`domain` of the per-(evaluator, model) overall rows."""


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a binomial proportion (None, None when n is 0)."""
    if n == 0:
        return None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def success_rates(evaluations: pd.DataFrame) -> pa.Table:
    """Per (evaluator, model, domain), and per (evaluator, model) over all domains (domain
    `(all)`): scored and skipped counts, successes, rate with its 95% Wilson interval."""
    rows = []
    if not evaluations.empty:
        frame = evaluations.assign(_all=ALL_DOMAINS)
        for domain_column in ("domain", "_all"):
            for (evaluator, model, domain), group in frame.groupby(
                ["evaluator", "model", domain_column], dropna=False, sort=True
            ):
                scored = group[group["score"].notna()]
                n, wins = len(scored), int((scored["score"] >= 4).sum())
                low, high = wilson_interval(wins, n)
                rows.append(
                    {
                        "evaluator": evaluator,
                        "model": model,
                        "domain": domain,
                        "n_scored": n,
                        "n_skipped": len(group) - n,
                        "successes": wins,
                        "success_rate": wins / n if n else None,
                        "ci_low": low,
                        "ci_high": high,
                        "upstream_rate": wins / len(group),
                        "mean_score": float(scored["score"].mean()) if n else None,
                    }
                )
    return pa.Table.from_pylist(rows, SUCCESS_RATES)


def cohen_kappa(a: list[bool], b: list[bool]) -> float | None:
    """Cohen's kappa of two raters' yes/no labels (None when chance agreement is total)."""
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa_yes, pb_yes = sum(a) / n, sum(b) / n
    expected = pa_yes * pb_yes + (1 - pa_yes) * (1 - pb_yes)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def spearman_rho(a: pd.Series, b: pd.Series) -> float | None:
    """Spearman's rank correlation (average ranks for ties; None when either side is constant
    or there are fewer than two pairs)."""
    if len(a) < 2:
        return None
    ra, rb = a.rank().to_numpy(), b.rank().to_numpy()
    da, db = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt((da * da).sum() * (db * db).sum())
    return None if denominator == 0 else float((da * db).sum() / denominator)


def evaluator_agreement(evaluations: pd.DataFrame) -> pa.Table:
    """For each pair of evaluators, on the questions both scored: n, percent agreement and
    Cohen's kappa on success, Spearman's rho on the scores. A question an evaluator scored
    twice (two files) counts once, with its first file by path."""
    rows = []
    scored = evaluations[evaluations["score"].notna()] if not evaluations.empty else evaluations
    if not scored.empty:
        scored = scored.sort_values("source_file").drop_duplicates(["evaluator", *KEY])
        by_evaluator = {e: g.set_index(KEY)["score"] for e, g in scored.groupby("evaluator")}
        for a, b in combinations(sorted(by_evaluator), 2):
            joined = pd.concat([by_evaluator[a], by_evaluator[b]], axis=1, join="inner")
            joined.columns = ["a", "b"]
            success_a = (joined["a"] >= 4).tolist()
            success_b = (joined["b"] >= 4).tolist()
            n = len(joined)
            agree = sum(x == y for x, y in zip(success_a, success_b, strict=True))
            rows.append(
                {
                    "evaluator_a": a,
                    "evaluator_b": b,
                    "n": n,
                    "percent_agreement": 100 * agree / n if n else None,
                    "cohen_kappa": cohen_kappa(success_a, success_b),
                    "spearman_rho": spearman_rho(joined["a"], joined["b"]),
                }
            )
    return pa.Table.from_pylist(rows, AGREEMENT)


def healthy_evaluations(runs: pd.DataFrame, evaluations: pd.DataFrame) -> pd.DataFrame:
    """The evaluations of data roots whose status is `ok` (`runs` as `read_runs_with_status`
    gives it: a vmeval data root's row has `source` vmeval and the dataset in `dump`)."""
    healthy = runs.loc[(runs["source"] == "vmeval") & (runs["status"] == "ok"), "dump"]
    return evaluations[evaluations["dataset"].isin(set(healthy))]
