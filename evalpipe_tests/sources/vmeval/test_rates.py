"""Success rates count only scored evaluations (skipped ones beside them) with Wilson
intervals; agreement figures equal ones computed by hand."""

import math

import pandas as pd
import pytest

from evalpipe.sources.vmeval.rates import (
    cohen_kappa,
    evaluator_agreement,
    success_rates,
    wilson_interval,
)


def rows(evaluator: str, scores: list[float | None], domain: str = "chess") -> list[dict]:
    return [
        {
            "dataset": "d",
            "experiment": "e",
            "model": "m",
            "domain": domain,
            "question_id": f"{domain}_{i:04d}",
            "evaluator": evaluator,
            "score": s,
            "source_file": f"{evaluator}/{domain}/{i}.json",
        }
        for i, s in enumerate(scores)
    ]


def test_wilson_interval_matches_the_formula() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4901624, abs=1e-6)
    assert high == pytest.approx(0.9433178, abs=1e-6)
    assert wilson_interval(0, 0) == (None, None)


def test_skipped_evaluations_are_counted_apart_not_as_failures() -> None:
    frame = pd.DataFrame(rows("gpt", [5, 4, 1, None, None]) + rows("gpt", [3, 4], domain="maze"))
    table = success_rates(frame).to_pandas().set_index("domain")
    chess = table.loc["chess"]
    assert (chess.n_scored, chess.n_skipped, chess.successes) == (3, 2, 2)
    assert chess.success_rate == pytest.approx(2 / 3)
    assert chess.upstream_rate == pytest.approx(2 / 5), "what the upstream plots print"
    overall = table.loc["(all)"]
    assert (overall.n_scored, overall.n_skipped, overall.successes) == (5, 2, 3)
    low, high = wilson_interval(3, 5)
    assert (overall.ci_low, overall.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_agreement_on_the_questions_both_scored() -> None:
    a = rows("human", [5, 4, 2, 1, 3, 5])
    b = rows("gpt", [4, 2, 2, 1, 4, None])
    table = evaluator_agreement(pd.DataFrame(a + b)).to_pylist()
    (row,) = table
    assert (row["evaluator_a"], row["evaluator_b"], row["n"]) == ("gpt", "human", 5)
    # success gpt: T F F F T ; human: T T F F F -> agree on 3 of 5
    assert row["percent_agreement"] == pytest.approx(60.0)
    # p_o = 0.6, p_e = 0.4*0.4 + 0.6*0.6 = 0.52 -> kappa = 0.08 / 0.48
    assert row["cohen_kappa"] == pytest.approx(0.08 / 0.48)
    # ranks gpt [4,2,2,1,4] -> [4.5,2.5,2.5,1,4.5]; human [5,4,2,1,3] -> [5,4,2,1,3]
    ra, rb = [4.5, 2.5, 2.5, 1, 4.5], [5, 4, 2, 1, 3]
    ma, mb = sum(ra) / 5, sum(rb) / 5
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    assert row["spearman_rho"] == pytest.approx(cov / var)


def test_kappa_is_undefined_when_both_raters_never_vary() -> None:
    assert cohen_kappa([True, True], [True, True]) is None
