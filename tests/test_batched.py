import pytest
import torch

from countingargs.nets.losses import cross_entropy as batched_cross_entropy
from countingargs.nets.mlp import BatchedMLP


def test_shapes_and_hidden():
    m = BatchedMLP(5, [7, 4, 3, 2], seeds=1)
    x = torch.randn(11, 7)
    out, hidden = m(x, return_hidden=True)
    assert out.shape == (5, 11, 2)
    assert [h.shape for h in hidden] == [(5, 11, 4), (5, 11, 3)]
    assert m.n_params() == 7 * 4 + 4 + 4 * 3 + 3 + 3 * 2 + 2


def test_each_network_matches_a_plain_mlp():
    m = BatchedMLP(3, [6, 5, 2], seeds=[10, 11, 12], activation="tanh", init="gaussian", sigma_b=0.5)
    x = torch.randn(8, 6)
    out = m(x)
    for i in range(3):
        h = torch.tanh(x @ m.weights[0][i] + m.biases[0][i])
        ref = h @ m.weights[1][i] + m.biases[1][i]
        torch.testing.assert_close(out[i], ref)


def test_init_does_not_depend_on_batch_companions():
    a = BatchedMLP(3, [4, 3, 2], seeds=[5, 6, 7])
    b = BatchedMLP(1, [4, 3, 2], seeds=[6])
    torch.testing.assert_close(a.weights[0][1], b.weights[0][0])
    assert not torch.equal(a.weights[0][0], a.weights[0][1])


def test_batched_training_equals_separate_training():
    torch.manual_seed(0)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))

    def train(model, steps=15):
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(steps):
            opt.zero_grad()
            batched_cross_entropy(model(x), y).sum().backward()
            opt.step()
        return model

    both = train(BatchedMLP(2, [4, 6, 3], seeds=[1, 2]))
    alone = train(BatchedMLP(1, [4, 6, 3], seeds=[2]))
    torch.testing.assert_close(both.weights[0][1], alone.weights[0][0], rtol=1e-5, atol=1e-6)


def test_select_copies():
    m = BatchedMLP(4, [3, 2, 2], seeds=0)
    s = m.select([2, 0])
    torch.testing.assert_close(s.weights[0][0], m.weights[0][2])
    s.weights[0].data.zero_()
    assert m.weights[0].abs().sum() > 0


def test_soft_and_hard_cross_entropy_agree_on_one_hot():
    logits = torch.randn(2, 5, 3)
    y = torch.randint(0, 3, (5,))
    torch.testing.assert_close(batched_cross_entropy(logits, y),
                               batched_cross_entropy(logits, torch.nn.functional.one_hot(y, 3).float()))


@pytest.mark.parametrize("kw,msg", [(dict(activation="gelu"), "activation"), (dict(init="xavier"), "init"),
                                    (dict(seeds=[1, 2]), "seeds")])
def test_bad_arguments_are_named(kw, msg):
    with pytest.raises(ValueError, match=msg):
        BatchedMLP(3, [2, 2], **kw)
