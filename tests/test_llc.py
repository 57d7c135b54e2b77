"""Tests of the SGLD local-learning-coefficient estimator and the local-volume estimator."""
import math

import numpy as np
import pytest
import torch

from countingargs.estimators import llc
from countingargs.estimators import volume as lvol


def test_regular_toy_recovers_d_over_2():
    # K = |w|^2 in d = 6: lambda = 3. Small step, so the Langevin bias (~ step * n_beta) is ~1%.
    res = llc.estimate_llc(llc.toy_loss("regular_d6"), torch.zeros(6), 10_000, step_size=3e-5,
                           localization=1.0, n_chains=64, n_draws=600, n_burnin=200, seed=1)
    assert res["llc_mean"] == pytest.approx(3.0, rel=0.1)
    assert res["loss_trace"].shape == (64, 800)
    assert res["llc_per_chain"].shape == (64,)
    assert not res["diverged"]


def test_singular_toy_quartic_recovers_one_quarter():
    res = llc.estimate_llc(llc.toy_loss("quartic"), torch.zeros(1), 10_000, step_size=1e-4,
                           localization=1.0, n_chains=128, n_draws=800, n_burnin=300, seed=2)
    assert res["llc_mean"] == pytest.approx(0.25, abs=0.05)


def test_ordering_of_toys_is_respected():
    df = llc.validate_on_toys(10_000, step_size=1e-4, n_chains=64, n_draws=600, n_burnin=200,
                              toys=["quartic", "quad_plus_quartic", "regular_d2"])
    m = df.groupby("toy").llc.mean()
    assert m["quartic"] < m["quad_plus_quartic"] < m["regular_d2"]
    assert m["quad_plus_quartic"] == pytest.approx(0.75, abs=0.12)


def test_linear_regression_with_data_gives_d_over_2():
    # a real L_n with noise: least squares, d = 5, lambda = d/2 at the least-squares solution
    g = torch.Generator().manual_seed(0)
    n, d = 500, 5
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, generator=g) + torch.randn(n, generator=g)
    w_star = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
    loss = lambda w: 0.5 * ((y[None] - w @ x.T) ** 2).mean(1)  # noqa: E731
    res = llc.estimate_llc(loss, w_star, n, step_size=2e-4, localization=1.0, n_chains=64,
                           n_draws=400, n_burnin=100, seed=3)
    assert res["llc_mean"] == pytest.approx(2.5, rel=0.12)
    assert res["init_loss"] == pytest.approx(float(loss(w_star[None])[0]))


def test_batched_points_match_single_calls_and_dicts_work():
    f = llc.mlp_loss_fn(torch.randn(50, 3, generator=torch.Generator().manual_seed(0)),
                        torch.arange(50) % 2)
    g = torch.Generator().manual_seed(1)
    p = {"w0": torch.randn(2, 3, 4, generator=g), "b0": torch.zeros(2, 1, 4),
         "w1": torch.randn(2, 4, 2, generator=g), "b1": torch.zeros(2, 1, 2)}
    kw = dict(step_size=1e-4, n_chains=3, n_draws=20, n_burnin=5, seed=7)
    both = llc.estimate_llc_batch(f, p, 50, **kw)
    assert both["llc_per_chain"].shape == (2, 3) and both["loss_trace"].shape == (2, 3, 25)
    one = llc.estimate_llc(f, {k: v[0] for k, v in p.items()}, 50, **kw)
    # chain noise differs (different batch), but the init loss must agree exactly
    assert one["init_loss"] == pytest.approx(both["init_loss"][0], rel=1e-6)


def test_same_seed_same_numbers():
    kw = dict(step_size=1e-4, n_chains=4, n_draws=50, n_burnin=10, seed=5)
    a = llc.estimate_llc(llc.toy_loss("regular_d2"), torch.zeros(2), 1000, **kw)
    b = llc.estimate_llc(llc.toy_loss("regular_d2"), torch.zeros(2), 1000, **kw)
    np.testing.assert_array_equal(a["loss_trace"], b["loss_trace"])


def test_bad_inputs_are_named():
    f = llc.toy_loss("regular_d2")
    with pytest.raises(ValueError, match="step_size"):
        llc.estimate_llc(f, torch.zeros(2), 100, step_size=0.0)
    with pytest.raises(ValueError, match="one loss per point"):
        llc.estimate_llc(lambda w: w.sum(), torch.zeros(2), 100, step_size=1e-3)
    with pytest.raises(TypeError, match="params"):
        llc.estimate_llc(f, [0.0, 0.0], 100, step_size=1e-3)
    with pytest.raises(ValueError, match="tol"):
        lvol.local_volume(f, torch.zeros(2), [0.1], tol=0.0)


def test_local_volume_matches_geometry_of_a_ball():
    # K = |w|^2 in d = 2: a perturbation of radius r raises the loss by exactly r^2
    res = lvol.local_volume(llc.toy_loss("regular_d2"), torch.zeros(2), [0.5, 0.9, 1.1, 2.0],
                           tol=1.0, n_samples=64, seed=0)
    np.testing.assert_array_equal(res["fraction"], [1, 1, 0, 0])
    np.testing.assert_allclose(res["mean_increase"], [0.25, 0.81, 1.21, 4.0], rtol=1e-5)


def test_local_volume_sees_a_flat_direction():
    # K = w1^2 (w2 free): at radius r the loss stays below tol iff |cos angle| < sqrt(tol)/r,
    # a fraction 2/pi * asin(sqrt(tol)/r) of directions in 2-D
    loss = lambda w: w[:, 0] ** 2  # noqa: E731
    res = lvol.local_volume(loss, torch.zeros(2), [2.0], tol=1.0, n_samples=20_000, seed=1)
    assert res["fraction"][0] == pytest.approx(2 / math.pi * math.asin(0.5), abs=0.02)
    regular = lvol.local_volume(llc.toy_loss("regular_d2"), torch.zeros(2), [2.0], tol=1.0,
                               n_samples=1000, seed=1)
    assert regular["fraction"][0] < res["fraction"][0]
