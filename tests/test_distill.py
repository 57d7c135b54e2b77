import torch

from countingargs.chapters.ch01_distillation import experiment as distill
from countingargs.data import digits as data
from countingargs.nets.mlp import BatchedMLP


def test_digits_split_sizes_and_strata():
    s = data.digits_split()
    assert len(s.y_test) == 500 and len(s.y_val) == 297 and len(s.y_pool) == 1000
    assert float(s.x_pool.max()) <= 1.0
    counts = torch.bincount(s.y_test)
    assert counts.min() >= 48 and counts.max() <= 52


def test_stratified_subsets_balanced_deterministic_and_seeded():
    y = data.digits_split().y_pool
    a = data.stratified_subsets(y, 100, [1, 2])
    assert a.shape == (2, 100)
    assert torch.equal(torch.bincount(y[a[0]]), torch.full((10,), 10))
    assert torch.equal(a, data.stratified_subsets(y, 100, [1, 2]))
    assert not torch.equal(a[0].sort().values, a[1].sort().values)
    assert len(set(a[0].tolist())) == 100


def test_stratified_subset_errors():
    import pytest
    with pytest.raises(ValueError, match="exceeds"):
        data.stratified_subsets(torch.tensor([0, 1, 0, 1]), 5, [0])


def test_soft_ce_reduces_to_hard_ce_at_t1():
    logits = torch.randn(3, 7, 10)
    y = torch.randint(0, 10, (3, 7))
    soft = distill.soft_cross_entropy(logits, torch.nn.functional.one_hot(y, 10).float(), torch.ones(3))
    torch.testing.assert_close(soft, distill.hard_ce(logits, y))


def test_temperature_scaling_of_objective():
    # at temperature T the objective is T^2 times the CE of the softened distributions
    logits, t = torch.randn(1, 4, 10), torch.softmax(torch.randn(1, 4, 10), -1)
    T = torch.tensor([3.0])
    manual = -(t * torch.log_softmax(logits / 3.0, -1)).sum(-1).mean(-1) * 9.0
    torch.testing.assert_close(distill.soft_cross_entropy(logits, t, T), manual)


def test_train_batched_tracks_best_and_convergence():
    torch.manual_seed(0)
    x = torch.randn(2, 30, 5)
    y = (x[..., 0] > 0).long()
    tgt = torch.nn.functional.one_hot(y, 10).float()
    xv = torch.randn(20, 5)
    yv = (xv[:, 0] > 0).long()
    model = BatchedMLP(2, [5, 8, 10], seeds=[0, 1])
    res = distill.train_batched(model, x, tgt, torch.ones(2), y, xv, yv, epochs=400, lr=0.05,
                                eval_every=20, conv_window=100, conv_tol=1e-3)
    assert res.converged.shape == (2,)
    assert set(res.curves.epoch) == set(range(0, 401, 20))
    with torch.no_grad():
        best_val = distill.hard_ce(res.best(xv), yv)
    # the kept state is the one with the lowest recorded validation loss
    recorded = res.curves.groupby("model").val_ce.min().to_numpy()
    torch.testing.assert_close(best_val, torch.tensor(recorded, dtype=torch.float32), rtol=1e-4, atol=1e-5)
    # the first-layer training loss falls
    first = res.curves[res.curves.epoch == 0].train_ce.to_numpy()
    last = res.curves[res.curves.epoch == 400].train_ce.to_numpy()
    assert (last < first).all()
