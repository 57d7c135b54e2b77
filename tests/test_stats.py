import numpy as np
import pytest

from countingargs import Verdict, bootstrap_ci, mean_ci


def test_bootstrap_contains_mean_and_is_deterministic():
    x = np.random.default_rng(0).normal(size=12)
    est, lo, hi = bootstrap_ci(x, seed=3)
    assert est == pytest.approx(x.mean())
    assert lo < est < hi
    assert (est, lo, hi) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=4) != (est, lo, hi)


def test_bootstrap_coverage_roughly_nominal():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):
        est, lo, hi = bootstrap_ci(rng.normal(1.0, 1.0, 30), n_boot=500, seed=1)
        hits += lo <= 1.0 <= hi
    assert 0.85 <= hits / 200 <= 0.99


def test_bootstrap_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=1.5)


def test_bootstrap_median_stat():
    est, lo, hi = bootstrap_ci([1, 2, 3, 100], stat=np.median, seed=0)
    assert est == 2.5 and lo >= 1 and hi <= 100


def test_mean_ci_matches_t_interval():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0
    assert hi - m == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)


def test_verdict_rule():
    assert Verdict.from_interval(0.1, 0.3).label == "supports"
    assert Verdict.from_interval(-0.3, -0.1).label == "contradicts"
    assert Verdict.from_interval(-0.1, 0.3).label == "mixed"
    assert Verdict.from_interval(-0.3, -0.1, favour="negative").label == "supports"
    assert Verdict.from_interval(-0.01, 0.02, margin=0.05).label == "contradicts"
    with pytest.raises(ValueError):
        Verdict.from_interval(1.0, 0.0)


def test_verdict_combine():
    s, c = Verdict("supports", "a"), Verdict("contradicts", "b")
    assert Verdict.combine([s, s]).label == "supports"
    assert Verdict.combine([s, c]).label == "mixed"
    assert str(Verdict.combine([c])) == "contradicts"
