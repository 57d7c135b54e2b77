"""Chapter 07 (speed costs and slack): the task construction, the experiments' bookkeeping, and
every verdict rule of the analysis on synthetic tables that produce each outcome."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm

from countingargs.chapters.ch07_speed import analysis as A
from countingargs.chapters.ch07_speed import experiment as E
from countingargs.chapters.ch07_speed import task as T
from countingargs.stats import CONTRADICTS, MIXED, SUPPORTS

N_BITS, K = 16, 3


# ---------------------------------------------------------------------------------------------
# the task, as formulas
def test_strata_and_bayes_loss_by_enumeration():
    eb, ew = 0.1, 0.23
    # enumerate y, flips: joint of (y, F_b, F_w)
    loss, p_dis = 0.0, 0.0
    for fb in (-1, 1):
        for fw in (-1, 1):
            p = {y: 0.5 * (1 - eb if fb == y else eb) * (1 - ew if fw == y else ew) for y in (-1, 1)}
            tot = p[-1] + p[1]
            q = p[1] / tot
            loss += tot * float(T.entropy(q))
            p_dis += tot if fb != fw else 0.0
            assert T.stratum_targets(eb, ew, np.array([fb]), np.array([fw]))[0] == pytest.approx(q)
    assert T.bayes_loss(eb, ew) == pytest.approx(loss)
    assert T.strata(eb, ew)["p_dis"] == pytest.approx(p_dis)


def test_mirror_gap_is_the_loss_of_the_mirror_predictor():
    eb, ew = 0.1, 0.2
    s = T.strata(eb, ew)
    best = T.bayes_loss(eb, ew)
    # the mirror predictor: the best predictor of the swapped task, scored on this task
    fb = np.array([1, -1, 1, -1])
    fw = np.array([1, -1, -1, 1])
    w = np.array([s["p_agree"], s["p_agree"], s["p_dis"], s["p_dis"]]) / 2
    q_true = T.stratum_targets(eb, ew, fb, fw)
    q_mirror = T.stratum_targets(eb, ew, fb, fw, mirror=True)
    mirror_loss = float((w * T.cross_entropy(q_true, q_mirror)).sum())
    assert mirror_loss - best == pytest.approx(float(T.mirror_gap(eb, ew)))
    assert float((w * T.cross_entropy(q_true, q_true)).sum()) == pytest.approx(best)


def test_mirror_targets_swap_the_disagreeing_strata_only():
    eb, ew = 0.1, 0.3
    fb, fw = np.array([1, -1, 1, -1]), np.array([1, -1, -1, 1])
    q, m = T.stratum_targets(eb, ew, fb, fw), T.stratum_targets(eb, ew, fb, fw, mirror=True)
    assert q[:2] == pytest.approx(m[:2])
    assert q[2] == pytest.approx(1 - m[2]) and q[3] == pytest.approx(1 - m[3])
    assert q[2] > 0.5 > m[2]


@pytest.mark.parametrize("gap", [0.0, 1e-4, 0.003, 0.1])
def test_eps_for_gap_inverts_mirror_gap(gap):
    ew = T.eps_for_gap(gap, 0.1)
    assert float(T.mirror_gap(0.1, ew)) == pytest.approx(gap, abs=1e-12)
    assert ew >= 0.1


def test_gap_grows_with_the_worse_noise():
    ews = np.linspace(0.11, 0.45, 12)
    assert np.all(np.diff(T.mirror_gap(0.1, ews)) > 0)
    # at small gaps the single-feature gap is the larger one (the chapter's grid); at large
    # ones trusting a bad feature confidently costs more than using it alone
    small = np.linspace(0.101, 0.25, 12)
    assert np.all(T.single_feature_gap(0.1, small) > T.mirror_gap(0.1, small))
    assert T.single_feature_gap(0.1, 0.45) < T.mirror_gap(0.1, 0.45)


def test_bad_noise_rates_and_gaps_are_refused():
    with pytest.raises(ValueError, match="eps"):
        T.strata(0.6, 0.2)
    with pytest.raises(ValueError, match="gap must be"):
        T.eps_for_gap(-0.1, 0.1)
    with pytest.raises(ValueError, match="out of reach"):
        T.eps_for_gap(50.0, 0.1)


# ---------------------------------------------------------------------------------------------
# the task, as sampled
def test_features_have_the_reliabilities_set():
    df = E.check_task([0.0, 0.03], 0.1, N_BITS, K, n=60_000)
    for r in df.itertuples():
        se = math.sqrt(0.25 / r.n)
        assert abs(r.agree_better - r.expected_agree_better) < 5 * se
        assert abs(r.agree_worse - r.expected_agree_worse) < 5 * se
    gt = E.gap_table([0.0, 0.03], 0.1)
    m = df.merge(gt, on="gap_index", suffixes=("", "_set"))
    assert np.allclose(m.p_disagree, m.p_disagree_set, atol=0.01)
    assert np.allclose(m.follow_better, m.bayes_reliance, atol=0.02)


def test_sampled_features_sit_on_their_blocks():
    keys = torch.tensor([3, 4])
    better = torch.tensor([0, 1])
    x, y = E.sample_batch(11, keys, 5, 4000, N_BITS, K, torch.tensor([0.0001, 0.0001]),
                          torch.tensor([0.5, 0.5]), better)
    f0, f1 = E.block_features(x, K)
    # noise 0.0001 on the better feature: it equals y almost always
    assert (f0[0] == y[0]).float().mean() > 0.99       # better on block 0
    assert (f1[1] == y[1]).float().mean() > 0.99       # better on block 1
    assert abs((f1[0] == y[0]).float().mean() - 0.5) < 0.05
    assert set(x.unique().tolist()) == {-1.0, 1.0}


def test_the_blocks_are_exchangeable():
    """Same key and step, better block 0 or 1: the two features trade blocks, nothing else moves
    (the bits that are not parity bits are the same)."""
    key = torch.tensor([9])
    args = (N_BITS, K, torch.tensor([0.1]), torch.tensor([0.2]))
    x0, y0 = E.sample_batch(2, key, 0, 500, *args, torch.tensor([0]))
    x1, y1 = E.sample_batch(2, key, 0, 500, *args, torch.tensor([1]))
    assert torch.equal(y0, y1)
    a0, b0 = E.block_features(x0, K)
    a1, b1 = E.block_features(x1, K)
    assert torch.equal(a0, b1) and torch.equal(b0, a1)
    free = [i for i in range(N_BITS) if i not in (K - 1, 2 * K - 1)]
    assert torch.equal(x0[..., free], x1[..., free])


def test_batches_do_not_depend_on_the_other_networks():
    e = torch.tensor([0.1, 0.1, 0.1])
    args = (N_BITS, K, e, e, torch.tensor([0, 1, 0]))
    x, y = E.sample_batch(5, torch.tensor([7, 8, 9]), 3, 16, *args)
    xs, ys = E.sample_batch(5, torch.tensor([8]), 3, 16, N_BITS, K, e[:1], e[:1], torch.tensor([1]))
    assert torch.equal(x[1], xs[0]) and torch.equal(y[1], ys[0])


def test_check_block_and_check_labels():
    e = torch.tensor([0.1])
    x, _ = E.sample_batch(1, torch.tensor([1]), 0, 300, N_BITS, K, e, e, torch.tensor([0]), k_check=3)
    assert torch.all(x[0, :, 2 * K:2 * K + 3].prod(-1) == 1)
    xc, yc = E.sample_check(1, torch.tensor([1]), 0, 300, N_BITS, K, 3)
    assert torch.equal(yc, xc[..., 2 * K:2 * K + 3].prod(-1))
    assert 0.35 < (yc > 0).float().mean() < 0.65


def test_eval_set_strata_and_flips():
    ev = E.EvalSet(N_BITS, K, 50, seed=3, k_check=3)
    f0, f1 = E.block_features(ev.x, K)
    assert np.array_equal(f0.numpy(), ev.fb) and np.array_equal(f1.numpy(), ev.fw)
    s0, s1 = E.block_features(ev.x_swapped, K)
    assert np.array_equal(s1.numpy(), ev.fb) and np.array_equal(s0.numpy(), ev.fw)
    agree = slice(0, 100)
    b0, w0 = E.block_features(ev.flip_b, K)
    assert torch.all(b0 == -f0[agree]) and torch.all(w0 == f1[agree])
    b1, w1 = E.block_features(ev.flip_w, K)
    assert torch.all(b1 == f0[agree]) and torch.all(w1 == -f1[agree])
    assert torch.all(ev.x[:, 2 * K:2 * K + 3].prod(-1) == 1)
    with pytest.raises(ValueError, match="cannot hold"):
        E.EvalSet(8, 3, 4, seed=0, k_check=3)


def test_expected_loss_matches_sampled_labels():
    """The exact held-out loss equals the mean logistic loss over sampled noisy labels."""
    ev = E.EvalSet(N_BITS, K, 200, seed=1)
    eb, ew = 0.1, 0.25
    f0, f1 = E.block_features(ev.x, K)
    z = (1.5 * f0 + 0.7 * f1).unsqueeze(0)                       # a fixed predictor
    exact = E.expected_loss(z, ev, np.array([eb]), np.array([ew]))[0]
    s = T.strata(eb, ew)
    w = np.repeat([s["p_agree"] / 2] * 2 + [s["p_dis"] / 2] * 2, 200) / 200
    q = T.stratum_targets(eb, ew, ev.fb, ev.fw)
    rng = np.random.default_rng(0)
    ys = np.where(rng.random((400, len(q))) < q, 1.0, -1.0)
    mc = (np.log1p(np.exp(-ys * z.numpy()[0])) * w).sum(1).mean()
    assert exact == pytest.approx(mc, rel=0.01)


def test_eval_metrics_of_known_predictors():
    """A predictor that reads only the better block has reliance near 1 and flip reliance 1; the
    realised gap of the best predictor equals the ideal gap."""
    ev = E.EvalSet(N_BITS, K, 100, seed=2)
    eb, ew = 0.1, float(T.eps_for_gap(0.03, 0.1))
    a, b = math.log(0.9 / 0.1), math.log((1 - ew) / ew)
    better = torch.tensor([0, 0])

    def fn(x):
        f0, f1 = E.block_features(x, K)
        return torch.stack([3.0 * f0[0], a * f0[1] + b * f1[1]])
    m = E.eval_metrics(fn, ev, better, np.array([eb, eb]), np.array([ew, ew]))
    assert m["reliance"][0] > 0.9 and m["reliance_flip"][0] == pytest.approx(1.0)
    assert m["loss"][1] == pytest.approx(float(T.bayes_loss(eb, ew)), rel=1e-5)
    assert m["loss_mirror"][1] - m["loss"][1] == pytest.approx(0.03, rel=1e-4)
    assert m["reliance"][1] == pytest.approx(float(T.bayes_reliance(eb, ew)), rel=1e-4)


# ---------------------------------------------------------------------------------------------
# the experiments' bookkeeping (tiny runs)
def _tiny_slack(**kw):
    args = dict(eps_b=0.1, n_bits=N_BITS, k=K, steps=20, pretrain_steps=10, budgets=[10, 20],
                lr=0.01, batch=16, n_eval=8)
    args.update(kw)
    return E.run_slack([(4, 1)], [0.0, 0.01], 2, [0.01], 2, **args)


def test_slack_runs_are_complete_paired_and_deterministic():
    a, b = _tiny_slack(), _tiny_slack()
    pd.testing.assert_frame_equal(a, b)
    scratch = a[a.start == "scratch"]
    assert len(scratch) == 2 * 2 * 2                       # gaps x seeds x budgets
    path = a[a.start == "path"]
    assert sorted(path.budget.unique()) == [0, 10, 20]     # 0: right after pre-training
    assert set(a.better_block) == {0, 1}
    assert np.all(np.isfinite(a[["loss", "loss_mirror", "reliance"]].to_numpy()))
    g0 = a[(a.gap == 0)]
    assert np.allclose(g0.loss, g0.loss_mirror)


def test_same_keys_same_initial_weights():
    p1 = E.init_params([5, 6], 8, 2, N_BITS, 1)
    p2 = E.init_params([6], 8, 2, N_BITS, 1)
    assert all(torch.equal(x[1], y[0]) for x, y in zip(p1, p2))
    p3 = E.init_params([6], 8, 2, N_BITS, 1, scale=2.0)
    assert all(torch.allclose(2 * y[0], z[0]) for y, z in zip(p2, p3))


def test_tax_runs_have_three_conditions_per_seed():
    df = E.run_tax([(4, 1)], 2, eps_b=0.1, n_bits=N_BITS, k=K, k_check=3, alpha=1.0, steps=10,
                   budgets=[10], lr=0.01, batch=16, n_eval=8)
    assert sorted(df.condition.unique()) == sorted(E.CONDITIONS)
    assert len(df) == 2 * 3
    assert df.check_acc.between(0, 1).all() and np.isfinite(df.loss).all()


def test_bad_grids_are_refused():
    with pytest.raises(ValueError, match="start at 0"):
        E.run_slack([(4, 1)], [0.01], 2, [], 0, eps_b=0.1, n_bits=N_BITS, k=K, steps=10,
                    pretrain_steps=0, budgets=[10], lr=0.01, batch=8)
    with pytest.raises(ValueError, match="not in the gap grid"):
        E.run_slack([(4, 1)], [0.0, 0.01], 2, [0.02], 1, eps_b=0.1, n_bits=N_BITS, k=K,
                    steps=10, pretrain_steps=5, budgets=[10], lr=0.01, batch=8)
    with pytest.raises(ValueError, match="end at steps"):
        E.run_slack([(4, 1)], [0.0, 0.01], 2, [], 0, eps_b=0.1, n_bits=N_BITS, k=K,
                    steps=10, pretrain_steps=0, budgets=[5], lr=0.01, batch=8)


def test_settings_grid_names():
    g = E.settings_grid([0.001], [16], [2.0], [0.2], lr=0.003, batch=64)
    assert [s["setting"] for s in g] == ["lr=0.001", "batch=16", "init=2", "sgd lr=0.2"]
    assert g[-1]["optimizer"] == "sgd" and g[1]["batch"] == 16 and g[2]["init_scale"] == 2.0


# ---------------------------------------------------------------------------------------------
# synthetic tables for the analysis
GAPS = [0.0, 0.001, 0.003, 0.01, 0.03, 0.1]


def synth_slack(tau=0.005, n_seeds=40, kappa=1.5, start="scratch", width=16, depth=1,
                budget=100, stuck=0.0, seed=0, setting="default", gaps=GAPS, p_fn=None):
    """Runs whose outcome follows P(better) = Phi(gap / tau) (or ``p_fn(gap)``); reliance 0.6 /
    0.4; realised gap kappa * gap; a share ``stuck`` with loss ln 2."""
    rng = np.random.default_rng(seed)
    rows = []
    for gi, g in enumerate(gaps):
        p = p_fn(g) if p_fn else (norm.cdf(g / tau) if g > 0 else 0.5)
        for s in range(n_seeds):
            ok = rng.random() < p
            r = 0.6 if ok else 0.4
            st = rng.random() < stuck
            loss = math.log(2) if st else 0.25
            rows.append(dict(setting=setting, width=width, depth=depth, start=start,
                             gap_index=gi, gap=g, seed=s, better_block=s % 2, eps_better=0.1,
                             eps_worse=T.eps_for_gap(g, 0.1), budget=budget, loss=loss,
                             loss_mirror=loss + np.sign(r - 0.5) * kappa * g, reliance=r,
                             reliance_flip=r))
    return pd.DataFrame(rows)


def test_probit_threshold_recovers_a_known_tau():
    tau = 0.006
    runs = A.with_outcomes(synth_slack(tau=tau, n_seeds=120))
    fit = A.fit_threshold(runs, n_boot=400)
    d90 = A.threshold_from_tau(tau)
    assert fit["status"] == "fitted"
    assert fit["d90_ideal_lo"] <= d90 <= fit["d90_ideal_hi"]
    assert fit["d90_ideal"] == pytest.approx(d90, rel=0.3)
    # realised gap = 1.5 x ideal gap: the realised threshold is 1.5 x the ideal one
    assert fit["d90_real"] == pytest.approx(1.5 * fit["d90_ideal"], rel=0.05)
    assert fit["d90_isotonic"] == pytest.approx(d90, rel=0.6)
    assert not fit["beyond_grid"] and not fit["at_grid_floor"]


def test_threshold_under_perfect_separation_is_only_bounded_above():
    runs = A.with_outcomes(synth_slack(p_fn=lambda g: 1.0 if g > 0 else 0.5, n_seeds=10))
    fit = A.fit_threshold(runs, n_boot=200)
    assert fit["at_grid_floor"]
    assert fit["d90_ideal"] < 0.001 <= fit["d90_ideal_hi"]


def test_threshold_of_indifferent_training_lies_beyond_the_grid():
    runs = A.with_outcomes(synth_slack(p_fn=lambda g: 0.5, n_seeds=30))
    fit = A.fit_threshold(runs, n_boot=200)
    assert fit["beyond_grid"] and fit["d90_ideal"] > max(GAPS)


def test_threshold_needs_learning_runs():
    runs = A.with_outcomes(synth_slack(n_seeds=6, stuck=0.9, seed=1))
    assert A.fit_threshold(runs, n_boot=100)["status"] == "not learned"


def test_isotonic_threshold_known_answers():
    assert A.isotonic_threshold([1, 2, 3], [0.5, 0.8, 1.0]) == pytest.approx(2.5)
    # pooled: 0.725, 0.725, 1.0 -> 0.9 is reached between x = 2 and 3
    assert A.isotonic_threshold([1, 2, 3], [0.95, 0.5, 1.0]) == pytest.approx(2 + 0.175 / 0.275)
    assert math.isnan(A.isotonic_threshold([1, 2], [0.5, 0.6]))


def test_outcomes_and_realised_gap():
    df = synth_slack(n_seeds=3)
    o = A.with_outcomes(df)
    assert (o.realised >= -1e-12).all()
    assert (o[o.gap == 0].realised == 0).all()
    assert o.better.equals(o.reliance > 0.5)


@pytest.mark.parametrize("lo,hi,label", [(0.001, 0.005, A.RESOLVED), (0.02, 0.05, A.UNRESOLVED),
                                         (0.005, 0.02, A.UNCLEAR), (0.005, 0.01, A.UNCLEAR),
                                         (math.nan, 0.01, A.MISSING)])
def test_slack_label(lo, hi, label):
    assert A.slack_label(lo, hi, ref=0.01) == label


@pytest.mark.parametrize("lo,hi,label", [(0.01, 0.05, A.TAXED), (-0.05, -0.01, A.UNTAXED),
                                         (-0.0005, 0.0008, A.UNTAXED), (-0.01, 0.05, A.UNCLEAR),
                                         (0.0, 0.05, A.UNCLEAR), (math.nan, math.nan, A.MISSING)])
def test_tax_label(lo, hi, label):
    assert A.tax_label(lo, hi) == label


@pytest.mark.parametrize("k,n,label", [(18, 20, A.FREE), (2, 20, A.LOCKED), (5, 10, A.UNCLEAR),
                                       (0, 0, A.NOT_EVALUABLE)])
def test_path_label(k, n, label):
    assert A.path_label(k, n) == label


@pytest.mark.parametrize("tax,thr,path,label", [
    ((0.05, 0.08), (0.001, 0.01), A.FREE, A.BITES),
    ((0.05, 0.08), (0.001, 0.01), A.UNCLEAR, A.BITES),
    ((0.05, 0.08), (0.001, 0.01), A.LOCKED, A.BLOCKED),
    ((0.001, 0.002), (0.01, 0.05), A.FREE, A.BELOW),
    ((0.005, 0.02), (0.01, 0.05), A.FREE, A.UNCLEAR),
    ((0.01, 0.02), (0.005, 0.01), A.FREE, A.UNCLEAR),      # intervals touching: not above
    ((math.nan, 0.02), (0.005, 0.01), A.FREE, A.MISSING)])
def test_combined_label(tax, thr, path, label):
    assert A.combined_label(tax[0], tax[1], thr[0], thr[1], path) == label


def test_majority_rule():
    assert A.majority(["a", "a", "b"], "a", "b") == SUPPORTS
    assert A.majority(["b", "b", "a"], "a", "b") == CONTRADICTS
    assert A.majority(["a", "b"], "a", "b") == MIXED
    assert A.majority(["a", "c", "c", "b"], "a", ("b", "c")) == CONTRADICTS
    assert A.majority([], "a", "b") == MIXED


def synth_tax(taxes: dict, n_seeds=6, noise=0.002, plain_loss=0.2, check_acc=1.0, seed=0,
              budget=100):
    """Triples per architecture with overhead / gated losses plain + tax + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for (w, d), (t_over, t_gate) in taxes.items():
        for s in range(n_seeds):
            base = plain_loss + rng.normal(0, noise)
            for cond, t in (("plain", 0.0), ("overhead", t_over), ("gated", t_gate)):
                rows.append(dict(width=w, depth=d, seed=s, condition=cond, budget=budget,
                                 loss=base + t + (rng.normal(0, noise) if t else 0.0),
                                 check_acc=check_acc if cond != "plain" else 0.5))
    return pd.DataFrame(rows)


