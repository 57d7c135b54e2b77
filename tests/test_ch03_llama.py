"""Tests of the llama chapter's library: exact enumeration, classification, sampling, training."""
import numpy as np
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
