"""Unit tests for the shared random-network sampler (countingargs.nets.sampler): exact encoding,
counting, seeding, the batched vs per-network paths, the hidden activations of a chunk."""
import math

import numpy as np
import pytest
import torch

from countingargs.data.cube import cube_bits
from countingargs.nets import sampler as V
from countingargs.nets.seeding import chunk_generator


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
    assert np.array_equal(V.unpack_bits(code.numpy(), 8)[0], cube_bits(n)[:, 0])
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
    buf = V.draw_params(40, n, hidden, 1.0, 0.3, chunk_generator(3, 0))
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
    buf = V.draw_params(4000, n, hidden, 2.0, 0.5, chunk_generator(0, 0))
    (W1, b1), (W2, b2), (W3, b3) = V.unpack_params(buf, n, hidden)
    assert abs(W1.std().item() - 2.0 / math.sqrt(7)) < 0.01
    assert abs(W2.std().item() - 2.0 / math.sqrt(40)) < 0.005
    assert abs(b2.std().item() - 0.5) < 0.01


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="activation"):
        V.sample_functions(4, [8], 10, activation="gelu")
    with pytest.raises(ValueError, match="n_inputs"):
        V.cube(0)
    with pytest.raises(ValueError, match="sigma_w"):
        V.sample_functions(4, [8], 10, sigma_w=0.0)


def test_pm1_encoding_feeds_the_same_networks_the_signed_cube():
    n, hidden = 4, [6, 5]
    x = V.cube(n, encoding="pm1")
    assert set(x.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(x, V.cube(n) * 2 - 1)
    fc, codes = V.sample_functions(n, hidden, 50, 1.0, 0.1, "tanh", seed=2, chunk=25,
                                   keep_samples=True, encoding="pm1")
    ch = V.sample_chunk(n, hidden, 25, 1.0, 0.1, "tanh", seed=2, chunk_index=1, encoding="pm1")
    assert np.array_equal(ch.codes.numpy(), codes[25:])
    ref = V.forward_per_network(ch.params, x, n, hidden, "tanh")
    assert torch.equal(V.pack_bits(ref > 0), ch.codes)
    # odd network (tanh, no biases) on the signed cube: f(-x) = -f(x), so no constant function
    odd = V.sample_functions(n, hidden, 200, 1.0, 0.0, "tanh", seed=3, keep_samples=True,
                             encoding="pm1")[1]
    bits = V.unpack_bits(odd, 2 ** n)
    assert np.array_equal(bits, ~bits[:, ::-1])
    with pytest.raises(ValueError, match="encoding"):
        V.sample_functions(n, hidden, 10, encoding="pm")
