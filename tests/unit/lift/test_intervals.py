"""The lift intervals against independent implementations: statsmodels (Wilson, Newcombe's
hybrid score, Koopman's score for the ratio) and scipy (Student's t, Welch's interval)."""

from __future__ import annotations

import math
import random
import warnings

import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from campaign_orchestrator.lift.intervals import (
    koopman_ratio,
    newcombe_difference,
    student_t_quantile,
    welch_difference,
    wilson,
    z_value,
)

# (treated conversions, treated n, held-out conversions, held-out n): large and small groups,
# rare and common conversions, no conversion on one side, everyone converting.
CASES = [
    (10, 100, 5, 100), (120, 1000, 80, 1000), (1, 12, 1, 11), (7, 7000, 1, 900), (412, 6628, 31, 736),
    (0, 50, 3, 40), (3, 40, 0, 50), (0, 30, 0, 30), (50, 50, 40, 50), (40, 50, 50, 50), (2, 10, 9, 10),
    (1, 1_000_000, 3, 100_000),
]


def reference(x1, n1, x2, n2, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # statsmodels divides by zero on the edges
        low, high = confint_proportions_2indep(x1, n1, x2, n2, **options)
    return float(low), float(high)


@pytest.mark.parametrize("x1, n1, x2, n2", CASES)
def test_wilson_and_newcombe_equal_statsmodels(x1, n1, x2, n2) -> None:
    assert wilson(x1, n1) == pytest.approx(tuple(map(float, proportion_confint(x1, n1, method="wilson"))), abs=1e-12)
    assert newcombe_difference(x1, n1, x2, n2) == pytest.approx(
        reference(x1, n1, x2, n2, method="newcomb", compare="diff"), abs=1e-12
    )


@pytest.mark.parametrize("x1, n1, x2, n2", [c for c in CASES if c[0] and c[2] and c[2] < c[3]])
def test_koopman_ratio_equals_statsmodels_score_interval(x1, n1, x2, n2) -> None:
    expected = reference(x1, n1, x2, n2, method="score", compare="ratio", correction=False)
    assert koopman_ratio(x1, n1, x2, n2) == pytest.approx(expected, rel=1e-8)


def test_koopman_ratio_without_conversions_on_one_side() -> None:
    # None among the treated: the ratio may be 0; the upper bound is statsmodels'.
    low, high = koopman_ratio(0, 50, 3, 40)
    assert low == 0 and high == pytest.approx(reference(0, 50, 3, 40, method="score", compare="ratio", correction=False)[1])
    # None among the held out: no upper bound.
    low, high = koopman_ratio(3, 40, 0, 50)
    assert high == math.inf
    assert low == pytest.approx(reference(3, 40, 0, 50, method="score", compare="ratio", correction=False)[0])
    assert koopman_ratio(0, 30, 0, 30) is None


def test_koopman_ratio_when_everyone_converted_on_one_side() -> None:
    # statsmodels' closed form loses precision here (its lower bound is rejected by its own
    # score test); the bound is where that test's statistic reaches the critical value.
    from statsmodels.stats.proportion import score_test_proportions_2indep

    low, high = koopman_ratio(50, 50, 40, 50)
    for bound in (low, high):
        statistic = score_test_proportions_2indep(50, 50, 40, 50, value=bound, compare="ratio", correction=False)
        assert statistic.statistic**2 == pytest.approx(z_value(0.95) ** 2, rel=1e-7)
    assert koopman_ratio(50, 50, 50, 50)[0] < 1 < koopman_ratio(50, 50, 50, 50)[1]


@pytest.mark.parametrize("freedom", [1, 1.5, 2.7, 5, 13.3, 80, 1e4])
@pytest.mark.parametrize("probability", [0.9, 0.975, 0.995])
def test_student_t_quantile_equals_scipy(freedom, probability) -> None:
    assert student_t_quantile(probability, freedom) == pytest.approx(stats.t.ppf(probability, freedom), rel=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_welch_interval_equals_scipy(seed: int) -> None:
    rng = random.Random(seed)
    treated = [rng.choice([0, 0, 0, rng.uniform(20, 400)]) for _ in range(rng.randint(3, 400))]
    held = [rng.choice([0, 0, 0, 0, rng.uniform(20, 300)]) for _ in range(rng.randint(3, 60))]
    expected = stats.ttest_ind(treated, held, equal_var=False).confidence_interval(0.95)
    moments = [(len(v), sum(v) / len(v), stats.tvar(v)) for v in (treated, held)]
    assert welch_difference(*moments[0], *moments[1]) == pytest.approx((expected.low, expected.high), rel=1e-9)


def test_welch_needs_two_recipients_and_some_variation() -> None:
    assert welch_difference(1, 5.0, 0.0, 10, 2.0, 1.0) is None
    assert welch_difference(10, 0.0, 0.0, 10, 0.0, 0.0) is None
