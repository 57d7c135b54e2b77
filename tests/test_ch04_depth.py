"""Unit tests for chapter 04 (parallel circuits and short depth): the experiment's oracles and the
analysis' verdict rules."""
import itertools
import math

import numpy as np
import pytest
import torch

from countingargs.chapters.ch04_depth import experiment as D
from countingargs.nets import losses
from countingargs.nets.resmlp import BatchedResMLP


# -- placement counts ----------------------------------------------------------------------------
@pytest.mark.parametrize("L,n,k", [(4, 2, 2), (5, 4, 2), (6, 4, 2), (7, 4, 2), (6, 6, 3), (5, 6, 2),
                                   (8, 4, 2), (3, 2, 1)])
def test_placement_counts_match_brute_force(L, n, k):
    assert D.placement_counts(L, n, k) == D.brute_force_placements(L, n, k)


def test_placement_counts_known_values():
    c = D.placement_counts(12, 6)
    assert c == {"serial": 924, "parallel_shared": 48400, "parallel_disjoint": 18480}
    assert D.placement_counts(16, 8)["parallel_disjoint"] == 900900


def test_placement_counts_reject_bad_input():
    with pytest.raises(ValueError, match="cannot be split"):
        D.placement_counts(8, 5, 2)
    with pytest.raises(ValueError):
        D.placement_counts(0, 2)


def test_relative_depth_reference_is_a_symmetric_distribution():
    v, p = D.relative_depth_reference(6, 2)
    assert math.isclose(p.sum(), 1.0)
    assert math.isclose((v * p).sum(), 0.0, abs_tol=1e-12)
    # brute force of the variance for m = 1: difference of two independent uniforms on 0..L-1
    v1, p1 = D.relative_depth_reference(5, 1)
    assert math.isclose((v1 ** 2 * p1).sum(), 2 * np.var(np.arange(5)))
    # disjoint placements exclude a difference of 0 when m = 1
    v2, _ = D.relative_depth_reference(5, 1, shared=False)
    assert 0.0 not in v2


# -- the batched residual network ----------------------------------------------------------------
def _net(residual=True, M=3, L=4, w=5, d_out=3, seed=0):
    return BatchedResMLP(M, 6, w, L, d_out, residual=residual, seeds=[seed * 100 + i for i in range(M)])


def test_networks_do_not_depend_on_batch_mates():
    a = BatchedResMLP(3, 6, 5, 4, 3, seeds=[10, 11, 12])
    b = BatchedResMLP(1, 6, 5, 4, 3, seeds=[11])
    x = torch.randn(7, 6)
    assert torch.allclose(a(x)[1], b(x)[0])


@pytest.mark.parametrize("residual", [True, False])
def test_deleting_a_block_skips_it(residual):
    torch.manual_seed(0)
    net = _net(residual)
    x = torch.randn(7, 6)
    L = net.n_blocks
    keep = torch.ones(L)
    keep[2] = 0
    out = net(x, keep=keep)
    # manual forward that never touches block 2
    h = net.embed(x)
    for l in range(L):
        if l == 2:
            continue
        f = net.branch(h, torch.full((net.n_models,), l))
        h = h + f if residual else torch.relu(f)
    assert torch.allclose(out, net.head(h), atol=1e-6)
    # and the deleted block's weights no longer matter
    with torch.no_grad():
        net.w1[:, 2] += 5.0
        net.w2[:, 2] *= -3.0
    assert torch.allclose(net(x, keep=keep), out, atol=1e-6)
    assert not torch.allclose(net(x), out, atol=1e-3)


def test_identity_order_and_full_keep_change_nothing():
    net = _net()
    x = torch.randn(7, 6)
    L = net.n_blocks
    base = net(x)
    assert torch.allclose(net(x, keep=torch.ones(L), order=torch.arange(L)), base)
    rev = net(x, order=torch.arange(L).flip(0))
    assert not torch.allclose(rev, base, atol=1e-4)


def test_bad_shapes_are_named():
    net = _net()
    x = torch.randn(7, 6)
    with pytest.raises(ValueError, match="keep"):
        net(x, keep=torch.ones(5))
    with pytest.raises(ValueError, match="permutation"):
        net(x, order=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="x must be"):
        net(torch.randn(7, 5))


# -- Veit et al.'s path sampling ----------------------------------------------------------------
def test_path_gradient_with_every_branch_kept_is_the_full_gradient():
    torch.manual_seed(1)
    net = _net(L=4)
    x, y = torch.randn(9, 6), torch.randint(0, 3, (9,))
    full = D.path_gradient(net, x, y, grad_mode=None)
    both = D.path_gradient(net, x, y, grad_mode=torch.full((4,), 2))
    assert torch.allclose(full, both, atol=1e-6)
    # the full gradient is the sum of the 2^L single-path gradients (skip/branch per block)
    total = torch.zeros_like(full)
    for pattern in itertools.product([0, 1], repeat=4):
        total += D.path_gradient(net, x, y, grad_mode=torch.tensor(pattern))
    assert torch.allclose(total, full, atol=1e-5)
    # a single path is not the full gradient
    assert not torch.allclose(D.path_gradient(net, x, y, torch.tensor([1, 0, 0, 1])), full, atol=1e-4)


def test_path_of_length_zero_is_the_skip_path():
    net = _net(L=3)
    x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
    g0 = D.path_gradient(net, x, y, grad_mode=torch.zeros(3, dtype=torch.long))
    # gradient through skips only = d loss / d h_L, evaluated at the real h_L
    hL = net.stream(net.embed(x)).detach().requires_grad_(True)
    loss = losses.cross_entropy(net.head(hL), y).sum() * x.shape[0]
    (gL,) = torch.autograd.grad(loss, hL)
    assert torch.allclose(g0, gL, atol=1e-6)