def test_tax_pairs_exclusions():
    df = synth_tax({(8, 1): (0.05, 0.05)}, n_seeds=4)
    df.loc[(df.seed == 0) & (df.condition == "plain"), "loss"] = 0.69
    df.loc[(df.seed == 1) & (df.condition == "overhead"), "loss"] = 0.69
    df.loc[(df.seed == 2) & (df.condition == "gated"), "check_acc"] = 0.6
    p = A.tax_pairs(df)
    why = dict(zip(zip(p.seed, p.condition), p.excluded))
    assert why[(0, "overhead")] == why[(0, "gated")] == "plain stuck"
    assert why[(1, "overhead")] == "extra stuck" and why[(1, "gated")] == ""
    assert why[(2, "gated")] == "check not computed" and why[(3, "overhead")] == ""
    c = A.tax_cells(df)
    row = c[c.condition == "overhead"].iloc[0]
    assert row.n_used == 2 and row.n_plain_stuck == 1 and row.n_extra_stuck == 1


def test_tax_verdict_outcomes():
    taxed = A.tax_cells(synth_tax({(8, 1): (0.05, 0.0), (16, 1): (0.03, 0.0), (32, 1): (0.0, 0.0)},
                                  noise=0.0002))
    assert A.verdict_tax(taxed, "overhead", 100)[0] == SUPPORTS
    assert A.verdict_tax(taxed, "gated", 100)[0] == CONTRADICTS
    mixed = A.tax_cells(synth_tax({(8, 1): (0.05, 0.0), (16, 1): (-0.05, 0.0)}, noise=0.0002))
    assert A.verdict_tax(mixed, "overhead", 100)[0] == MIXED
    noisy = A.tax_cells(synth_tax({(8, 1): (0.001, 0.0), (16, 1): (0.001, 0.0)}, noise=0.05))
    assert A.verdict_tax(noisy, "overhead", 100)[0] == MIXED


