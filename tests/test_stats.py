"""Intervals over seeds and the verdict rule (countingargs.stats)."""
import numpy as np
import pytest

from countingargs.stats import (Verdict, bca_interval, describe_interval, paired_t_interval,
                                proportion_interval, t_interval)


def test_t_interval_matches_the_textbook_case():
    m, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert m == 2.0
    assert hi - m == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)
    assert t_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)


def test_t_interval_covers_at_the_nominal_rate_with_five_seeds():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, size=(4000, 5))
    hits = sum(lo <= 1.0 <= hi for _, lo, hi in map(t_interval, x))
    assert 0.93 <= hits / 4000 <= 0.97


def test_paired_interval_is_the_interval_of_differences():
    a, b = [3.0, 5.0, 4.0, 6.0], [1.0, 2.0, 2.0, 3.0]
    assert paired_t_interval(a, b) == t_interval(np.subtract(a, b))
    with pytest.raises(ValueError, match="same length"):
        paired_t_interval([1.0, 2.0], [1.0])


def test_bca_contains_the_estimate_is_deterministic_and_handles_ties():
    x = np.random.default_rng(0).normal(size=12)
    est, lo, hi = bca_interval(x, seed=3)
    assert est == pytest.approx(x.mean()) and lo < est < hi
    assert bca_interval(x, seed=3) == (est, lo, hi)
    assert bca_interval([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    est, lo, hi = bca_interval([1, 2, 3, 100], statistic=np.median, seed=0)
    assert est == 2.5 and 1 <= lo <= hi <= 100


def test_interval_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 2 values"):
        t_interval([1.0])
    with pytest.raises(ValueError, match="non-finite"):
        bca_interval([1.0, np.nan])
    with pytest.raises(ValueError, match="level"):
        t_interval([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        proportion_interval(5, 4)


def test_proportion_interval_is_wilson():
    share, lo, hi = proportion_interval(0, 10)
    assert share == 0 and lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775, abs=1e-3)
    share, lo, hi = proportion_interval(5, 10)
    assert lo < 0.5 < hi and lo == pytest.approx(1 - hi)


def test_describe_interval_words_follow_the_numbers():
    assert describe_interval(0.1, 0.2) == "lies above zero"
    assert describe_interval(-0.2, -0.1) == "lies below zero"
    assert describe_interval(-0.1, 0.2) == "includes zero"
    assert describe_interval(0.06, 0.2, margin=0.05) == "lies above 0.05"
    assert describe_interval(-0.01, 0.02, margin=0.05) == "lies inside ±0.05"
    assert describe_interval(0.01, 0.2, margin=0.05).startswith("overlaps")


def test_verdict_rule_gives_every_outcome_and_edges():
    assert Verdict.from_interval(0.1, 0.3).label == "supports"
    assert Verdict.from_interval(-0.3, -0.1).label == "contradicts"
    assert Verdict.from_interval(-0.1, 0.3).label == "mixed"
    assert Verdict.from_interval(-0.3, -0.1, favour="negative").label == "supports"
    assert Verdict.from_interval(-0.01, 0.02, margin=0.05).label == "contradicts"
    assert Verdict.from_interval(0.05, 0.2, margin=0.05).label == "mixed"   # touching the margin
    assert Verdict.from_interval(0.0, 0.2).label == "mixed"                 # touching zero
    with pytest.raises(ValueError):
        Verdict.from_interval(1.0, 0.0)
    with pytest.raises(ValueError, match="not finite"):
        Verdict.from_interval(float("nan"), 1.0)


def test_verdict_combine():
    s, c = Verdict("supports", "a"), Verdict("contradicts", "b")
    assert Verdict.combine([s, s]).label == "supports"
    assert Verdict.combine([s, c]).label == "mixed"
    assert str(Verdict.combine([c])) == "contradicts"
    with pytest.raises(ValueError):
        Verdict.combine([])


def test_finite_t_interval_skips_missing_cells():
    from countingargs import stats
    import math
    assert stats.finite_t_interval([1.0, float("nan"), 3.0]) == stats.t_interval([1.0, 3.0])
    est, lo, hi = stats.finite_t_interval([2.0, float("inf")])
    assert est == 2.0 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(v) for v in stats.finite_t_interval([float("nan")]))
