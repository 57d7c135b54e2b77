"""Chapter 02 (volume): targets, consistency, Lempel-Ziv, the trainer to fit a training set,
guess-and-check (brute-force checks), and every verdict rule of analysis.py on synthetic tables."""

import numpy as np
import pandas as pd
import pytest
import torch

from countingargs import chunks
from countingargs.chapters.ch02_volume import analysis as A
from countingargs.chapters.ch02_volume import experiment as V
from countingargs.nets import sampler as S
from countingargs.stats import CONTRADICTS, MIXED, SUPPORTS


# ---------------------------------------------------------------------------------------------
# experiment
# ---------------------------------------------------------------------------------------------
def test_lz76_known_values_and_batch():
    s = np.array([int(c) for c in "0001101001000101"])
    assert V.lz76_words(s) == 6          # 0.001.10.100.1000.101
    assert V.lz76_words(np.zeros(16)) == 2
    rng = np.random.default_rng(0)
    B = rng.random((200, 64)) < 0.3
    assert np.array_equal(V.lz76_words_batch(B), [V.lz76_words(b) for b in B])
    lz = V.lz_complexity(np.stack([np.zeros(128, bool), np.arange(128) % 2 == 0,
                                   rng.random(128) < 0.5]))
    assert lz[0] == 7.0
    assert lz[1] < lz[2]


def test_consistency_mask_and_errors_match_brute_force():
    n, L = 5, 32
    rng = np.random.default_rng(1)
    bits = rng.random((300, L)) < 0.5
    t = V.target_bits("x1|x2", n)
    bits[:5] = t                     # some consistent rows
    codes = S.pack_bits_np(bits)
    St = np.array([0, 3, 9, 17, 30])
    test = np.setdiff1d(np.arange(L), St)
    want = (bits[:, St] == t[St]).all(1)
    assert np.array_equal(V.consistent_mask(codes, t, St, L), want)
    assert np.array_equal(V.offset_errors(codes, t, test, L), (bits[:, test] != t[test]).sum(1))


def test_targets_and_names():
    assert V.target_bits("majority", 3).tolist() == [0, 0, 0, 1, 0, 1, 1, 1]
    assert V.describe(V.target_bits("x2", 4), 4) == "x2"
    assert V.describe(~V.target_bits("x2", 4), 4) == "¬x2"
    assert V.describe(np.zeros(16, bool), 4) == "0"
    only = np.zeros(16, bool)
    only[5] = True
    assert V.describe(only, 4) == "only 0101"
    with pytest.raises(ValueError, match="unknown target"):
        V.target_bits("xor9", 4)


@pytest.mark.parametrize("optimizer,lr,batch", [("sgd", 0.5, None), ("adam", 0.02, None),
                                                ("sgd", 0.5, 3)])
def test_trainer_fits_and_networks_are_independent(optimizer, lr, batch):
    n = 4
    X = S.cube(n)
    t = V.target_bits("x1|x2", n)
    St = np.array([0, 2, 5, 8, 11, 15])
    y = torch.from_numpy(t[St])
    big = V.train_to_fit(X[St], y, X, 8, [16, 16], 1.0, 0.1, "relu", optimizer, lr, batch, 500,
                         seed=3, chunk=4)
    small = V.train_to_fit(X[St], y, X, 4, [16, 16], 1.0, 0.1, "relu", optimizer, lr, batch, 500,
                           seed=3, chunk=4)
    assert big.fitted.all()
    assert V.consistent_mask(big.codes, t, St, 2 ** n).all()
    # the first chunk trains identically whether or not other networks share the batch
    assert np.array_equal(big.codes[:4], small.codes)
    assert np.array_equal(big.steps[:4], small.steps)
    # step 0 = the network already fitted at initialisation, as in the sampler
    init = S.sample_functions(n, [16, 16], 4, 1.0, 0.1, "relu", seed=3, chunk=4,
                              keep_samples=True)[1]
    at_init = V.consistent_mask(init, t, St, 2 ** n)
    assert np.array_equal(small.steps[:4] == 0, at_init)


def test_guess_and_check_accepts_only_fitting_networks():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.random((40, 6)), dtype=torch.float32)
    y = x[:, 0] > 0.5
    g = V.guess_and_check(x[:3], y[:3], x[3:], y[3:], [8], 10, 20000, seed=1, chunk=2000)
    assert g.accepted >= 10 and g.draws % 2000 == 0
    out = S.forward_block(g.params, x[:3].T.contiguous(), 6, [8])
    assert ((out > 0) == y[:3]).all()
    assert g.test_acc.shape == (g.accepted,)