def _thr_table(d90s: dict, budget=100):
    rows = []
    for (w, d), (lo, m, hi) in d90s.items():
        rows.append(dict(setting="default", width=w, depth=d, arch=A.arch_name(w, d),
                         budget=budget, status="fitted" if math.isfinite(m) else "not learned",
                         d90_ideal=m, d90_ideal_lo=lo, d90_ideal_hi=hi, d90_real=m,
                         d90_real_lo=lo, d90_real_hi=hi))
    return pd.DataFrame(rows)


def test_slack_verdict_outcomes():
    res = _thr_table({(8, 1): (0.001, 0.002, 0.004), (16, 1): (0.0005, 0.001, 0.002),
                      (32, 1): (0.02, 0.03, 0.05)})
    assert A.verdict_slack(res, 100)[0] == SUPPORTS
    unres = _thr_table({(8, 1): (0.02, 0.03, 0.05), (16, 1): (0.02, 0.04, 0.08)})
    assert A.verdict_slack(unres, 100)[0] == CONTRADICTS
    mixed = _thr_table({(8, 1): (0.005, 0.01, 0.02), (16, 1): (math.nan,) * 3})
    assert A.verdict_slack(mixed, 100)[0] == MIXED


def _path_slack(switch_p: float, d90_scratch_tau=0.002, n_seeds=20, width=16, seed=0):
    scratch = synth_slack(tau=d90_scratch_tau, n_seeds=n_seeds, width=width, seed=seed)
    path = synth_slack(p_fn=lambda g: switch_p if g > 0 else 0.2, n_seeds=n_seeds, width=width,
                       start="path", seed=seed + 1)
    return pd.concat([scratch, path], ignore_index=True)


