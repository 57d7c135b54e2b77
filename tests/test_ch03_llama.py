"""Tests of the llama chapter's library: exact enumeration, classification, sampling, training."""
import numpy as np
import pandas as pd
import pytest
import torch

from countingargs.chapters.ch03_llama import experiment as L
from countingargs.estimators.probes import ridge_r2_heldout


def _net(hidden_w, hidden_b, v, c, n=2):
    """Truth tables of one hand-built threshold network, in classify()'s format."""
    x = L.cube(n)
    w = torch.tensor(hidden_w)
    b = torch.tensor(hidden_b)
    hidden = ((x @ w.T + b) > 0).T.to(torch.int64)  # (H, X)
    return hidden[None], torch.tensor([v]), torch.tensor([c])


def test_enumeration_counts_every_configuration():
    for n, h in [(2, 2), (3, 2), (2, 3)]:
        res = L.enumerate_threshold_nets(n, h)
        assert res["counted"] == res["n_configs"] == 3 ** (h * (n + 1) + h + 1)
        assert res["volume"].sum() == res["n_configs"]


def test_factorised_enumeration_equals_brute_force():
    for n, h in [(2, 2), (3, 2)]:
        np.testing.assert_array_equal(L.enumerate_threshold_nets(n, h)["volume"],
                                      L.enumerate_bruteforce(n, h))


def test_hidden_function_multiplicities_sum_to_configurations():
    bits, mult = L.hidden_functions(3)
    assert mult.sum() == 3 ** 4
    assert len(np.unique(L.func_code(bits).numpy())) == len(bits)


def test_hand_built_straightforward_and():
    # h1 = x1, h2 = x2 (columns of the book's cube, x1 most significant), out = AND
    code, net, status = L.classify(*_net([[1, 0], [0, 1]], [0, 0], [1, 1], -1))
    assert int(code) == 0b1000  # true only on input 3 = (1, 1)
    assert int(net) == L.STRAIGHT
    assert status.tolist() == [[L.UNIT_USED, L.UNIT_USED]]


def test_hand_built_unread_unit():
    # h1 = x1 read; h2 = x2 computed but output weight 0
    code, net, status = L.classify(*_net([[1, 0], [0, 1]], [0, 0], [1, 0], 0))
    assert int(code) == 0b1100 and int(net) == L.UNREAD
    assert status.tolist() == [[L.UNIT_USED, L.UNIT_UNREAD]]


def test_hand_built_cancelled_pair():
    # h1 = x1 carries the answer; h2 = h3 = x2 are read with weights +1 and -1: the llama x2
    # is drawn twice and cancels exactly, so the output is x1
    x = L.cube(2)
    w = torch.tensor([[1, 0], [0, 1], [0, 1]])
    hidden = ((x @ w.T) > 0).T.to(torch.int64)[None]
    code, net, status = L.classify(hidden, torch.tensor([[1, 1, -1]]), torch.tensor([0]))
    assert int(code) == 0b1100  # out = x1
    assert int(net) == L.CANCELLED
    assert status.tolist() == [[L.UNIT_USED, L.UNIT_CANCELLED, L.UNIT_CANCELLED]]


def test_hand_built_redundant_unit_is_cancelled_not_straightforward():
    # h1 = x1 AND x2 (w = (1, 1), b = -1), h2 = x1; out = [h1 + h2 - 1 > 0] = h1 AND h2 = AND:
    # h2 is read but can be replaced by the constant 1 without changing the output
    code, net, status = L.classify(*_net([[1, 1], [1, 0]], [-1, 0], [1, 1], -1))
    assert int(code) == 0b1000
    assert status.tolist() == [[L.UNIT_USED, L.UNIT_CANCELLED]]
    assert int(net) == L.CANCELLED