def test_path_length_profile_shape_and_grad_mode_keeps_forward():
    net = _net(L=3)
    x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
    prof = D.path_length_profile(net, x, y, n_samples=2, seed=0)
    assert prof.shape == (4, net.n_models) and np.all(prof >= 0)
    h = net.embed(x)
    assert torch.allclose(net.stream(h, grad_mode=torch.tensor([1, 0, 1])), net.stream(h))
    with pytest.raises(ValueError, match="residual"):
        _net(residual=False).stream(h, grad_mode=torch.tensor([1, 0, 1, 0]))


# -- the bit tasks and their measures ------------------------------------------------------------
def test_bit_tasks_are_what_they_claim():
    t = D.bit_tasks()
    X = t["X"].numpy()
    assert X.shape == (256, 8) and set(np.unique(X)) == {-1.0, 1.0}
    # with 0 -> -1 and 1 -> +1, XOR is minus the product
    assert np.array_equal(t["y_parallel"].numpy(), -t["g"] * t["h"])
    bits = ((X + 1) // 2).astype(int)
    g = ((bits[:, 0] ^ bits[:, 1]) & bits[:, 2]) ^ bits[:, 3]
    assert np.array_equal(t["g"], 2 * g - 1)
    ser = ((((g ^ bits[:, 4]) ^ bits[:, 5]) | bits[:, 6]) ^ bits[:, 7])
    assert np.array_equal(t["y_serial"].numpy(), 2 * ser - 1)
    assert abs(t["y_parallel"].mean()) < 1e-9 and abs(t["y_serial"].mean()) < 1e-9


def test_subproblem_energy_splits_exactly():
    t = D.bit_tasks()
    net = BatchedResMLP(2, 8, 6, 3, 1, seeds=range(30, 30 + 2))
    sh = D.subproblem_energy(net, t["X"], t["a_idx"], t["b_idx"])
    assert sh.shape == (2, 3, 3)
    assert np.allclose(sh.sum(-1), 1.0)
    # a block that only reads x_a writes a-only energy: zero the embedding of x_b
    net2 = BatchedResMLP(1, 8, 6, 2, 1, seeds=range(40, 40 + 1))
    with torch.no_grad():
        net2.w_in[:, 4:] = 0
    sh2 = D.subproblem_energy(net2, t["X"], t["a_idx"], t["b_idx"])
    assert np.allclose(sh2[..., 0], 1.0)


def test_profile_depth():
    d = np.array([[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]], dtype=float)
    out = D.profile_depth(d)
    assert out[0] == 1.0 and out[1] == 1.5 and np.isnan(out[2])


def test_train_to_loss_stops_each_network_at_the_target():
    t = D.bit_tasks()
    net = BatchedResMLP(4, 8, 12, 2, 1, seeds=range(50, 50 + 4))
    trained, steps, final = D.train_to_loss(net, t["X"], t["y_parallel"], target_loss=0.1, max_steps=400, lr=1e-2)
    ok = steps >= 0
    assert ok.any()
    assert np.all(final[ok] <= 0.1)
    # frozen at the first crossing: an unstopped copy trained as long ends far lower
    _, _, free_final = D.train_to_loss(net, t["X"], t["y_parallel"], target_loss=-1.0, max_steps=400, lr=1e-2)
    assert np.all(free_final[ok] < 0.5 * final[ok])


def test_loss_fn_for_the_estimators_matches_the_model():
    from countingargs.estimators.volume import local_volume_batch
    from countingargs.nets import resmlp
    t = D.bit_tasks()
    net = BatchedResMLP(3, 8, 6, 2, 1, seeds=range(60, 60 + 3))
    f = resmlp.loss_fn(t["X"], t["y_parallel"])
    theta = net.detached()
    assert torch.allclose(f(theta), losses.logistic(net(t["X"]), t["y_parallel"]))
    # differentiable, as the LLC's Langevin steps need
    th = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    (g,) = torch.autograd.grad(f(th).sum(), [th["w1"]])
    assert g.abs().sum() > 0
    v = local_volume_batch(f, theta, radii=[0.0, 1e3], tol=1e-6, n_samples=8)
    assert np.allclose(v["fraction"][:, 0], 1.0) and np.allclose(v["fraction"][:, 1], 0.0)
    with pytest.raises(KeyError, match="lack"):
        f({k: v for k, v in theta.items() if k != "w1"})


def test_radius_at_half():
    r = D.radius_at_half([0.1, 1.0, 10.0], np.array([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0], [0.2, 0.1, 0.0]]))
    assert np.allclose(r, [1.0, 10.0, 0.1])


def test_disjoint_ratio_is_the_central_binomial_for_any_depth():
    for n in (2, 4, 6, 8):
        for L in range(n, n + 10):
            c = D.placement_counts(L, n)
            assert c["parallel_disjoint"] == c["serial"] * math.comb(n, n // 2)
            assert c["parallel_shared"] >= c["parallel_disjoint"]


def test_stream_probe_profile_finds_a_target_written_into_the_stream():
    t = D.bit_tasks()
    targets = np.stack([t["g"], t["h"]], axis=1)
    net = BatchedResMLP(2, 8, 6, 3, 1, seeds=range(80, 80 + 2))
    prof = D.stream_probe_profile(net, t["X"], targets)
    assert prof.shape == (2, 4, 2) and np.all((prof >= 0) & (prof <= 1 + 1e-6))
    # the stream's input is linear in x, and g, h are not linear functions of x
    assert np.all(prof[:, 0] < 0.5)
