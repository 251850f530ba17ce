"""Statistics on data whose answer is known."""

import numpy as np
import scipy.stats
import pytest

from vlm4vla import stats


def test_wilson_interval_known_values():
    lo, hi = stats.wilson_interval(10, 20)
    assert lo == pytest.approx(0.2993, abs=1e-3) and hi == pytest.approx(0.7007, abs=1e-3)
    assert stats.wilson_interval(0, 20)[0] == 0.0 and stats.wilson_interval(20, 20)[1] == 1.0
    assert stats.wilson_interval(0, 20)[1] > 0.1  # never a zero-width interval at the boundary


def test_wilson_interval_rejects_bad_counts():
    with pytest.raises(ValueError, match="successes=5, n=3"):
        stats.wilson_interval(5, 3)


def test_perfect_monotone_relation_has_spearman_one():
    x = np.arange(10.0)
    result = stats.correlation(x, np.exp(x), method="spearman", n_perm=500)
    assert result.coefficient == pytest.approx(1.0)
    assert result.p_value < 0.01
    assert result.ci_low == pytest.approx(1.0)


def test_shuffled_data_gives_a_p_value_that_is_not_small():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = rng.permutation(x)  # same values, no relation
    result = stats.correlation(x, y, method="pearson", n_perm=1000)
    assert result.p_value > 0.05
    assert result.ci_low < 0 < result.ci_high


def test_critical_spearman_matches_the_published_table():
    # two-sided alpha = 0.05 critical values of Spearman's rho (Zar 1972, JASA 67:578, table 1)
    for n, rho in {5: 1.0, 6: 0.886, 7: 0.786, 8: 0.738, 9: 0.700}.items():
        assert stats.critical_spearman(n) == pytest.approx(rho, abs=1e-3), n
    assert stats.critical_spearman(10) == pytest.approx(0.648, abs=0.02)  # Monte Carlo above 9
    assert np.isnan(stats.critical_spearman(4))  # 4 backbones can never reach p <= 0.05
    with pytest.raises(ValueError, match="n=2"):
        stats.critical_spearman(2)


def test_newcombe_interval_matches_the_published_example_and_is_not_degenerate_at_zero():
    diff, lo, hi = stats.newcombe_diff(56, 70, 48, 80)  # Newcombe (1998), Stat. Med. 17:873, example (a), method 10
    assert diff == pytest.approx(0.2) and (lo, hi) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    diff, lo, hi = stats.newcombe_diff(0, 20, 0, 20)  # Wald would give [0, 0]
    assert diff == 0 and lo < -0.1 and hi > 0.1 and lo == pytest.approx(-hi)
    with pytest.raises(ValueError, match="n1=0"):
        stats.newcombe_diff(0, 0, 1, 2)


def test_welch_interval_is_the_textbook_formula():
    a, b = np.array([0.30, 0.25, 0.35]), np.array([0.20, 0.18, 0.10])
    diff, lo, hi, p = stats.welch_diff(a, b)
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = scipy.stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert diff == pytest.approx(0.14) and (lo, hi) == pytest.approx((0.14 - half, 0.14 + half))
    assert p == pytest.approx(2 * scipy.stats.t.sf(0.14 / np.sqrt(va + vb), df))
    with pytest.raises(ValueError, match="2\\+ values"):
        stats.welch_diff([0.1], [0.2, 0.3])


def test_fisher_test_and_mean_interval():
    assert stats.two_proportion_test(20, 20, 0, 20) < 1e-6
    assert stats.two_proportion_test(10, 20, 10, 20) == pytest.approx(1.0)
    mean, lo, hi = stats.mean_interval([0.4, 0.5, 0.6])
    assert mean == pytest.approx(0.5) and lo < 0.5 < hi


def test_correlation_needs_paired_finite_data():
    with pytest.raises(ValueError, match="paired"):
        stats.correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        stats.correlation([1, 2, np.nan], [1, 2, 3])
