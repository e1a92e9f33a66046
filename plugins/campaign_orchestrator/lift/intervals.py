"""Confidence intervals for comparing treated and held-out recipients, in plain Python.

- one proportion: Wilson's score interval (the whiskers of each conversion rate);
- difference of proportions (absolute lift): Newcombe's hybrid score interval, his method 10
  (Newcombe 1998), built from the two Wilson intervals, no continuity correction;
- ratio of proportions (relative lift = ratio - 1): Koopman's asymptotic score interval
  (Koopman 1984), the ratios the score test does not reject, found by bisection;
- difference of means (revenue per recipient): Welch's t interval, from each group's count,
  mean and sample variance (PostgreSQL computes those in the lift SQL).

The score intervals keep their coverage with small groups and with no conversion at all, where
the Wald intervals collapse to zero width (Fagerland, Lydersen & Laake 2015 recommend exactly
these two for independent proportions). They need only the counts, which is all the lift SQL
returns. The quantiles come from :class:`statistics.NormalDist` and, for Welch's Student t,
from the regularized incomplete beta function below: no numerical library at run time.
"""

from __future__ import annotations

import math
from statistics import NormalDist

Interval = tuple[float, float]
"""(low, high); ``math.inf`` where a bound does not exist (a ratio over no conversion)."""


def z_value(confidence: float) -> float:
    """The two-sided standard normal quantile, 1.96 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson's score interval for one proportion ``successes / n`` (``n > 0``)."""
    z = z_value(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> Interval:
    """Newcombe's hybrid score interval for ``x1/n1 - x2/n2``."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, confidence)
    l2, u2 = wilson(x2, n2, confidence)
    difference = p1 - p2
    return (
        difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def _ratio_score(x1: int, n1: int, x2: int, n2: int, ratio: float) -> float:
    """Koopman's chi-square statistic for ``p1 / p2 = ratio``, at the restricted maximum
    likelihood estimates (the root of Miettinen and Nurminen's quadratic)."""
    a = ratio * (n1 + n2)
    b = -(ratio * n1 + x1 + n2 + ratio * x2)
    c = x1 + x2
    p2 = (-b - math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)
    # At a boundary (everyone converted) rounding puts an estimate a hair outside [0, 1].
    p1, p2 = min(max(ratio * p2, 0.0), 1.0), min(max(p2, 0.0), 1.0)
    statistic = 0.0
    for observed, n, p in ((x1, n1, p1), (x2, n2, p2)):
        deviation = observed - n * p
        variance = n * p * (1 - p)
        if variance <= 0:
            if abs(deviation) > 1e-9 * n:
                return math.inf
            continue
        statistic += deviation * deviation / variance
    return statistic


def koopman_ratio(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> Interval | None:
    """Koopman's score interval for ``(x1/n1) / (x2/n2)``; None when no one converted at all.

    With no conversion among the first group the interval starts at 0; among the second, it
    has no upper bound (``math.inf``).
    """
    if x1 + x2 == 0:
        return None
    critical = z_value(confidence) ** 2

    def rejected(ratio: float) -> bool:
        return _ratio_score(x1, n1, x2, n2, ratio) > critical

    def bound(inside: float, outward: float) -> float:
        """Bisect (on the log scale) between a ratio inside the interval and the first one
        found outside it, stepping by ``outward`` (a factor of 2 or 1/2)."""
        outside = inside * outward
        while not rejected(outside):
            inside, outside = outside, outside * outward
            if outside > 1e12 or outside < 1e-12:
                return 0.0 if outward < 1 else math.inf
        for _ in range(200):
            middle = math.sqrt(inside * outside)
            if rejected(middle):
                outside = middle
            else:
                inside = middle
            if abs(outside - inside) <= 1e-12 * max(inside, 1e-300):
                break
        return math.sqrt(inside * outside)

    if x1 == 0:
        # The statistic is 0 at the estimate (0), so the search starts from a ratio inside.
        return 0.0, bound(_inside(x1, n1, x2, n2), 2.0)
    if x2 == 0:
        return bound(_inside(x1, n1, x2, n2), 0.5), math.inf
    estimate = (x1 / n1) / (x2 / n2)
    return bound(estimate, 0.5), bound(estimate, 2.0)


def _inside(x1: int, n1: int, x2: int, n2: int) -> float:
    """A ratio the score test does not reject, for a group with no conversion: the ratio of
    the two proportions with half a conversion added to each."""
    return ((x1 + 0.5) / (n1 + 1)) / ((x2 + 0.5) / (n2 + 1))


def welch_difference(
    n1: int, mean1: float, variance1: float, n2: int, mean2: float, variance2: float, confidence: float = 0.95
) -> Interval | None:
    """Welch's t interval for ``mean1 - mean2``; None when it does not exist (fewer than two
    in a group, or no variation in either)."""
    if n1 < 2 or n2 < 2:
        return None
    share1, share2 = variance1 / n1, variance2 / n2
    standard_error = math.sqrt(share1 + share2)
    if standard_error == 0:
        return None
    freedom = (share1 + share2) ** 2 / (share1 * share1 / (n1 - 1) + share2 * share2 / (n2 - 1))
    half = student_t_quantile(0.5 + confidence / 2, freedom) * standard_error
    difference = mean1 - mean2
    return difference - half, difference + half


def student_t_quantile(probability: float, freedom: float) -> float:
    """The ``probability`` quantile (above 0.5) of Student's t with ``freedom`` degrees of
    freedom (any positive real, as Welch's are), by bisection on its distribution function."""
    low, high = 0.0, 1.0
    while _student_t_cdf(high, freedom) < probability:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        if _student_t_cdf(middle, freedom) < probability:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * high:
            break
    return (low + high) / 2


def _student_t_cdf(t: float, freedom: float) -> float:
    """P(T <= t) for t >= 0: 1 - I_x(freedom/2, 1/2) / 2 with x = freedom / (freedom + t^2)."""
    return 1 - 0.5 * _regularized_beta(freedom / (freedom + t * t), freedom / 2, 0.5)


def _regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (modified Lentz), on the side where it converges."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1) / (a + b + 2):
        return 1 - _regularized_beta(1 - x, b, a)
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


__all__ = [
    "Interval",
    "koopman_ratio",
    "newcombe_difference",
    "student_t_quantile",
    "welch_difference",
    "wilson",
    "z_value",
]
