"""Chapter 02 (volume): targets, consistency, Lempel-Ziv, the trainer to fit a training set,
guess-and-check (brute-force checks), and every verdict rule of analysis.py on synthetic tables."""
import numpy as np
import pandas as pd
import pytest
import torch

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


def test_lookup_counts_and_zero_for_absent():
    codes = np.array([[1], [5], [9]], dtype=np.int64)
    counts = np.array([3, 1, 7])
    keys = np.array([[9], [2], [1]], dtype=np.int64)
    assert V.lookup(keys, codes, counts).tolist() == [7.0, 0.0, 3.0]


def test_spearman_is_nan_when_undefined():
    assert np.isnan(V._spearman(np.array([1.0, 2.0]), np.array([2.0, 1.0])))
    assert np.isnan(V._spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))
    assert V._spearman(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# analysis: every verdict rule yields each outcome
# ---------------------------------------------------------------------------------------------
def test_band_verdict_outcomes_and_edges():
    assert A.band_verdict(-0.04, 0.05, 0.05, "x").label == SUPPORTS      # touching the edge
    assert A.band_verdict(0.06, 0.2, 0.05, "x").label == CONTRADICTS
    assert A.band_verdict(-0.3, -0.051, 0.05, "x").label == CONTRADICTS
    assert A.band_verdict(0.01, 0.08, 0.05, "x").label == MIXED
    with pytest.raises(ValueError):
        A.band_verdict(np.nan, 0.1, 0.05, "x")


def prior_seeds(diffs):
    return pd.DataFrame(dict(setting="main", seed=range(len(diffs)),
                             lz_mean_prior=100 + np.asarray(diffs, float), lz_mean_uniform=100.0))


@pytest.mark.parametrize("diffs,want", [([-80, -82, -81], SUPPORTS), ([5, 6, 7], CONTRADICTS),
                                        ([-5, 5, 1], MIXED)])
def test_verdict_prior(diffs, want):
    assert A.verdict_prior(prior_seeds(diffs))[0].label == want


def vs_table(spearman, sgd_top10, acc_sgd, acc_pb=0.8):
    rows = []
    for s, (rho, top, acc) in enumerate(zip(spearman, sgd_top10, acc_sgd)):
        rows.append(dict(seed=s, target="x1", optimiser="sgd", spearman=rho, sgd_top10=top,
                         sgd_n=1000, pb_top10_b=100, pb_n_b=1000, acc_sgd=acc, acc_pb=acc_pb,
                         gen_sgd=0.1, gen_pb=0.1))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("rho,want", [([0.3, 0.35, 0.32], SUPPORTS), ([-0.3, -0.35, -0.32], CONTRADICTS),
                                      ([-0.3, 0.3, 0.05], MIXED)])
def test_verdict_order(rho, want):
    assert A.verdict_order(vs_table(rho, [100] * 3, [0.8] * 3))[0].label == want


@pytest.mark.parametrize("top,want", [([110, 95, 100], SUPPORTS), ([600, 650, 700], CONTRADICTS),
                                      ([150, 250, 400], MIXED)])
def test_verdict_proportion(top, want):
    assert A.verdict_proportion(vs_table([0.3] * 3, top, [0.8] * 3))[0].label == want


@pytest.mark.parametrize("acc,want", [([0.78, 0.8, 0.79], SUPPORTS), ([0.52, 0.5, 0.55], CONTRADICTS),
                                      ([0.6, 0.75, 0.66], MIXED)])
def test_verdict_count(acc, want):
    assert A.verdict_count(vs_table([0.3] * 3, [100] * 3, acc))[0].label == want


def gc_table(deltas):
    return pd.DataFrame(dict(seed=range(len(deltas)), k=2, draws=100, accepted=10, acc_gc=0.7,
                             acc_sgd_first_fit=0.71, acc_sgd_low_loss=0.7 + np.asarray(deltas)))


@pytest.mark.parametrize("deltas,want", [([0.01, -0.01, 0.0], SUPPORTS), ([0.1, 0.12, 0.09], CONTRADICTS),
                                         ([0.02, 0.06, 0.04], MIXED)])
def test_verdict_gc(deltas, want):
    assert A.verdict_gc(gc_table(deltas))[0].label == want
