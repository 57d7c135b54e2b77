"""Shared nets: the one trainer (freezing at the target), seeding, the functional forward."""
import numpy as np
import pytest
import torch

from countingargs.nets import losses, seeding
from countingargs.nets.mlp import BatchedMLP, forward
from countingargs.nets.train import train_until


def _quadratic(targets):
    """M one-parameter 'networks' w, loss (w - target)^2."""
    def loss_fn(params, ids, step):
        return ((params[0][:, 0] - targets[ids]) ** 2)
    return loss_fn


def test_sgd_on_a_quadratic_stops_each_network_at_the_first_check_below_the_target():
    targets = torch.tensor([1.0, 2.0, 4.0])
    w0 = [torch.zeros(3, 1)]
    lr = 0.1
    res = train_until(w0, _quadratic(targets), lr=lr, max_steps=200, optimizer="sgd",
                      reached=lambda p, ids, t: (p[0][:, 0] - targets[ids]) ** 2 <= 0.01)
    # closed form: w_t = target * (1 - (1 - 2 lr)^t); loss <= 0.01 once |target| (0.8)^t <= 0.1
    expected = [int(np.ceil(np.log(0.1 / abs(t)) / np.log(1 - 2 * lr))) for t in targets.tolist()]
    assert res.steps.tolist() == expected and res.reached.all()
    for i, t in enumerate(targets.tolist()):
        assert res.params[0][i, 0].item() == pytest.approx(t * (1 - 0.8 ** expected[i]), rel=1e-5)
    assert w0[0].abs().sum() == 0          # inputs are not modified


def test_frozen_networks_do_not_change_the_others_and_compact_equals_snapshot():
    torch.manual_seed(0)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    net = BatchedMLP(6, [5, 8, 3], seeds=list(range(6)))
    params = [p.detach() for p in net.parameters()]

    def loss_fn(p, ids, t):
        return losses.cross_entropy(forward(list(zip(p[:2], p[2:])), x), y)

    def reached(p, ids, t):
        return loss_fn(p, ids, t) <= torch.tensor([0.3, 2.0, 0.3, 2.0, 0.3, 0.3])[ids]

    a = train_until(params, loss_fn, lr=0.05, max_steps=300, reached=reached, compact=True)
    b = train_until(params, loss_fn, lr=0.05, max_steps=300, reached=reached, compact=False)
    assert (a.steps == b.steps).all() and (a.reached == b.reached).all()
    for pa, pb in zip(a.params, b.params):
        assert torch.allclose(pa, pb, atol=1e-6)
    # network 0 trained alone ends where it ended in the batch
    alone = train_until([p[:1] for p in params], loss_fn, lr=0.05, max_steps=300,
                        reached=lambda p, ids, t: loss_fn(p, ids, t) <= 0.3)
    assert alone.steps[0] == a.steps[0]
    for pa, p1 in zip(a.params, alone.params):
        assert torch.allclose(pa[:1], p1, atol=1e-6)


def test_unreached_networks_keep_their_last_state_and_errors_are_named():
    res = train_until([torch.zeros(2, 1)], _quadratic(torch.tensor([1.0, 50.0])), lr=0.1,
                      max_steps=5, optimizer="sgd",
                      reached=lambda p, ids, t: torch.zeros(len(ids), dtype=torch.bool))
    assert not res.reached.any() and res.steps.tolist() == [5, 5]
    assert res.params[0][1, 0].item() == pytest.approx(50 * (1 - 0.8 ** 5), rel=1e-5)
    with pytest.raises(ValueError, match="unknown optimizer"):
        train_until([torch.zeros(2, 1)], _quadratic(torch.ones(2)), lr=0.1, max_steps=1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="leading"):
        train_until([torch.zeros(2, 1), torch.zeros(3)], _quadratic(torch.ones(2)), lr=0.1, max_steps=1)


def test_seed_int_separates_keys_and_is_stable():
    a = seeding.seed_int(0, "init", 8, 100)
    assert a == seeding.seed_int(0, "init", 8, 100)
    assert len({seeding.seed_int(0, "init", w, n) for w in (4, 8, 16) for n in (100, 250)}) == 6
    assert seeding.seed_int(1, 2) != seeding.seed_int(2, 1)
    assert 0 <= a < 2 ** 63
    with pytest.raises(ValueError):
        seeding.seed_int(-1)