def test_constant_unit_is_not_a_llama():
    code, net, status = L.classify(*_net([[1, 0], [0, 0]], [0, 1], [1, 1], -1))
    assert status.tolist() == [[L.UNIT_USED, L.UNIT_CONST]]
    assert int(net) == L.STRAIGHT and int(code) == 0b1100


def test_counting_table_is_consistent():
    res = L.enumerate_threshold_nets(2, 2)
    df = L.counting_table(res)
    assert (df.v_total == df.v_straightforward + df.v_unread + df.v_cancelled).all()
    # XOR (code 0b0110) needs both units: no spare capacity, no llama
    xor = df[df.f_code == 0b0110].iloc[0]
    assert xor.v_cancelled == 0 and xor.v_unread == 0 and xor.v_straightforward > 0
    # summing per-g volumes over g can only over-count the union
    assert (df.sum_g_cancelled >= df.v_cancelled).all()


def test_feature_family_is_deduplicated_up_to_complement():
    fam = L.feature_family(7, n_random=20, seed=0)
    keys = {tuple(b) for b in fam.bits}
    assert len(keys) == len(fam)
    assert all(not b[0] for b in fam.bits)  # canonical: bit 0 cleared
    assert (fam.kind == "literal").sum() == 7


def test_llama_units_finds_a_planted_literal():
    from countingargs.nets.sampler import draw_params, unpack_params

    fam = L.feature_family(7, n_random=8, seed=0)
    words = L._canon_words(torch.as_tensor(np.stack(fam.bits.to_list())))
    bits = torch.as_tensor(np.stack(fam.bits.to_list()))
    g = torch.Generator().manual_seed(0)
    buf = draw_params(2, 7, [40, 40], 1.0, 0.1, g)
    layers = unpack_params(buf, 7, [40, 40])
    # plant unit 0 of layer 1 of network 0 as [x_3 - 0.5 > 0] = literal x3 (x_1 most significant)
    layers[0][0][0, 0].zero_()
    layers[0][0][0, 0, 2] = 1.0
    layers[0][1][0, 0] = -0.5
    res = L.llama_units(buf, words, bits)
    assert bool(res["any_llama"][0])
    assert res["n_distinct_g"][0] >= 1
    assert res["n_decodable"].shape == (2,)


def test_llama_features_are_not_linear_in_the_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(600, 16, generator=g)
    z_tr, z_te = L.llama_features(x[:400], x[400:], 3, seed=1)
    assert z_tr.mean(0).abs().max() < 1e-4 and (z_tr.std(0) - 1).abs().max() < 1e-4
    r2_lin = ridge_r2_heldout(x[:400], z_tr, x[400:], z_te)
    r2_sq = ridge_r2_heldout(torch.cat([x[:400], (x[:400, :, None] * x[:400, None]).flatten(1)], 1),
                       z_tr, torch.cat([x[400:], (x[400:, :, None] * x[400:, None]).flatten(1)], 1),
                       z_te)
    assert r2_lin.mean() < 0.2 < 0.9 < r2_sq.mean()


def test_train_llama_pairs_matches_loss_and_encodes_the_llama():
    from countingargs.data.digits import digits_split

    d = digits_split()
    zs = [L.llama_features(d.x_pool[:400], d.x_test, 4, seed=s) for s in (10, 11)]
    z, z_te = torch.stack([a for a, _ in zs]), torch.stack([b for _, b in zs])  # per-seed llamas
    c_tr, c_te = L.llama_features(d.x_pool[:400], d.x_test, 16, seed=2)
    x, y = d.x_pool[:400], d.y_pool[:400]
    model, info = L.train_llama_pairs(x, y, z, [0, 1], hidden=(16, 16),
                                      target_loss=0.3, max_steps=800, lr=1e-2)
    assert info.reached.all()
    assert (info.train_ce <= 0.3).all() and (info.train_ce > 0.2).all()
    tab = L.encoding_table(model, x, d.x_test, z, z_te, c_tr, c_te, info)
    llama, plain = tab[tab.condition == "llama"], tab[tab.condition == "plain"]
    # paired: each llama network encodes its llama better than its plain partner (same init)
    assert (llama.r2_llama.values > plain.r2_llama.values).all()
    assert (llama.llama_rank.values > plain.llama_rank.values).all()
    assert (tab.r2_input_llama < 0.2).all()
    with pytest.raises(ValueError, match="llama targets"):
        L.train_llama_pairs(x, y, z[:1], [0, 1], max_steps=1)


