"""Unit tests for chapter 04 (parallel circuits and short depth): the experiment's oracles and the
analysis' verdict rules."""
import io
import itertools
import math

import numpy as np
import pandas as pd
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


# -- the tasks -----------------------------------------------------------------------------------
def test_bit_tasks_are_what_they_claim():
    t = D.bit_tasks()
    X = t["X"].numpy()
    assert X.shape == (256, 8) and set(np.unique(X)) == {-1.0, 1.0}
    bits = ((X + 1) // 2).astype(int)
    g = ((bits[:, 0] ^ bits[:, 1]) & bits[:, 2]) ^ bits[:, 3]
    h = ((bits[:, 4] ^ bits[:, 5]) | bits[:, 6]) ^ bits[:, 7]
    assert np.array_equal(t["y_halves"].numpy(), 2 * (g ^ h) - 1)
    ser = ((((g ^ bits[:, 4]) ^ bits[:, 5]) | bits[:, 6]) ^ bits[:, 7])
    assert np.array_equal(t["y_chain"].numpy(), 2 * ser - 1)
    assert abs(t["y_halves"].mean()) < 1e-9 and abs(t["y_chain"].mean()) < 1e-9


def test_parity_and_the_implementation_plans():
    X, y = D.parity_data()
    bits = ((X.numpy() + 1) // 2).astype(int)
    assert np.array_equal(y.numpy(), 2 * (bits.sum(1) % 2) - 1)
    assert np.array_equal(D.subset_parity(X, [2, 5]).numpy(), 2 * (bits[:, 2] ^ bits[:, 5]) - 1)
    for name in ("serial", "parallel", "staggered"):
        plan = D.IMPLEMENTATIONS[name]
        assert len(plan) == 6                                   # six intermediate values each
        assert all(1 <= k <= 6 for k, _ in plan)
    # the serial chain holds prefix parities, each one gate after the last
    assert [s for _, s in D.IMPLEMENTATIONS["serial"]] == [tuple(range(k + 1)) for k in range(1, 7)]
    # the parallel chains end with the two halves, whose XOR is the target
    ends = [s for k, s in D.IMPLEMENTATIONS["parallel"] if k == 3]
    assert sorted(ends) == [(0, 1, 2, 3), (4, 5, 6, 7)]
    assert torch.equal(-D.subset_parity(X, ends[0]) * D.subset_parity(X, ends[1]), y)
    # staggered: the same values as parallel, the second chain three blocks later
    stag = D.IMPLEMENTATIONS["staggered"]
    assert sorted(s for _, s in stag) == sorted(s for _, s in D.IMPLEMENTATIONS["parallel"])
    assert [k for k, s in stag if 4 in s] == [4, 5, 6]


def test_fourier_weights():
    X, y = D.parity_data()
    w = D.fourier_weights(y)
    assert np.isclose(w.sum(), 1) and np.isclose(w[8], 1)
    assert np.isclose(D.fourier_weights(X[:, 3])[1], 1)
    assert np.isclose(D.fourier_weights(D.subset_parity(X, [0, 1, 2]))[3], 1)
    sp = D.task_spectra()
    assert np.allclose(sp.groupby("task").weight.sum(), 1)
    ti = (sp.degree * sp.weight).groupby(sp.task).sum()
    assert np.isclose(ti["parity"], 8) and ti["old serial"] < ti["old parallel (two halves)"]


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


def test_train_implementation_freezes_at_the_target_and_holds_the_intermediates():
    X, y = D.parity_data()
    plan = D.IMPLEMENTATIONS["parallel"]
    net, ok, steps, p0 = D.train_implementation(X, y, plan, 16, 4, seeds=range(70, 74), head_seeds=range(4),
                                                target_loss=0.05, max_steps=1500, lr=3e-3, aux_weight=1.0)
    assert ok.any() and np.all(steps[ok] < 1500)
    with torch.no_grad():
        f = net(X).squeeze(-1)
    assert bool(((f * y) > 0)[torch.as_tensor(ok)].all())
    assert torch.all(losses.logistic(f, y)[torch.as_tensor(ok)] <= 0.05)
    # the intermediate values are linearly readable where the plan put them
    _, streams = net.stream(net.embed(X), return_all=True)
    from countingargs.estimators.probes import ridge_r2_insample
    for k, subset in plan:
        r2 = ridge_r2_insample(streams[k].detach(), D.subset_parity(X, subset))[torch.as_tensor(ok), 0]
        assert torch.all(r2 > 0.3), (k, subset, r2)
    with pytest.raises(ValueError, match="beyond"):
        D.train_implementation(X, y, D.IMPLEMENTATIONS["serial"], 8, 4, [0], [0], 0.05, 1, 1e-3, 1.0)


def test_match_loss_puts_every_correct_network_at_the_target():
    X, y = D.parity_data()
    net = BatchedResMLP(3, 8, 6, 2, 1, seeds=range(3))
    with torch.no_grad():   # network 0: the right answer with a large margin; the others random
        net.w_in.zero_()
        net.b_in.zero_()
        net.w2.zero_()                          # the blocks write nothing
        net.b_in[0, 0, 0] = 1.0
        net.w_out.zero_()
        net.b_out.zero_()
    X2, y2 = X, torch.ones(len(X))              # a task network 0 gets right: always +1
    with torch.no_grad():
        net.w_out[0, 0, 0] = 5.0
        net.b_out[1:] = -1.0                    # networks 1 and 2 always say -1: wrong
    c = D.match_loss(net, X2, y2, 0.02)
    with torch.no_grad():
        loss = losses.logistic(net(X2), y2)
    assert abs(float(loss[0]) - 0.02) < 1e-5 and c[0] > 0
    assert np.isnan(c[1:]).all() and torch.allclose(loss[1:], torch.full((2,), float(np.log1p(np.e))))


def test_chain_drift_is_slope_times_window_times_nbeta():
    t = np.arange(30, dtype=float)
    trace = np.stack([np.stack([0.1 + 0.0 * t, 0.1 + 0.0 * t]),
                      np.stack([0.01 * t, 0.01 * t + 1])])[:, :, :]   # (K=2, C=2, T=30)
    d = D.chain_drift(trace, n_burnin=10, n_beta=50.0)
    assert np.isclose(d[0], 0.0) and np.isclose(d[1], 0.01 * 20 * 50.0)


def test_loss_fn_for_the_estimators_matches_the_model():
    from countingargs.estimators.volume import local_volume_batch
    from countingargs.nets import resmlp
    X, y = D.parity_data()
    net = BatchedResMLP(3, 8, 6, 2, 1, seeds=range(60, 60 + 3))
    f = resmlp.loss_fn(X, y)
    theta = net.detached()
    assert torch.allclose(f(theta), losses.logistic(net(X), y))
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


# -- the verdict rules, on synthetic tables ----------------------------------------------------------
from countingargs.chapters.ch04_depth import analysis as A  # noqa: E402


def _single(incr_res, incr_plain, base=0.05, L=3):
    rows = []
    for s, (ir, ip) in enumerate(zip(incr_res, incr_plain)):
        for arch, inc in (("residual", ir), ("plain", ip)):
            rows.append({"arch": arch, "seed": s, "deleted_block": -1, "error": base})
            rows += [{"arch": arch, "seed": s, "deleted_block": b, "error": base + inc} for b in range(L)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("res,plain,label", [
    ([0.01, 0.02, 0.015, 0.01], [0.6, 0.7, 0.65, 0.62], "supports"),
    ([0.6, 0.7, 0.65, 0.62], [0.01, 0.02, 0.015, 0.01], "contradicts"),
    ([0.1, 0.3, 0.1, 0.3], [0.3, 0.1, 0.3, 0.1], "mixed"),
    ([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], "mixed"),          # a zero-width interval touching 0
])
def test_deletion_verdict_outcomes(res, plain, label):
    assert A.deletion_verdict(_single(res, plain))[0].label == label


def test_deletion_verdict_refuses_missing_cells_and_nans():
    df = _single([0.01, 0.02], [0.5, 0.6])
    with pytest.raises(ValueError, match="both architectures"):
        A.deletion_verdict(df[~((df.arch == "plain") & (df.seed == 1))])
    df.loc[3, "error"] = np.nan
    with pytest.raises(ValueError, match="missing"):
        A.deletion_verdict(df)


def _paths(len_init, len_trained, L=4):
    """Path tables whose gradient share sits at one length per seed and state."""
    rows = []
    for state, lens in (("init", len_init), ("trained", len_trained)):
        for s, m in enumerate(lens):
            lo, frac = int(np.floor(m)), m - np.floor(m)
            for k in range(L + 1):
                share = (1 - frac) * (k == lo) + frac * (k == lo + 1)
                rows.append({"state": state, "seed": s, "k": k, "grad_per_path": 1.0 / (k + 1),
                             "n_paths": float(math.comb(L, k)), "grad_total": share, "share": share})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("init,trained,label", [
    ([1.5, 1.6, 1.4, 1.5], [1.0, 1.2, 0.9, 1.1], "supports"),     # training shortens
    ([1.5, 1.6, 1.4, 1.5], [2.0, 2.2, 1.9, 2.1], "contradicts"),  # training lengthens
    ([1.5, 1.6, 1.4, 1.5], [1.6, 1.4, 1.5, 1.5], "mixed"),
])
def test_paths_verdict_credits_training_with_the_change_only(init, trained, label):
    v, (est, lo, hi) = A.paths_verdict(_paths(init, trained))
    assert v.label == label
    assert np.isclose(est, np.mean(np.subtract(trained, init)))


def test_paths_verdict_ignores_a_short_level_present_at_initialisation():
    # both states far below L/2 = 2, unchanged by training: not credited to training
    assert A.paths_verdict(_paths([0.5, 0.6, 0.5, 0.4], [0.5, 0.6, 0.5, 0.4]))[0].label == "mixed"
    with pytest.raises(ValueError, match="both states"):
        df = _paths([1, 1], [1, 1])
        A.paths_verdict(df[df.state == "trained"])


def _parity_tables(r50_serial, r50_parallel, reached_parallel=None, width=16):
    n = len(r50_serial)
    reached_parallel = [True] * n if reached_parallel is None else reached_parallel
    tr, r50 = [], []
    for cond, vals, ok in (("serial", r50_serial, [True] * n), ("parallel", r50_parallel, reached_parallel)):
        for s in range(n):
            tr.append({"condition": cond, "width": width, "seed": s, "reached": ok[s]})
            r50.append({"condition": cond, "width": width, "seed": s, "r50": vals[s]})
    return {"parity_training": pd.DataFrame(tr), "parity_r50": pd.DataFrame(r50)}


@pytest.mark.parametrize("ser,par,label", [
    ([0.2, 0.25, 0.22, 0.21], [0.4, 0.45, 0.41, 0.39], "supports"),
    ([0.4, 0.45, 0.41, 0.39], [0.2, 0.25, 0.22, 0.21], "contradicts"),
    ([0.2, 0.4, 0.2, 0.4], [0.4, 0.2, 0.4, 0.2], "mixed"),
])
def test_volume_verdict_outcomes(ser, par, label):
    assert A.volume_verdict(_parity_tables(ser, par), 16)[0].label == label


def test_volume_verdict_uses_only_pairs_that_both_reached():
    t = _parity_tables([0.2, 0.25, 0.22, 9.0], [0.4, 0.45, 0.41, 0.01], reached_parallel=[True, True, True, False])
    v, (est, lo, hi) = A.volume_verdict(t, 16)
    assert v.label == "supports" and A.volume_effect(t, 16, "parallel")[3] == 3
    with pytest.raises(ValueError, match="fewer than two"):
        A.volume_verdict(_parity_tables([0.2, 0.3], [0.4, 0.5], reached_parallel=[True, False]), 16)


def _toys(ratio_m1, ratio_m2=0.5):
    rows = []
    for setting in ("main", "alt"):
        for toy, lam, m in (("regular_d2", 1.0, 1), ("quartic", 0.25, 1), ("normal_crossing", 0.5, 2)):
            r = ratio_m1 if m == 1 else ratio_m2
            rows += [{"setting": setting, "toy": toy, "true_lambda": lam, "multiplicity": m, "chain": c,
                      "llc": lam * r * (1 + 0.01 * (c - 1))} for c in range(3)]
    return pd.DataFrame(rows)


def _llc(diff_main, diff_alt, drift=0.1):
    rows = []
    for setting, diffs in (("main", diff_main), ("alt", diff_alt)):
        for s, d in enumerate(diffs):
            rows.append({"setting": setting, "condition": "parallel", "seed": s, "llc": 40.0, "drift": drift,
                         "diverged": False})
            rows.append({"setting": setting, "condition": "serial", "seed": s, "llc": 40.0 + d, "drift": -drift,
                         "diverged": False})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("main,alt,ratio,drift,label,why", [
    ([5, 6, 5.5, 6.2], [2, 3, 2, 3], 1.0, 0.1, "supports", ""),
    ([-5, -6, -5.5, -6.2], [-2, -3, -2, -3], 1.0, 0.1, "contradicts", ""),
    ([5, -6, 5.5, -6.2], [2, 3, 2, 3], 1.0, 0.1, "mixed", "includes both"),
    ([5, 6, 5.5, 6.2], [2, 3, 2, 3], 0.5, 0.1, "mixed", "recover the toys"),      # estimator not validated
    ([5, 6, 5.5, 6.2], [2, 3, 2, 3], 1.0, 4.0, "mixed", "drift"),                 # chains not settled
    ([5, 6, 5.5, 6.2], [-2, -3, -2, -3], 1.0, 0.1, "mixed", "opposite sign"),     # settings disagree
])
def test_llc_verdict_outcomes(main, alt, ratio, drift, label, why):
    v, _ = A.llc_verdict(_llc(main, alt, drift), _toys(ratio), tolerance=0.25)
    assert v.label == label and why in v.reason


def test_llc_validation_tolerates_only_the_multiplicity_two_toy():
    assert A.validated(_toys(1.1, ratio_m2=0.1), "main", 0.25)
    assert not A.validated(_toys(1.3), "main", 0.25)
    assert not A.validated(_toys(1.0), "nonexistent", 0.25)


def test_llc_effect_drops_diverged_chains():
    df = _llc([5, 6, 5.5, 100.0], [2, 3, 2, 3])
    df.loc[(df.setting == "main") & (df.seed == 3) & (df.condition == "serial"), "diverged"] = True
    est, lo, hi, n, _ = A.llc_effect(df, "main")
    assert n == 3 and est < 10


def _shares(a_blocks, b_blocks, L=8, noise=0.0, seed=0):
    """Block-share tables: network i works on bits 1-4 in blocks a_blocks[i], on 5-8 in b_blocks[i]."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, (ab, bb) in enumerate(zip(a_blocks, b_blocks)):
        for b in range(L):
            a = (1.0 if b in ab else 0.05) + noise * rng.random()
            bv = (1.0 if b in bb else 0.05) + noise * rng.random()
            tot = a + bv + 0.1
            rows.append({"seed": s, "block": b, "share_a": a / tot, "share_b": bv / tot, "share_ab": 0.1 / tot,
                         "energy": 1.0})
    return pd.DataFrame(rows)


def test_relative_depth_and_the_swap_null():
    sh = _shares([[0, 1, 2]], [[4, 5, 6]])
    assert -4.0 < A.relative_depths(sh).iloc[0] < -2.5        # pulled toward 0 by the background work
    null = A.swap_null(sh, draws=4000)
    assert abs(null.mean()) < 0.1 and null.std() > 1.0
    assert np.array_equal(null, A.swap_null(sh, draws=4000))          # deterministic
    same = _shares([[0, 1, 2]], [[0, 1, 2]])                          # both halves in the same blocks
    assert np.allclose(A.swap_null(same, draws=100), 0.0)


def test_spread_rule_calibrated_on_constructed_networks():
    L, n = 8, 30
    rng = np.random.default_rng(1)
    # halves localised in one fixed arrangement: contradicts
    fixed = _shares([[0, 1, 2]] * n, [[4, 5, 6]] * n, noise=0.05)
    assert A.spread_verdict(A.spread_stats(fixed, L)).label == "contradicts"
    # halves placed uniformly at random, chains of 3 increasing blocks: supports
    pick = lambda: sorted(rng.choice(L, 3, replace=False).tolist())  # noqa: E731
    uniform = _shares([pick() for _ in range(n)], [pick() for _ in range(n)], noise=0.05)
    assert A.spread_verdict(A.spread_stats(uniform, L)).label == "supports"
    # both halves smeared over every block, with noise: small spread, but no smaller than smearing gives
    smeared = _shares([list(range(L))] * n, [list(range(L))] * n, noise=0.5, seed=3)
    st = A.spread_stats(smeared, L)
    assert st["ratio_hi"] < 0.5 and A.spread_verdict(st).label == "mixed"


def test_spread_verdict_edges():
    base = {"ratio_lo": 0.2, "ratio_hi": 0.5, "smear_ratio_lo": 0.2, "smear_ratio_hi": 0.6}
    assert A.spread_verdict(base).label == "mixed"                      # touching 0.5 is not below it
    assert A.spread_verdict({**base, "ratio_hi": 0.49}).label == "contradicts"
    assert A.spread_verdict({**base, "ratio_hi": 0.49, "smear_ratio_hi": 1.0}).label == "mixed"
    assert A.spread_verdict({**base, "ratio_lo": 0.51, "ratio_hi": 0.9}).label == "supports"
    with pytest.raises(ValueError, match="at least three"):
        A.spread_stats(_shares([[0]] * 2, [[1]] * 2), 8)


def _classes(free, controls_right=True, n_ctrl=4):
    rows = [{"condition": "free", "seed": s, "implementation": c} for s, c in enumerate(free)]
    for cond, right in (("serial", "serial"), ("parallel", "parallel"), ("staggered", "parallel")):
        rows += [{"condition": cond, "seed": s, "implementation": right if controls_right else "neither"}
                 for s in range(n_ctrl)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("free,ok,label", [
    (["parallel"] * 6 + ["neither"] * 2, True, "supports"),
    (["serial"] * 6 + ["neither"] * 2, True, "contradicts"),
    (["neither"] * 8, True, "mixed"),                                   # zero-width interval at 0
    (["parallel", "serial"] * 4, True, "mixed"),
    (["parallel"] * 8, False, "mixed"),                                 # the classifier fails its controls
])
def test_choice_verdict_outcomes(free, ok, label):
    v, _, acc = A.choice_verdict(_classes(free, ok))
    assert v.label == label and (acc == 1.0) == ok


def test_implementation_scores_and_classes():
    rows = []
    for cond, s5, pair in (("serial", 0.9, 0.2), ("parallel", 0.1, 0.8), ("free", 0.05, 0.05)):
        for q in range(3):
            for k in range(2, 9):
                rows.append({"condition": cond, "seed": 0, "position": q, "k": k,
                             "best_r2": (s5 if k in (5, 6, 7) else 0.9 if k == 8 and q == 1 else 0.1) * (q == 1),
                             "pair_r2": pair * (q == 1) if k == 4 else np.nan})
    sc = A.implementation_scores(pd.DataFrame(rows)).set_index("condition")
    assert np.isclose(sc.loc["serial", "serial_score"], 0.9) and np.isclose(sc.loc["parallel", "pair_score"], 0.8)
    assert sc.loc["free", "full_first"] == 1 and np.isclose(sc.loc["free", "full_r2"], 0.9)
    assert dict(zip(sc.index, A.classify(sc, 0.5))) == {"serial": "serial", "parallel": "parallel", "free": "neither"}


# -- the chunked heavy loops: the same numbers whatever the grouping and wherever they run ---------
_PARITY = dict(conditions=["parallel", "free"], widths=[16], seeds=4, blocks=4, target_loss=0.3,
               max_steps=300, lr=0.02, aux_weight=1.0, other_width_conditions=())
_LLC = {"main": dict(step_size=3e-5, localization=10.0, n_beta=200.0, n_burnin=5, n_draws=10),
        "alt": dict(step_size=1e-4, localization=100.0, n_beta=None, n_burnin=5, n_draws=10)}
_VEIT = dict(seeds=3, blocks=3, width=16, steps=10, lr=3e-3, draws=1, path_samples=1, n_path_images=16)


def _chunked(spc: dict, scheduler: str = "", halves: bool = True) -> dict[str, str]:
    """The chunked steps at small sizes, as CSV text: ``spc`` gives each step's group size
    (``halves=False``: without the two-halves training, the same chunk function as parity's)."""
    train, nets = D.train_parity(**_PARITY, seeds_per_chunk=spc["parity"], scheduler=scheduler)
    out = {"parity_training": train.to_csv(),
           "parity_params": str([net.w1.detach().numpy().tobytes().hex() for net in nets.values()]),
           "parity_llc": D.measure_llc(nets, ["parallel", "free"], 16, 3, _LLC, 2,
                                       seeds_per_chunk=spc["llc"], scheduler=scheduler).to_csv()}
    veit = D.run_veit(**_VEIT, seeds_per_chunk=spc["veit"], scheduler=scheduler)
    out.update({k: v.to_csv() for k, v in veit.items()})
    if halves:
        two = D.run_two_halves(seeds=3, width=8, blocks=4, target_loss=0.3, max_steps=300, lr=0.01,
                               seeds_per_chunk=spc["parity"], scheduler=scheduler)
        out.update({k: v.to_csv() for k, v in two.items()})
    return out


@pytest.fixture(scope="module")
def reference_run():
    return _chunked({"parity": 4, "llc": 3, "veit": 3})


def test_the_grouping_of_networks_does_not_change_any_number(reference_run):
    """A network's training and LLC chains see only its own random streams, and a network
    left alone in its group (its group's last to reach the target, or a group of one) gets the
    numbers it gets among others (:func:`_never_alone`); one network per chunk, or uneven
    groups, give the same tables byte for byte as one chunk of all."""
    train = pd.read_csv(io.StringIO(reference_run["parity_training"]))
    assert train.reached.all() and train.steps_to_target.nunique() > 4   # networks freeze one by one
    for spc in ({"parity": 1, "llc": 1, "veit": 1}, {"parity": 3, "llc": 2, "veit": 2}):
        got = _chunked(spc)
        assert got.keys() == reference_run.keys()
        for key in got:
            assert got[key] == reference_run[key], (spc, key)
    # one chain per network: a group of one network is a batch of one chain
    _, nets = D.train_parity(**_PARITY)
    one = [D.measure_llc(nets, ["free"], 16, 3, _LLC, 1, seeds_per_chunk=g).to_csv() for g in (1, 3)]
    assert one[0] == one[1]


@pytest.mark.parametrize("scheduler", ["local:1", "local:2"])
def test_chunked_steps_on_a_local_cluster_match_the_in_process_run(workers_env, reference_run, scheduler):
    from countingargs import chunks

    got = _chunked({"parity": 2, "llc": 2, "veit": 2}, scheduler=scheduler, halves=False)
    for key in got:
        assert got[key] == reference_run[key], (scheduler, key)
    rows = {(h["name"], h["scheduler"], h["workers"]) for h in chunks.history()}
    assert ("depth-llc", scheduler, int(scheduler[-1])) in rows