def test_counter_uniform_depends_only_on_seed_id_and_step():
    ids = torch.tensor([0, 5, 9])
    u = seeding.counter_uniform(3, ids, step=7, n=16)
    assert u.shape == (3, 16) and (u >= 0).all() and (u < 1).all()
    alone = seeding.counter_uniform(3, torch.tensor([5]), step=7, n=16)
    assert torch.equal(u[1:2], alone)
    assert not torch.equal(u, seeding.counter_uniform(3, ids, step=8, n=16))
    big = seeding.counter_uniform(0, torch.arange(200), step=0, n=500)
    assert abs(big.mean().item() - 0.5) < 0.01 and abs(big.var().item() - 1 / 12) < 0.01
    mb = seeding.counter_minibatch(0, ids, 1, n_data=10, batch=4)
    assert mb.shape == (3, 4) and all(len(set(r.tolist())) == 4 for r in mb)


def test_forward_matches_a_loop_over_networks():
    net = BatchedMLP(3, [4, 6, 2], seeds=[1, 2, 3], activation="tanh")
    x = torch.randn(7, 4)
    out = forward(net.layers(), x, "tanh")
    for m in range(3):
        h = torch.tanh(x @ net.weights[0][m] + net.biases[0][m])
        assert torch.allclose(out[m], h @ net.weights[1][m] + net.biases[1][m], atol=1e-6)


def test_keep_best_keeps_each_network_at_its_lowest_score_also_when_frozen():
    # SGD on (w - target)^2 from 0: w_t = target (1 - 0.8^t); the score (w - 2)^2 is lowest
    # where w_t is closest to 2: t = 3 for target 4 (w = 1.952), t = 1 for target 10 (w = 2.0)
    targets = torch.tensor([4.0, 10.0, 1.0])
    for compact in (True, False):
        res = train_until([torch.zeros(3, 1)], _quadratic(targets), lr=0.1, max_steps=20,
                          optimizer="sgd", compact=compact,
                          reached=lambda p, ids, t: (p[0][:, 0] - targets[ids]).abs() < 0.05,
                          keep_best=lambda p, ids, t: (p[0][:, 0] - 2.0) ** 2)
        assert res.best_steps.tolist()[:2] == [3, 1]
        assert res.best_params[0][0, 0].item() == pytest.approx(4 * (1 - 0.8 ** 3), rel=1e-5)
        assert res.best_scores[1] == pytest.approx(0.0, abs=1e-10)
        # network 2 (target 1) never gets above 1, so its best is its last state, where it froze
        assert res.reached[2] and res.best_steps[2] == res.steps[2]
        assert torch.equal(res.best_params[0][2], res.params[0][2])
    plain = train_until([torch.zeros(3, 1)], _quadratic(targets), lr=0.1, max_steps=5, optimizer="sgd")
    assert plain.best_params is None and plain.best_steps is None
    with pytest.raises(ValueError, match="one score per network"):
        train_until([torch.zeros(2, 1)], _quadratic(torch.ones(2)), lr=0.1, max_steps=1,
                    keep_best=lambda p, ids, t: torch.zeros(1))


def test_fast_cross_entropy_agrees_with_the_default_in_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(4, 37, 10, generator=g) * 5).requires_grad_(True)
    y = torch.randint(0, 10, (4, 37), generator=g)
    probs = torch.softmax(torch.randn(4, 37, 10, generator=g), -1)
    temps = torch.tensor([1.0, 2.0, 3.0, 4.0])
    cases = [(lambda f: losses.cross_entropy(z, y, fast=f)), (lambda f: losses.cross_entropy(z, y[0], fast=f)),
             (lambda f: losses.cross_entropy(z, probs, fast=f)), (lambda f: losses.cross_entropy(z, probs[0], fast=f)),
             (lambda f: losses.soft_cross_entropy(z, probs, temps, fast=f))]
    for case in cases:
        a, b = case(False), case(True)
        assert a.shape == b.shape == (4,)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        ga, = torch.autograd.grad(a.sum(), z)
        gb, = torch.autograd.grad(b.sum(), z)
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-7)
