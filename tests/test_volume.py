"""Unit tests for countingargs.volume (chapter 2): exact encoding, counting, seeding, the
batched vs per-network paths, Lempel-Ziv, rejection masks and the batched trainer."""
import math

import numpy as np
import pytest
import torch

from countingargs.chapters.ch02_volume import experiment as V


def hand_built_x1(n=3):
    """n -> 2 -> 1 ReLU network computing x1: unit 0 = relu(x1 - 0.5), out = h0 - 0.25."""
    hidden = [2]
    buf = torch.zeros(1, V.n_params(n, hidden))
    (W1, b1), (W2, b2) = V.unpack_params(buf, n, hidden)
    W1[0, 0, 0] = 1.0      # transposed layout: (fan_out, fan_in)
    b1[0, 0, 0] = -0.5
    W2[0, 0, 0] = 1.0
    b2[0, 0, 0] = -0.25
    return buf, hidden


def test_cube_is_lexicographic():
    X = V.cube(3)
    assert X.shape == (8, 3)
    assert X[5].tolist() == [1.0, 0.0, 1.0]   # 5 = 101, x1 most significant
    assert X[1].tolist() == [0.0, 0.0, 1.0]


def test_hand_built_network_gives_known_bit_pattern():
    n = 3
    buf, hidden = hand_built_x1(n)
    out = V.forward_block(buf, V.cube(n).T.contiguous(), n, hidden)
    bits = out > 0
    assert bits[0].tolist() == [False] * 4 + [True] * 4
    code = V.pack_bits(bits)
    assert code.tolist() == [[0b11110000]]
    assert np.array_equal(V.unpack_bits(code.numpy(), 8)[0], V.target_bits("x1", n))
    ref = V.forward_per_network(buf, V.cube(n), n, hidden)
    assert torch.equal(ref > 0, bits)


@pytest.mark.parametrize("L", [8, 32, 64, 128, 200])
def test_pack_unpack_roundtrip(L):
    rng = np.random.default_rng(L)
    bits = rng.random((50, L)) < 0.5
    bits[0] = True          # bit 63 set: the sign bit of an int64 word
    codes = V.pack_bits_np(bits)
    assert codes.shape == (50, V.n_words(L))
    assert np.array_equal(V.unpack_bits(codes, L), bits)


def test_count_rows_exact():
    codes = np.array([[1, 2], [3, 4], [1, 2], [1, 3], [3, 4], [1, 2]], dtype=np.int64)
    u, c = V.count_rows(codes)
    assert u.tolist() == [[1, 2], [1, 3], [3, 4]]
    assert c.tolist() == [3, 1, 2]


def test_counts_add_up_and_codes_distinct():
    fc = V.sample_functions(4, [8, 8], 3000, 1.0, 0.1, "relu", seed=1, chunk=512)
    assert fc.n_samples == 3000
    assert len(np.unique(fc.codes, axis=0)) == fc.n_distinct
    assert (fc.counts >= 1).all()


def test_seeding_reproduces_counts_independently_of_workers_and_blocks():
    a = V.sample_functions(5, [16, 16], 1000, 1.0, 0.1, "relu", seed=7, chunk=300, workers=1,
                           block=64)
    b = V.sample_functions(5, [16, 16], 1000, 1.0, 0.1, "relu", seed=7, chunk=300, workers=2,
                           block=32)
    c = V.sample_functions(5, [16, 16], 1000, 1.0, 0.1, "relu", seed=8, chunk=300, workers=1)
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.counts, b.counts)
    assert not (a.codes.shape == c.codes.shape and np.array_equal(a.codes, c.codes)
                and np.array_equal(a.counts, c.counts))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_batched_and_per_network_paths_agree(activation):
    n, hidden = 7, [40, 40]
    buf = V.draw_params(40, n, hidden, 1.0, 0.3, V.chunk_generator(3, 0))
    fast = V.forward_block(buf, V.cube(n).T.contiguous(), n, hidden, activation)
    slow = V.forward_per_network(buf, V.cube(n), n, hidden, activation)
    assert torch.allclose(fast, slow, atol=1e-4, rtol=1e-4)
    assert torch.equal(V.pack_bits(fast > 0), V.pack_bits(slow > 0))