# the heavy steps as chunks: the same tables whatever the grouping and wherever they run
VS_SMALL = dict(n_inputs=4, hidden=[8, 8], sigma_w=1.0, sigma_b=0.1, prior_samples=4000,
                train_size=6, targets=["x1|x2"], optimisers=["sgd", "sgd-b3"],
                lrs={"sgd": 0.5, "adam": 0.01}, sgd_runs=24, max_steps=150, seeds=[0, 1],
                null_reps=5)
GC_SMALL = dict(seeds=[0], sizes=[2, 4], hidden=[8], n_accept=5, max_draws=6000, sgd_runs=6,
                lr=0.1, max_steps=100, loss_target=0.05, small_lr=0.01)


def _csv(tables: dict) -> dict:
    return {k: v.to_csv() for k, v in tables.items()}


@pytest.fixture(scope="module")
def chunked_ref():
    """The chunked heavy steps in process, one cell per chunk."""
    return (_csv(V.volume_vs_sgd(**VS_SMALL, cells_per_chunk=1, scheduler="")),
            _csv(V.guess_and_check_digits(**GC_SMALL, cells_per_chunk=1, scheduler="")))


def test_training_chunks_do_not_depend_on_the_grouping(chunked_ref):
    vs, gc = chunked_ref
    assert len(vs["volume_vs_sgd"].splitlines()) == 5          # 2 seeds x 1 target x 2 optimisers
    assert _csv(V.volume_vs_sgd(**VS_SMALL, cells_per_chunk=3, scheduler="")) == vs
    assert _csv(V.guess_and_check_digits(**GC_SMALL, cells_per_chunk=2, scheduler="")) == gc
    with pytest.raises(ValueError, match="group size"):
        V.guess_and_check_digits(**GC_SMALL, cells_per_chunk=0, scheduler="")


@pytest.mark.parametrize("scheduler,per_chunk", [("local:1", 4), ("local:2", 1)])
def test_training_chunks_on_local_cluster_match_in_process(chunked_ref, workers_env, scheduler,
                                                           per_chunk):
    vs, gc = chunked_ref
    assert _csv(V.volume_vs_sgd(**VS_SMALL, cells_per_chunk=per_chunk, scheduler=scheduler)) == vs
    assert _csv(V.guess_and_check_digits(**GC_SMALL, cells_per_chunk=per_chunk,
                                         scheduler=scheduler)) == gc
    chunks.close_clients(scheduler)


def test_lookup_counts_and_zero_for_absent():
    codes = np.array([[1], [5], [9]], dtype=np.int64)
    counts = np.array([3, 1, 7])
    keys = np.array([[9], [2], [1]], dtype=np.int64)
    assert V.lookup(keys, codes, counts).tolist() == [7.0, 0.0, 3.0]


def test_spearman_is_nan_when_undefined():
    assert np.isnan(V._spearman(np.array([1.0, 2.0]), np.array([2.0, 1.0])))
    assert np.isnan(V._spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))
    assert V._spearman(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])) == pytest.approx(1.0)


def test_parse_optimiser():
    assert V.parse_optimiser("sgd") == ("sgd", None, False)
    assert V.parse_optimiser("adam-b4-long") == ("adam", 4, True)
    for bad in ("rmsprop", "sgd-fast", "sgd-bx"):
        with pytest.raises(ValueError, match="unknown optimiser"):
            V.parse_optimiser(bad)


def test_trainer_loss_target_is_met():
    n = 4
    X = S.cube(n)
    t = V.target_bits("x1", n)
    St = np.array([0, 3, 9, 12, 15])
    r = V.train_to_fit(X[St], torch.from_numpy(t[St]), X[St], 16, [8], 1.0, 0.1, "relu", "sgd",
                       0.5, None, 3000, seed=1, loss_target=0.05)
    assert r.fitted.all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        r.outputs, torch.from_numpy(t[St]).float().expand(16, -1), reduction="none").mean(1)
    assert (loss <= 0.05).all()


def test_ones_matched_keeps_the_number_of_ones():
    rng = np.random.default_rng(0)
    bits = rng.random((50, 64)) < 0.2
    m = V.ones_matched(bits, np.random.default_rng(1))
    assert np.array_equal(m.sum(1), bits.sum(1))
    assert not np.array_equal(m, bits)


def test_lit_stat_known_values():
    pb = np.array([10.0, 20, 40, 1, 0])
    r, n = V.lit_stat(pb, 3 * pb, 5)
    assert n == 3 and r == pytest.approx(1.0)
    r, n = V.lit_stat(pb, np.array([0.0, 0, 40, 1, 9]), 5)
    assert np.isnan(r) and n == 1


