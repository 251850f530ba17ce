"""Intervals, correlations, bootstrap and permutation tests. Pure: imports nothing of the project.

Every function is deterministic given its ``seed``; intervals are two-sided at ``confidence``.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats as _sps

ArrayLike = Sequence[float] | np.ndarray


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well behaved at 0/n and n/n, unlike Wald)."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return (0.0, 1.0)
    z = _sps.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    lo = 0.0 if successes == 0 else max(0.0, float(centre - half))  # exact bounds: no 1e-17 residue
    hi = 1.0 if successes == n else min(1.0, float(centre + half))
    return (lo, hi)


def mean_interval(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of independent values (e.g. per-seed success rates)."""
    x = _finite(values, "values")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = float(_sps.sem(x) * _sps.t.ppf(0.5 + confidence / 2, len(x) - 1))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Correlation:
    """A correlation coefficient with its bootstrap interval and permutation p-value."""

    method: str
    coefficient: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int

    def as_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


def _coefficient(method: str) -> Callable[[np.ndarray, np.ndarray], float]:
    if method == "spearman":
        return lambda a, b: float(_sps.spearmanr(a, b).statistic)
    if method == "pearson":
        return lambda a, b: float(_sps.pearsonr(a, b).statistic)
    raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")


def correlation(
    x: ArrayLike,
    y: ArrayLike,
    method: str = "spearman",
    n_boot: int = 2000,
    n_perm: int = 5000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Correlation:
    """Correlation of paired ``x``, ``y`` with a percentile-bootstrap CI and a two-sided permutation p.

    With a handful of points some bootstrap resamples repeat one point: they have no coefficient and
    are dropped (scipy's warning about them is silenced; one about ``x``, ``y`` themselves is not).
    """
    a, b = _paired(x, y)
    coef = _coefficient(method)
    r = coef(a, b)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _sps.ConstantInputWarning)
        boots = [coef(a[i], b[i]) for i in (rng.integers(0, len(a), len(a)) for _ in range(n_boot))]
    boots = np.asarray([v for v in boots if np.isfinite(v)])
    lo, hi = (np.quantile(boots, [(1 - confidence) / 2, (1 + confidence) / 2]) if len(boots) else (np.nan, np.nan))
    p = permutation_p_value(a, b, coef, n_perm=n_perm, seed=seed)
    return Correlation(method, r, float(lo), float(hi), p, len(a))


def permutation_p_value(
    x: np.ndarray, y: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], float], n_perm: int = 5000, seed: int = 0
) -> float:
    """Two-sided permutation p-value of ``statistic(x, y)`` under shuffling ``y`` (with the +1 correction)."""
    rng = np.random.default_rng(seed)
    observed = abs(statistic(x, y))
    null = np.array([abs(statistic(x, rng.permutation(y))) for _ in range(n_perm)])
    return float((1 + np.sum(null >= observed - 1e-12)) / (n_perm + 1))


def critical_spearman(n: int, alpha: float = 0.05, n_perm: int = 200_000, seed: int = 0) -> float:
    """The smallest |Spearman| that reaches two-sided p <= ``alpha`` with ``n`` untied pairs: what a study
    of ``n`` backbones can detect at all. Exact over all n! rankings for n <= 9, Monte Carlo above."""
    if n < 3:
        raise ValueError(f"need n >= 3 pairs, got n={n}")
    if n <= 9:
        perms = np.array(list(itertools.permutations(range(n))), dtype=float)
    else:
        rng = np.random.default_rng(seed)
        perms = np.argsort(rng.random((n_perm, n)), axis=1).astype(float)
    ranks = np.arange(n, dtype=float)
    rho = np.abs(1 - 6 * ((perms - ranks) ** 2).sum(1) / (n * (n**2 - 1)))
    values = np.unique(np.round(rho, 12))
    tail = np.array([np.mean(rho >= v - 1e-12) for v in values])
    reachable = values[tail <= alpha]
    return float(reachable.min()) if len(reachable) else float("nan")


def newcombe_diff(s1: int, n1: int, s2: int, n2: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Difference of two independent proportions ``s1/n1 - s2/n2`` with Newcombe's hybrid score interval
    (method 10 of Newcombe 1998): built from the two Wilson intervals, so it stays inside [-1, 1] and is
    not degenerate at 0/n or n/n, where the Wald interval has zero width."""
    if min(n1, n2) <= 0:
        raise ValueError(f"need episodes on both sides, got n1={n1}, n2={n2}")
    p1, p2 = s1 / n1, s2 / n2
    l1, u1 = wilson_interval(s1, n1, confidence)
    l2, u2 = wilson_interval(s2, n2, confidence)
    diff = p1 - p2
    lo = diff - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = diff + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return float(diff), float(lo), float(hi)


def welch_diff(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Difference of means ``mean(a) - mean(b)`` of two small independent samples (e.g. per-seed success
    rates) with Welch's t-interval and two-sided t-test p-value.

    With 3 seeds a side a permutation test cannot go below p = 0.1 and a percentile bootstrap interval is
    too narrow; the t-interval assumes roughly normal seed means instead. Needs 2+ values a side and
    some spread on at least one side.
    """
    x, y = _finite(a, "a"), _finite(b, "b")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"need 2+ values a side, got {len(x)} and {len(y)}")
    if x.var() == 0 and y.var() == 0:
        raise ValueError("both samples are constant: no t-interval")
    test = _sps.ttest_ind(x, y, equal_var=False)
    ci = test.confidence_interval(confidence)
    return float(x.mean() - y.mean()), float(ci.low), float(ci.high), float(test.pvalue)


def two_proportion_test(s1: int, n1: int, s2: int, n2: int) -> float:
    """Two-sided Fisher exact p-value that two success proportions differ."""
    return float(_sps.fisher_exact([[s1, n1 - s1], [s2, n2 - s2]]).pvalue)


def _finite(values: ArrayLike, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be a non-empty 1-D array of finite numbers, got shape {x.shape}")
    return x


def _paired(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = _finite(x, "x"), _finite(y, "y")
    if len(a) != len(b) or len(a) < 3:
        raise ValueError(f"x and y must be paired with at least 3 points, got {len(a)} and {len(b)}")
    return a, b