def test_sample_chunk_matches_sampler_and_returns_hidden():
    n, hidden = 5, [12, 10]
    fc, samples = V.sample_functions(n, hidden, 200, 1.0, 0.1, "relu", seed=4, chunk=100,
                                     keep_samples=True)
    ch = V.sample_chunk(n, hidden, 100, 1.0, 0.1, "relu", seed=4, chunk_index=1)
    assert np.array_equal(ch.codes.numpy(), samples[100:200])
    assert [h.shape for h in ch.hidden] == [(100, 32, 12), (100, 32, 10)]
    assert (ch.hidden[0] >= 0).all()


def test_gaussian_scaling():
    n, hidden = 7, [40, 40]
    buf = V.draw_params(4000, n, hidden, 2.0, 0.5, V.chunk_generator(0, 0))
    (W1, b1), (W2, b2), (W3, b3) = V.unpack_params(buf, n, hidden)
    assert abs(W1.std().item() - 2.0 / math.sqrt(7)) < 0.01
    assert abs(W2.std().item() - 2.0 / math.sqrt(40)) < 0.005
    assert abs(b2.std().item() - 0.5) < 0.01


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
    codes = V.pack_bits_np(bits)
    S = np.array([0, 3, 9, 17, 30])
    test = np.setdiff1d(np.arange(L), S)
    want = (bits[:, S] == t[S]).all(1)
    assert np.array_equal(V.consistent_mask(codes, t, S, L), want)
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


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="activation"):
        V.sample_functions(4, [8], 10, activation="gelu")
    with pytest.raises(ValueError, match="n_inputs"):
        V.cube(0)
    with pytest.raises(ValueError, match="sigma_w"):
        V.sample_functions(4, [8], 10, sigma_w=0.0)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("adam", 0.02)])
def test_trainer_fits_and_networks_are_independent(optimizer, lr):
    n = 4
    X = V.cube(n)
    t = V.target_bits("x1|x2", n)
    S = np.array([0, 2, 5, 8, 11, 15])
    y = torch.from_numpy(t[S])
    big = V.train_to_fit(X[S], y, X, 8, [16, 16], 1.0, 0.1, "relu", optimizer, lr, None, 500,
                         seed=3, chunk=4)
    small = V.train_to_fit(X[S], y, X, 4, [16, 16], 1.0, 0.1, "relu", optimizer, lr, None, 500,
                           seed=3, chunk=4)
    assert big.fitted.all()
    assert V.consistent_mask(big.codes, t, S, 2 ** n).all()
    # the first chunk trains identically whether or not other networks share the batch
    assert np.array_equal(big.codes[:4], small.codes)
    assert np.array_equal(big.steps[:4], small.steps)
    # step 0 = the network already fitted at initialisation, as in the sampler
    init = V.sample_functions(n, [16, 16], 4, 1.0, 0.1, "relu", seed=3, chunk=4,
                              keep_samples=True)[1]
    at_init = V.consistent_mask(init, t, S, 2 ** n)
    assert np.array_equal(small.steps[:4] == 0, at_init)


def test_guess_and_check_accepts_only_fitting_networks():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.random((40, 6)), dtype=torch.float32)
    y = x[:, 0] > 0.5
    g = V.guess_and_check(x[:3], y[:3], x[3:], y[3:], [8], 10, 20000, seed=1, chunk=2000)
    assert g.accepted >= 10 and g.draws % 2000 == 0
    out = V.forward_block(g.params, x[:3].T.contiguous(), 6, [8])
    assert ((out > 0) == y[:3]).all()
    assert g.test_acc.shape == (g.accepted,)