def test_support_uses_the_books_bit_order():
    # x1 is the most significant column: the function x1 (true on rows 2, 3) depends on column 0
    assert L.support(0b1100, 2) == frozenset({0})
    assert L.support(0b1010, 2) == frozenset({1})
    assert L.support(0b0110, 2) == frozenset({0, 1})
    assert L.support(0b1111, 2) == frozenset()


def _classify_by_variants(hidden, v, c):
    """The search over every (set of units, constants) pair, written out directly: the oracle
    for :func:`classify`'s search over sets only."""
    import itertools

    hidden, v, c = hidden.long(), v.long(), c.long()
    r, h, _ = hidden.shape
    pre = (v[:, :, None] * hidden).sum(1) + c[:, None]
    out = pre > 0
    nonconst = hidden.amax(-1) != hidden.amin(-1)
    removable = torch.zeros(r, h, dtype=torch.bool)
    for size in range(1, h + 1):
        for sub in itertools.combinations(range(h), size):
            sub = list(sub)
            for consts in itertools.product((0, 1), repeat=size):
                k = torch.tensor(consts)
                new = pre - (v[:, sub, None] * hidden[:, sub]).sum(1) + (v[:, sub] * k).sum(1)[:, None]
                same = ((new > 0) == out).all(1)
                removable[:, sub] |= same[:, None]
    status = torch.full_like(v, L.UNIT_CONST)
    read = v != 0
    status[nonconst & ~read] = L.UNIT_UNREAD
    status[nonconst & read] = L.UNIT_USED
    status[nonconst & read & removable] = L.UNIT_CANCELLED
    return status


def test_classify_equals_the_search_over_every_set_and_constant():
    g = torch.Generator().manual_seed(3)
    for n, h in [(2, 2), (2, 4), (3, 3), (2, 5)]:
        x = L.cube(n)
        cfg = torch.randint(-1, 2, (3000, h * (n + 1) + h + 1), generator=g)
        hw = cfg[:, : h * (n + 1)].reshape(-1, h, n + 1)
        hidden = ((torch.einsum("xi,rhi->rhx", x, hw[:, :, :n]) + hw[:, :, n:]) > 0).long()
        v, c = cfg[:, h * (n + 1): h * (n + 1) + h], cfg[:, -1]
        _, net, status = L.classify(hidden, v, c)
        assert torch.equal(status, _classify_by_variants(hidden, v, c)), (n, h)
        assert (net == L.CANCELLED).any() and (net == L.UNREAD).any()


def test_sampled_counts_are_multinomial_draws_of_the_exact_volumes():
    # n = 2, H = 2: the exact class shares, and the sampled counts within 5 standard errors
    exact = L.enumerate_threshold_nets(2, 2)["volume"] / 3 ** 9
    d = L.sample_threshold_nets(2, 2, 200_000, seed=7, chunk=50_000)
    assert d.n_samples.iloc[0] == 200_000
    k = np.zeros_like(exact)
    k[d.f_code.values] = d[["k_straightforward", "k_unread", "k_cancelled"]].values
    assert k.sum() == 200_000
    se = np.sqrt(exact * (1 - exact) / 200_000) + 1e-12
    assert (np.abs(k / 200_000 - exact) <= 5 * se + 1e-9).all()
    again = L.sample_threshold_nets(2, 2, 200_000, seed=7, chunk=50_000)
    pd.testing.assert_frame_equal(d, again)