def test_path_cells_and_verdict_outcomes():
    free = pd.concat([_path_slack(0.95, width=8), _path_slack(0.95, width=16, seed=3)])
    thr = A.thresholds(free, n_boot=200)
    pc = A.path_cells(free, thr, 100)
    assert list(pc.label) == [A.FREE, A.FREE]
    assert A.verdict_path(pc)[0] == SUPPORTS
    assert (pc.stay_at_zero > 0.5).all()
    locked = pd.concat([_path_slack(0.05, width=8), _path_slack(0.05, width=16, seed=3)])
    pc = A.path_cells(locked, A.thresholds(locked, n_boot=200), 100)
    assert A.verdict_path(pc)[0] == CONTRADICTS
    mixed = pd.concat([_path_slack(0.95, width=8), _path_slack(0.05, width=16, seed=3)])
    pc = A.path_cells(mixed, A.thresholds(mixed, n_boot=200), 100)
    assert A.verdict_path(pc)[0] == MIXED


def test_path_not_evaluable_when_the_threshold_is_beyond_the_path_gaps():
    s = _path_slack(0.9)
    thr = A.thresholds(s, n_boot=100).assign(d90_ideal=5.0)
    pc = A.path_cells(s, thr, 100)
    assert pc.label.iloc[0] == A.NOT_EVALUABLE
    assert A.verdict_path(pc)[0] == MIXED


