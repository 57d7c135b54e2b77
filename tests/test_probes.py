"""Known-answer tests for the linear probes (estimators.probes): held-out vs in-sample R^2."""
import numpy as np
import pytest
import torch

from countingargs.estimators.probes import ridge_r2_heldout, ridge_r2_insample


def _data(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_an_exact_linear_target_scores_one_both_ways():
    h = _data(300, 5, 0)
    z = (h @ torch.tensor([1.0, -2.0, 0.0, 0.5, 3.0], dtype=torch.float64) + 0.7)[:, None]
    assert np.allclose(ridge_r2_insample(h, z, ridge=1e-9).numpy(), 1.0, atol=1e-6)
    assert np.allclose(ridge_r2_heldout(h[:200], z[:200], h[200:], z[200:], ridge=1e-9).numpy(), 1.0, atol=1e-6)


def test_noise_features_memorise_in_sample_but_not_held_out():
    # d random features, N examples: in-sample R^2 of a random target is about d / N, held-out <= 0
    h, z = _data(240, 60, 1), _data(240, 1, 2)
    r_in = float(ridge_r2_insample(h[:120], z[:120], ridge=1e-6)[0])
    r_out = float(ridge_r2_heldout(h[:120], z[:120], h[120:], z[120:], ridge=1e-6)[0])
    assert 0.3 < r_in < 0.7 and r_out < 0.05


def test_batched_networks_and_several_targets():
    h = torch.stack([_data(100, 4, 3), _data(100, 4, 4)])                  # (M=2, N, d)
    z = torch.stack([h[0, :, 0], h[1, :, 1]], 1)                          # per-network targets differ
    r = ridge_r2_insample(h, torch.stack([z, z]), ridge=1e-9)              # (M, N, k) targets
    assert r.shape == (2, 2)
    assert r[0, 0] > 0.999 and r[1, 1] > 0.999 and r[0, 1] < 0.2 and r[1, 0] < 0.2
    with pytest.raises(ValueError, match="targets must be"):
        ridge_r2_insample(h, torch.zeros(99, 1))