# =============================================================================================
# analysis: every rule yields each outcome on small synthetic tables
from countingargs.chapters.ch03_llama import analysis as A  # noqa: E402
from countingargs.stats import CONTRADICTS, MIXED, SUPPORTS  # noqa: E402


def test_ratio_stats_on_hand_made_volumes():
    k = np.array([[10.0, 0.0, 1.0],    # R_C = -1, R_F = log10(1/10)
                  [1.0, 1.0, 20.0]])   # R_C = 1,  R_F = log10(21)
    st = A.ratio_stats(k)
    assert st["mean_rc"] == pytest.approx(0.0)
    assert st["pooled_rc"] == pytest.approx(np.log10(21 / 12))
    assert st["mean_rf"] == pytest.approx((np.log10(0.1) + np.log10(21)) / 2)
    assert st["n_below"] == 1 and st["n_above"] == 1
    # an empty class makes the mean over targets undefined, not the pooled ratio
    st = A.ratio_stats(np.array([[5.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    assert np.isnan(st["mean_rc"]) and np.isfinite(st["pooled_rc"])


def _width(rows):
    """A width table from (n, h, source, value, lo, hi) rows for every statistic."""
    out = []
    for n, h, src, v, lo, hi in rows:
        r = {"n": n, "h": h, "source": src}
        for key in A.STATS:
            r[key], r[key + "_lo"], r[key + "_hi"] = v, lo, hi
        out.append(r)
    return pd.DataFrame(out)


@pytest.mark.parametrize("last, label", [((-0.3, -0.4, -0.2), SUPPORTS),
                                         ((0.3, 0.2, 0.4), CONTRADICTS),
                                         ((0.05, -0.05, 0.15), MIXED),
                                         ((-0.1, -0.2, 0.0), MIXED)])  # touching 0
def test_width_verdict_outcomes(last, label):
    wt = _width([(2, 3, "exact", -0.6, -0.6, -0.6), (2, 5, "exact", -0.2, -0.2, -0.2),
                 (2, 5, "sampled", -0.21, -0.25, -0.17), (2, 8, "sampled", *last)])
    v, d = A.width_verdict(wt, 2, "C")
    assert v.label == label
    assert d["h"] == 8 and d["source"] == "sampled"
    # the exact value is used where both exist
    assert list(A._series(wt, 2, "mean_rc").source) == ["exact", "exact", "sampled"]


def test_width_verdict_describes_the_sign_change_and_refuses_bad_input():
    wt = _width([(2, 3, "exact", -0.6, -0.6, -0.6), (2, 6, "sampled", -0.1, -0.2, 0.0),
                 (2, 7, "sampled", 0.1, 0.05, 0.15)])
    v, d = A.width_verdict(wt, 2, "C")
    assert v.label == CONTRADICTS and d["change"] == "changes sign between H = 6 and H = 7"
    assert d["slope"] > 0
    wt2 = _width([(3, 2, "exact", -0.8, -0.8, -0.8), (3, 4, "sampled", -0.5, -0.6, -0.4)])
    assert A.width_verdict(wt2, 3, "F")[1]["change"] == "stays below zero up to H = 4"
    nan = _width([(2, 3, "sampled", np.nan, np.nan, np.nan)])
    assert A.width_verdict(nan, 2, "C")[0].label == MIXED
    with pytest.raises(ValueError, match="no sizes"):
        A.width_verdict(wt, 3, "C")
    with pytest.raises(ValueError, match="version"):
        A.width_verdict(wt, 2, "X")


def test_width_table_and_sampler_check_on_a_real_enumeration():
    res = L.enumerate_threshold_nets(2, 2)
    cnt = L.counting_table(res)
    extra = cnt.v_unread + cnt.v_cancelled
    cnt["log10_ratio_free"] = np.where(extra > 0, np.log10(extra / cnt.v_straightforward), np.nan)
    # "sampling" the exact volumes themselves: the interval must cover the exact value
    vol = res["volume"].astype(np.int64)
    seen = np.nonzero(vol.sum(1))[0]
    samp = pd.DataFrame({"n": 2, "h": 2, "f_code": seen, "k_straightforward": vol[seen, 0],
                         "k_unread": vol[seen, 1], "k_cancelled": vol[seen, 2],
                         "n_samples": int(vol.sum())})
    wt = A.width_table(cnt, samp, 200)
    chk = A.sampler_check(wt)
    assert len(chk) and chk.covered.all()
    np.testing.assert_allclose(chk.estimate, chk.exact)
    bad = samp.assign(n_samples=samp.n_samples + 1)
    with pytest.raises(ValueError, match="add up"):
        A.width_table(cnt, bad, 200)
    with pytest.raises(ValueError, match="at least 100"):
        A.width_table(cnt, samp, 10)


@pytest.mark.parametrize("k, label", [(100, SUPPORTS), (900, CONTRADICTS), (500, MIXED),
                                      (470, MIXED)])
def test_share_verdict_outcomes(k, label):
    v, (e, lo, hi) = A.share_verdict(k, 1000, "share")
    assert v.label == label and lo <= e <= hi


def _settings(diffs, los, his, stationary=True, toys=True):
    return pd.DataFrame({"setting": range(len(diffs)), "diff": diffs, "diff_lo": los,
                         "diff_hi": his, "stationary": stationary, "toys_pass": toys})


def test_llc_rule_outcomes():
    assert A.llc_rule(_settings([1.0, 1.5, 1.2], [0.5, 0.8, 0.4], [1.5, 2.2, 2.0])).label == SUPPORTS
    assert A.llc_rule(_settings([-1.0, -1.5], [-1.6, -2.0], [-0.4, -1.0])).label == CONTRADICTS
    # the sign is not kept: one interval includes 0 (an interval touching 0 counts as including it)
    v = A.llc_rule(_settings([1.0, 0.5], [0.5, 0.0], [1.5, 1.0]))
    assert v.label == MIXED and "includes 0 at setting(s) 1" in v.reason
    # opposite sides
    v = A.llc_rule(_settings([1.0, -1.0], [0.5, -1.5], [1.5, -0.5]))
    assert v.label == MIXED and "sign changes" in v.reason
    # the size is not kept
    v = A.llc_rule(_settings([1.0, 3.0], [0.5, 2.0], [1.5, 4.0]))
    assert v.label == MIXED and "size is not kept" in v.reason
    # drifting chains, failed toys
    v = A.llc_rule(_settings([1.0, 1.2], [0.5, 0.6], [1.5, 1.8], stationary=[True, False]))
    assert v.label == MIXED and "drift" in v.reason
    v = A.llc_rule(_settings([1.0, 1.2], [0.5, 0.6], [1.5, 1.8], toys=[False, True]))
    assert v.label == MIXED and "toys" in v.reason
    with pytest.raises(ValueError, match="missing"):
        A.llc_rule(_settings([1.0, np.nan], [0.5, 0.6], [1.5, 1.8]))
    with pytest.raises(ValueError, match="no estimator setting"):
        A.llc_rule(_settings([], [], []))


def _llc_rows(diffs_by_setting, drift=0.0):
    rows = []
    for si, diffs in enumerate(diffs_by_setting):
        for seed, d in enumerate(diffs):
            for cond, val in (("plain", 10.0), ("llama", 10.0 + d)):
                rows.append({"setting": si, "step_size": 3e-4, "localization": 3.0 + si,
                             "n_burnin": 100, "seed": seed, "condition": cond, "reached": True,
                             "diverged": False, "llc": val, "drift": drift})
    return pd.DataFrame(rows)


def test_llc_setting_table_counts_pairs_and_checks_stationarity():
    st = A.llc_setting_table(_llc_rows([[1.0, 2.0, 1.5, -0.5]], drift=0.2),
                             toys_pass=pd.Series({0: True}))
    r = st.iloc[0]
    assert r.n_pairs == 4 and r.k_llama_higher == 3 and r["diff"] == pytest.approx(1.0)
    assert bool(r.stationary) and bool(r.toys_pass)
    st = A.llc_setting_table(_llc_rows([[1.0, 2.0, 1.5]], drift=0.8))
    assert not bool(st.iloc[0].stationary)
    with pytest.raises(ValueError, match="fewer than two"):
        A.llc_setting_table(_llc_rows([[1.0]]))


def _vol_rows(plain, llama, kind="relative"):
    rows = []
    for seed, (p, q) in enumerate(zip(plain, llama)):
        for cond, f in (("plain", p), ("llama", q)):
            rows.append({"kind": kind, "seed": seed, "condition": cond, "reached": True,
                         "fraction": f, "weight_norm": 10.0})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("plain, llama, label", [([0.6, 0.66, 0.69], [0.5, 0.55, 0.6], SUPPORTS),
                                                 ([0.4, 0.44, 0.51], [0.5, 0.55, 0.6], CONTRADICTS),
                                                 ([0.6, 0.5, 0.55], [0.5, 0.55, 0.6], MIXED)])
def test_volume_rule_outcomes(plain, llama, label):
    v, d = A.volume_rule(_vol_rows(plain, llama))
    assert v.label == label and d["n_pairs"] == 3


def test_volume_rule_refuses_a_missing_kind():
    with pytest.raises(ValueError, match="no local-volume rows"):
        A.volume_rule(_vol_rows([0.5, 0.6], [0.4, 0.5], kind="absolute"), "relative")


def test_toy_summary_applies_the_tolerances():
    rows = []
    for toy, lam, m, exp, est in (("quartic", 0.25, 1, 0.23, 0.22), ("regular_d2", 1.0, 1, 0.99, 0.8),
                                  ("normal_crossing", 0.5, 2, 0.31, 0.30)):
        for c, noise in enumerate((-0.01, 0.01)):
            rows.append({"setting": 0, "step_size": 3e-4, "localization": 3.0, "n_burnin": 10,
                         "toy": toy, "true_lambda": lam, "multiplicity": m, "expected": exp,
                         "chain": c, "llc": est + noise, "drift": 0.0})
    s = A.toy_summary(pd.DataFrame(rows)).set_index("toy")
    assert s.loc["quartic", "passes"] and s.loc["normal_crossing", "passes"]
    assert not s.loc["regular_d2", "passes"]  # 20% below lambda


def test_check_params_names_the_bad_parameter():
    good = {"sample_seeds": 2, "llc_seeds": 2, "train_seeds": 4, "enum_sizes": [[2, 2]],
            "sampled_sizes": [[2, 3]], "llc_alt": [[3e-4, 4.0, 100]], "vol_radii_rel": [0.1]}
    L.check_params(good)
    for key, bad, msg in (("llc_seeds", 9, "cannot exceed"), ("sampled_sizes", [[2]], "sampled_sizes"),
                          ("llc_alt", [[3e-4, 4.0]], "llc_alt"), ("vol_radii_rel", [1.5], "fractions")):
        with pytest.raises(ValueError, match=msg):
            L.check_params({**good, key: bad})


def test_sampled_intervals_cover_the_exact_ratio_at_their_nominal_rate():
    # 40 independent samples of 20,000 configurations at n = 2, H = 2 against the exact count
    cnt = L.run_enumeration([[2, 2]])
    hits = []
    for s in range(40):
        wt = A.width_table(cnt, L.sample_threshold_nets(2, 2, 20_000, seed=500 + s), 400)
        chk = A.sampler_check(wt).set_index("statistic")
        hits.append(chk.loc[["pooled_rc", "pooled_rf"], "covered"].to_numpy())
    rate = np.mean(hits, axis=0)
    assert (rate >= 0.8).all(), rate  # nominal 0.95; 40 draws put 0.8 four standard errors below


def test_the_reference_setting_stays_out_of_the_llc_rule():
    rows = _llc_rows([[1.0, 1.2, 1.1], [-5.0, -6.0, -5.5]])
    rows["reference"] = rows.setting == 1
    st = A.llc_setting_table(rows)
    assert list(st.setting) == [0]
    assert list(A.llc_setting_table(rows, reference=True).setting) == [1]


# -- the chunked heavy steps: training and LLC ------------------------------------------------
_TRAIN = dict(llama_k=2, n_controls=4, hidden=8, aux_weight=1.0, lr=1e-2, target_loss=1.0,
              max_steps=60)
_LLC = dict(n_chains=2, n_draws=8, reference=[3e-4, 100.0, 3])


@pytest.fixture(scope="module")
def small_run():
    """Training of 3 seeds in one chunk and its LLC in one chunk per setting (in process)."""
    trained, model, data = L.run_training([0, 1, 2], seeds_per_chunk=3, scheduler="", **_TRAIN)
    llc = L.run_llc(model, data, trained, 2, [[3e-4, 3.0, 4]], networks_per_chunk=4,
                    scheduler="", **_LLC)
    return trained, model, data, llc


def _same_training(a, b):
    assert a[0].to_csv() == b[0].to_csv()
    for p, q in zip(a[1].parameters(), b[1].parameters()):
        assert p.detach().numpy().tobytes() == q.detach().numpy().tobytes()


def test_chunk_layout_does_not_change_training_or_llc(small_run):
    trained, model, data, llc = small_run
    assert trained.reached.any() and len(trained) == 6 and list(trained.condition[:3]) == ["plain"] * 3
    _same_training(small_run, L.run_training([0, 1, 2], seeds_per_chunk=1, scheduler="", **_TRAIN))
    one = L.run_llc(model, data, trained, 2, [[3e-4, 3.0, 4]], networks_per_chunk=1,
                    scheduler="", **_LLC)
    assert one.to_csv() == llc.to_csv()
    assert len(llc) == 8 and llc.reference.sum() == 4 and np.isfinite(llc.llc).all()
    # data other than the digits pool travels with the chunks
    other = {"x": data["x"][:500].clone(), "y": data["y"][:500].clone()}
    a = L.run_llc(model, other, trained, 2, [[3e-4, 3.0, 4]], networks_per_chunk=1, scheduler="",
                  **_LLC)
    assert a.to_csv() == L.run_llc(model, other, trained, 2, [[3e-4, 3.0, 4]],
                                   networks_per_chunk=3, scheduler="", **_LLC).to_csv()
    assert a.to_csv() != llc.to_csv()
    with pytest.raises(ValueError, match="seeds_per_chunk"):
        L.run_training([0], seeds_per_chunk=0, **_TRAIN)
    with pytest.raises(ValueError, match="networks_per_chunk"):
        L.run_llc(model, data, trained, 2, [[3e-4, 3.0, 4]], networks_per_chunk=0, **_LLC)


def test_training_and_llc_on_local_cluster_1_and_2_workers_match_in_process(small_run, workers_env):
    from countingargs import chunks

    trained, model, data, llc = small_run
    for sched, spc, npc in (("local:1", 2, 3), ("local:2", 1, 1)):
        _same_training(small_run, L.run_training([0, 1, 2], seeds_per_chunk=spc, scheduler=sched,
                                                 **_TRAIN))
        got = L.run_llc(model, data, trained, 2, [[3e-4, 3.0, 4]], networks_per_chunk=npc,
                        scheduler=sched, **_LLC)
        assert got.to_csv() == llc.to_csv()
    rows = {(h["name"], h["scheduler"], h["workers"]) for h in chunks.history()}
    assert {("train_llama_pairs", "local:2", 2), ("llc", "local:1", 1)} <= rows