def test_combined_verdict_outcomes():
    tc = A.tax_cells(synth_tax({(8, 1): (0.05, 0.05), (16, 1): (0.05, 0.0005)}, noise=0.0005))
    thr = _thr_table({(8, 1): (0.001, 0.002, 0.004), (16, 1): (0.001, 0.002, 0.004)})
    free = pd.DataFrame(dict(width=[8, 16], depth=[1, 1], label=[A.FREE, A.FREE]))
    sbs = A.side_by_side(tc, thr, free)
    assert A.verdict_combined(sbs, "overhead", 100)[0] == SUPPORTS
    assert A.verdict_combined(sbs, "gated", 100)[0] == MIXED
    locked = free.assign(label=[A.LOCKED, A.LOCKED])
    assert A.verdict_combined(A.side_by_side(tc, thr, locked), "overhead", 100)[0] == CONTRADICTS
    big = _thr_table({(8, 1): (0.2, 0.3, 0.5), (16, 1): (0.2, 0.3, 0.5)})
    assert A.verdict_combined(A.side_by_side(tc, big, free), "overhead", 100)[0] == CONTRADICTS
    missing = _thr_table({(8, 1): (math.nan,) * 3, (16, 1): (math.nan,) * 3})
    assert A.verdict_combined(A.side_by_side(tc, missing, free), "overhead", 100)[0] == MIXED