def zipf_counts(rng, p, n):
    return rng.multinomial(n, p).astype(float)


def test_calibrate_ceiling_matches_exact_sampling_and_floor_lies_below():
    """Known answer: when SGD samples exactly from P_B, the observed statistic's mean over many
    independent experiments equals the calibrated ceiling (to Monte Carlo error), and the
    shuffled floor lies well below it."""
    rng = np.random.default_rng(0)
    K = 600
    p = 1.0 / np.arange(1, K + 1) ** 1.3
    p /= p.sum()
    A, n = 3000, 1000
    obs, nulls, floors = [], [], []
    for _ in range(40):
        pa, pbb = zipf_counts(rng, p, A // 2), zipf_counts(rng, p, A // 2)
        pb, ps = pa + pbb, zipf_counts(rng, p, n)
        keep = (pb > 0) | (ps > 0)
        obs.append(V.order_stat(pb[keep], ps[keep]))
        cal = V.calibrate(pb[keep], ps[keep], pa[keep], pbb[keep], rng, reps=40, k_lit=5,
                          split_reps=5)
        nulls.append(cal["spearman_null"])
        floors.append(cal["spearman_floor"])
        assert cal["spearman_null_lo"] <= cal["spearman_null"] <= cal["spearman_null_hi"]
    assert abs(np.mean(obs) - np.mean(nulls)) < 0.05
    assert np.mean(floors) < np.mean(nulls) - 0.3
    # a sampler unrelated to volume stays near the floor, far below the ceiling
    pb = zipf_counts(rng, p, A)
    ps = zipf_counts(rng, p[::-1], n)
    keep = (pb > 0) | (ps > 0)
    cal = V.calibrate(pb[keep], ps[keep], pb[keep] // 2, pb[keep] - pb[keep] // 2, rng, 40, 5, 5)
    assert V.order_stat(pb[keep], ps[keep]) < cal["spearman_null"] - 0.3


def test_proportion_null_is_centred_near_zero():
    out = V.proportion_null(2000, 300, 1500, np.random.default_rng(0), 500)
    assert abs(out["log2_ratio_null"]) < 0.05
    assert out["log2_ratio_null_lo"] < 0 < out["log2_ratio_null_hi"]


# ---------------------------------------------------------------------------------------------
# analysis: every verdict rule yields each outcome; NaNs are counted, never filled in
# ---------------------------------------------------------------------------------------------
def test_band_verdict_outcomes_and_edges():
    assert A.band_verdict(-0.04, 0.05, 0.05, "x").label == SUPPORTS      # touching the edge
    assert A.band_verdict(0.06, 0.2, 0.05, "x").label == CONTRADICTS
    assert A.band_verdict(-0.3, -0.051, 0.05, "x").label == CONTRADICTS
    assert A.band_verdict(0.01, 0.08, 0.05, "x").label == MIXED
    with pytest.raises(ValueError):
        A.band_verdict(np.nan, 0.1, 0.05, "x")


def prior_seeds(diffs, matched_diffs=None, setting="main"):
    d = np.asarray(diffs, float)
    m = d if matched_diffs is None else np.asarray(matched_diffs, float)
    return pd.DataFrame(dict(setting=setting, seed=range(len(d)), lz_mean_prior=100 + d,
                             lz_mean_uniform=100.0, lz_mean_matched=100 + d - m))


@pytest.mark.parametrize("diffs,want", [([-80, -82, -81], SUPPORTS), ([5, 6, 7], CONTRADICTS),
                                        ([-5, 5, 1], MIXED)])
def test_verdict_prior(diffs, want):
    assert A.verdict_prior(prior_seeds(diffs))[0].label == want


@pytest.mark.parametrize("m,want", [([-3, -4, -3.5], SUPPORTS), ([2, 2.5, 3], CONTRADICTS),
                                    ([-2, 2, 0.1], MIXED)])
def test_verdict_prior_matched(m, want):
    seeds = prior_seeds([-80, -81, -82], m, setting="pm1-tanh")
    assert A.verdict_prior_matched(seeds, "pm1-tanh")[0].label == want
    with pytest.raises(ValueError, match="no prior setting"):
        A.verdict_prior_matched(seeds, "main")


def vs_cells(**cols):
    """Synthetic cells of the small-cube test: three seeds, two targets; ``cols`` give one
    value per seed (repeated over targets) for the columns of interest."""
    base = dict(spearman=0.3, spearman_null=0.35, spearman_floor=-0.2, lit=0.8, lit_null=0.85,
                sgd_top10=100, sgd_n=1000, pb_top10_b=100, pb_n_b=1000, acc_sgd=0.8, acc_pb=0.8)
    rows = []
    for s in range(3):
        for t in ("x1", "x1|x2"):
            r = dict(base, setting="main", seed=s, target=t, optimiser="sgd")
            r.update({k: v[s] for k, v in cols.items()})
            rows.append(r)
    return pd.DataFrame(rows)


VS_CASES = [  # rule, column, one value per seed, expected verdict
    ("order_floor", "spearman", [0.3, 0.35, 0.32], SUPPORTS),
    ("order_floor", "spearman", [-0.5, -0.45, -0.6], CONTRADICTS),
    ("order_floor", "spearman", [-0.6, 0.3, 0.05], MIXED),
    ("order_ceiling", "spearman", [0.33, 0.36, 0.35], SUPPORTS),
    ("order_ceiling", "spearman", [0.05, 0.0, 0.1], CONTRADICTS),
    ("order_ceiling", "spearman", [0.3, 0.1, 0.2], MIXED),
    ("lit", "lit", [0.8, 0.85, 0.83], SUPPORTS),
    ("lit", "lit", [0.2, 0.3, 0.25], CONTRADICTS),
    ("lit", "lit", [0.8, 0.6, 0.7], MIXED),
    ("proportion", "sgd_top10", [110, 95, 100], SUPPORTS),
    ("proportion", "sgd_top10", [600, 650, 700], CONTRADICTS),
    ("proportion", "sgd_top10", [150, 250, 400], MIXED),
    ("count", "acc_sgd", [0.78, 0.8, 0.79], SUPPORTS),
    ("count", "acc_sgd", [0.52, 0.5, 0.55], CONTRADICTS),
    ("count", "acc_sgd", [0.6, 0.75, 0.66], MIXED),
]


@pytest.mark.parametrize("rule,column,values,want", VS_CASES)
def test_volume_vs_sgd_verdicts(rule, column, values, want):
    assert A.VS_RULES[rule](vs_cells(**{column: values}))[0].label == want


def test_verdict_order_ceiling_at_the_margin_edge():
    # a gap of exactly -margin on every seed: the interval touches the edge and lies inside
    v, (est, lo, hi), _ = A.verdict_order_ceiling(vs_cells(spearman=[0.25] * 3))
    assert lo == pytest.approx(-A.CEILING_MARGIN) and v.label == SUPPORTS


def test_nan_cells_are_left_out_and_counted_not_filled():
    cells = vs_cells(lit=[0.8, 0.85, 0.83])
    cells.loc[0, "lit"] = np.nan          # one undefined cell of seed 0
    v, (est, lo, hi), bad = A.verdict_lit(cells)
    assert bad == 1 and "1 of 6 cells undefined" in v.reason
    # filling the NaN with 0 would pull the mean down; leaving it out does not
    assert est == pytest.approx(np.mean([0.83 - 0.85, 0.85 - 0.85, 0.8 - 0.85]), abs=0.01)
    all_bad = vs_cells(lit=[np.nan] * 3)
    v, (est, lo, hi), bad = A.verdict_lit(all_bad)
    assert v.label == MIXED and bad == 6 and np.isnan(lo) and "too few" in v.reason
    assert A.num(np.nan) == "undefined" and A.span(0.1, np.nan, 0.2) == "0.10 (interval undefined to 0.20)"


def test_conditions_select_their_cells():
    cells = vs_cells()
    long = cells.assign(optimiser="sgd-long")
    pm1 = cells.assign(setting="pm1-tanh")
    vs = pd.concat([cells, long, pm1], ignore_index=True)
    assert set(A.condition_cells(vs, "first-fit").optimiser) == {"sgd"}
    assert set(A.condition_cells(vs, "long").optimiser) == {"sgd-long"}
    assert set(A.condition_cells(vs, "pm1").setting) == {"pm1-tanh"}
    ver = A.vs_verdicts(vs)
    assert len(ver) == 3 * len(A.VS_RULES)
    with pytest.raises(ValueError, match="unknown condition"):
        A.condition_cells(vs, "other")


def test_matched_difference_known_answers():
    rng = np.random.default_rng(0)
    loss = rng.random(400)
    acc = 0.5 + 0.3 * loss                     # accuracy depends on the loss
    # the same networks: difference 0, all matched
    d, share = A.matched_difference(loss, acc, loss, acc)
    assert d == pytest.approx(0.0) and share == pytest.approx(1.0)
    # a method 0.1 better at every loss, with a different loss distribution: matching recovers 0.1
    l2 = rng.random(400) ** 3
    d, share = A.matched_difference(loss, acc, l2, 0.5 + 0.3 * l2 + 0.1)
    assert d == pytest.approx(0.1, abs=0.03)
    raw = (0.5 + 0.3 * l2 + 0.1).mean() - acc.mean()
    assert abs(raw - 0.1) > 0.03               # unmatched, the loss difference leaks in
    # no overlap of the loss ranges: undefined
    d, share = A.matched_difference(loss, acc, loss + 5, acc)
    assert np.isnan(d) and share == 0.0


def gc_nets(deltas, method="sgd-first-fit"):
    rows = []
    rng = np.random.default_rng(1)
    for s, delta in enumerate(deltas):
        for k in (2, 4):
            loss = rng.random(60)
            rows.append(pd.DataFrame(dict(seed=s, k=k, method="guess-and-check", train_loss=loss,
                                          test_acc=0.7, steps=0)))
            rows.append(pd.DataFrame(dict(seed=s, k=k, method=method, train_loss=loss,
                                          test_acc=0.7 + delta, steps=3)))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("deltas,want", [([0.01, -0.01, 0.0], SUPPORTS), ([0.1, 0.12, 0.09], CONTRADICTS),
                                         ([0.02, 0.06, 0.04], MIXED)])
def test_verdict_gc(deltas, want):
    cells = A.gc_cells(gc_nets(deltas))
    assert A.verdict_gc(cells, "sgd-first-fit")[0].label == want
    # a method that was not run has no cells: every one undefined, reported as mixed
    v, _, bad = A.verdict_gc(cells, "sgd-low-loss")
    assert v.label == MIXED and bad == len(cells[cells.method == "sgd-low-loss"])


def test_reach_finds_the_last_estimable_size():
    rows = []
    for t, twice in (("x1", {4: 500, 8: 150, 16: 20}), ("parity3", {4: 50, 8: 0, 16: 0})):
        for k, n in twice.items():
            rows.append(dict(target=t, k=k, seed=0, accept_rate=1e-3, accepted=n * 3 if t == "x1"
                             else (10 if k == 4 else 0), distinct=n * 2, seen_twice=n))
    g = A.reach({"reach": pd.DataFrame(rows)}, {}).glue
    assert g["reach_simple_targets"] == "x1"
    assert (g["reach_k_ok"], g["reach_k_next"]) == (8, 16)
    assert g["reach_kmax_zero_targets"] == "parity3"


def test_conclusion_sentences_follow_the_verdicts():
    s = A.order_sentence(SUPPORTS, CONTRADICTS, CONTRADICTS, MIXED)
    assert s.startswith("SGD's frequencies rise with volume") and "by either measure" in s
    assert "not settled" in s
    s = A.order_sentence(MIXED, SUPPORTS, SUPPORTS, SUPPORTS)
    assert s.startswith("Whether") and "cannot tell SGD from a volume sampler" in s
    assert "disagree" in A.order_sentence(SUPPORTS, SUPPORTS, CONTRADICTS, SUPPORTS)
    s = A.order_sentence(SUPPORTS, MIXED, CONTRADICTS, MIXED)
    assert "the literature's log-log correlation misses" in s and "by that measure" in s
    assert "the rank correlation reaches" in A.order_sentence(SUPPORTS, SUPPORTS, MIXED, MIXED)
    assert "is not settled" in A.order_sentence(SUPPORTS, MIXED, MIXED, MIXED)
    g = A.gc_sentence(SUPPORTS, CONTRADICTS, MIXED)
    assert "first fit generalises like" in g and "low loss differs" in g and "not settled" in g
    p = A.prior_sentence(SUPPORTS, SUPPORTS, CONTRADICTS, 0.4)
    assert "simpler than uniformly" in p and "0.40" in p and "but not with tanh" in p
    assert "not settled" in A.prior_sentence(MIXED, MIXED, MIXED, 0.4)
    assert "parody" in A.count_sentence(SUPPORTS) and "better than parameter volume" in A.count_sentence(CONTRADICTS)
    assert "does not hold" in A.debate_sentence(SUPPORTS, SUPPORTS, CONTRADICTS)
    assert "behaves like a volume sampler" in A.debate_sentence(SUPPORTS, SUPPORTS, SUPPORTS)
    assert "not settled" in A.debate_sentence(MIXED, MIXED, SUPPORTS)
    assert "moves the function a long way" in A.init_sentence(0.55, 0.5)
    assert "end close to their initial" in A.init_sentence(0.9, 0.5)