def test_sanitise_and_num():
    g = A.sanitise({"a": math.nan, "b": 1.5, "c": "x", "d": 3})
    assert g == {"a": "n/a", "b": 1.5, "c": "x", "d": 3}
    assert A.num(math.inf) == "n/a" and A.num(0.01234, ".2g") == "0.012" and A.num(None) == "n/a"


def _params(**kw):
    p = dict(archs=[[8, 1], [16, 1]], steps=100, budgets=[100], ref_arch=[16, 1], n_boot=200,
             setting_seeds=10, seeds=20, path_seeds=20, tax_seeds=6, pretrain_steps=50, lr=0.003,
             batch=64, n_bits=16, k=3, k_check=3, eps_better=0.1, gaps=GAPS,
             path_gaps=[0.0, 0.01, 0.1])
    p.update(kw)
    return p


def test_analyse_end_to_end_on_synthetic_tables():
    slack = pd.concat([_path_slack(0.95, width=8), _path_slack(0.95, width=16, seed=3)],
                      ignore_index=True)
    settings = synth_slack(tau=0.01, n_seeds=10, setting="lr=0.01")
    tables = dict(gaps=E.gap_table(GAPS, 0.1), task_check=E.check_task(GAPS[:2], 0.1, N_BITS, K, n=2000),
                  tax=synth_tax({(8, 1): (0.05, 0.06), (16, 1): (0.03, 0.04)}, noise=0.001),
                  slack=slack, settings=settings)
    f = A.analyse(tables, _params())
    led = f.tables["ledger"]
    assert len(led) == 6 and led.verdict.isin([SUPPORTS, CONTRADICTS, MIXED]).all()
    assert f.glue["verdict_tax_overhead"] == SUPPORTS
    assert f.glue["verdict_combined_overhead"] == SUPPORTS
    assert f.glue["verdict_path"] == SUPPORTS
    overall = SUPPORTS if (led.verdict == SUPPORTS).all() else \
        CONTRADICTS if (led.verdict == CONTRADICTS).all() else MIXED
    assert f.glue["verdict"] == overall and f.glue["verdict_reason"].count(":") == 6
    for k, v in f.glue.items():
        assert not (isinstance(v, float) and not math.isfinite(v)), k
    with pytest.raises(KeyError, match="needs tables"):
        A.analyse({k: v for k, v in tables.items() if k != "tax"}, _params())
