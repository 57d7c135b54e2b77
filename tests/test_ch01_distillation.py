import numpy as np
import pandas as pd
import pytest
import torch

from countingargs.chapters.ch01_distillation import analysis
from countingargs.chapters.ch01_distillation import experiment as distill
from countingargs.data import digits as data
from countingargs.nets import losses
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
    soft = losses.soft_cross_entropy(logits, torch.nn.functional.one_hot(y, 10).float(), torch.ones(3))
    torch.testing.assert_close(soft, losses.cross_entropy(logits, y))


def test_temperature_scaling_of_objective():
    # at temperature T the objective is T^2 times the CE of the softened distributions
    logits, t = torch.randn(1, 4, 10), torch.softmax(torch.randn(1, 4, 10), -1)
    T = torch.tensor([3.0])
    manual = -(t * torch.log_softmax(logits / 3.0, -1)).sum(-1).mean(-1) * 9.0
    torch.testing.assert_close(losses.soft_cross_entropy(logits, t, T), manual)


def test_monitor_applies_the_convergence_criterion():
    mon = distill.Monitor(2, max_steps=40, every=10, window=20, tol=0.01)
    ids = torch.tensor([0, 1])
    for step, objs in ((0, [1.0, 1.0]), (10, [0.5, 0.2]), (20, [0.495, 0.1]), (30, [0.494, 0.005])):
        mon.record(torch.tensor(objs), ids, step)
    assert mon.change(ids, 10).isinf().all()                  # no full window yet
    assert mon.converged(ids, 30).tolist() == [True, True]    # moved 0.006 < 0.01; below tol
    assert mon.converged(ids, 20).tolist() == [False, False]  # moved 0.505 and 0.9
    with pytest.raises(ValueError, match="multiples"):
        distill.Monitor(2, max_steps=45, every=10, window=20, tol=0.01)


def _toy(m=3):
    split = data.digits_split()
    idx = data.stratified_subsets(split.y_pool, 50, list(range(m)))
    net = BatchedMLP(m, [64, 6, 10], seeds=list(range(m)))
    return split, split.x_pool[idx], split.y_pool[idx], [p.detach() for p in net.parameters()]


def test_train_students_keeps_the_best_validation_state_and_freezes_converged_ones():
    split, x, y, init = _toy()
    res, curves, mon = distill.train_students(init, x, y, None, torch.ones(3), split, max_epochs=400,
                                              lr=0.02, eval_every=20, conv_window=100, conv_tol=5e-3,
                                              freeze_converged=True)
    # the kept early-stopped state is the one with the lowest recorded validation loss
    ev = distill.evaluate(res.best_params, x, y, split, torch.zeros(3, 50, 10), torch.zeros(3, 500, 10))
    recorded = curves.groupby("model").val_ce.min().to_numpy()
    torch.testing.assert_close(ev["val_ce"], torch.tensor(recorded, dtype=torch.float32), rtol=1e-4, atol=1e-5)
    # a frozen network has no curve rows after the step where it met the criterion
    last = curves.groupby("model").epoch.max().to_numpy()
    assert (last == res.steps).all()
    for i in np.flatnonzero(res.reached):
        assert mon.converged(torch.tensor([i]), int(res.steps[i])).item()
    # the training CE falls
    first = curves[curves.epoch == 0].train_ce.to_numpy()
    assert (curves.groupby("model").train_ce.last().to_numpy() < first).all()


def test_distilled_students_match_the_objective_and_train_the_whole_budget():
    split, x, y, init = _toy(2)
    soft = torch.softmax(torch.randn(2, 50, 10), -1)
    res, curves, _ = distill.train_students(init, x, y, soft, torch.tensor([2.0, 2.0]), split,
                                            max_epochs=60, lr=0.01, eval_every=20, conv_window=20,
                                            conv_tol=1e-3, freeze_converged=False)
    assert (res.steps == 60).all() and set(curves.epoch) == {0, 20, 40, 60}
    z = distill.logits(res.params, x)
    end = curves[curves.epoch == 60].sort_values("model")
    torch.testing.assert_close(losses.soft_cross_entropy(z, soft, torch.tensor([2.0, 2.0])),
                               torch.tensor(end.objective.to_numpy(), dtype=torch.float32), rtol=1e-5, atol=1e-6)


# -- analysis: verdict rules on synthetic tables ------------------------------------------------

def _metrics(hard_train, hard_test, es_test, dist_train, dist_test, seeds=5, cells=((100, 8),)):
    """Synthetic metrics: every seed of a cell gets the given value plus a small seed-dependent
    jitter, so the paired differences have a spread."""
    rows = []
    for n, w in cells:
        for s in range(seeds):
            j = 0.001 * (s - seeds / 2)
            base = dict(n_train=n, width=w, seed=s, epochs_run=1000, converged=True, final_change=0.0,
                        val_ce=0.5, train_acc=1.0, test_acc=0.9, agree_train=1.0, agree_test=0.9)
            rows.append({**base, "condition": "hard", "temperature": 1.0, "checkpoint": "final",
                         "epoch": 1000, "train_ce": hard_train + j, "test_ce": hard_test + j})
            rows.append({**base, "condition": "hard", "temperature": 1.0, "checkpoint": "early_stopped",
                         "epoch": 100, "train_ce": hard_train * 10, "test_ce": es_test + 2 * j})
            for t, bonus in ((1.0, 0.2), (2.0, 0.0)):      # T = 2 has the lower validation loss
                rows.append({**base, "condition": "distill", "temperature": t, "checkpoint": "final",
                             "epoch": 1000, "train_ce": dist_train - j, "test_ce": dist_test + bonus,
                             "val_ce": 0.4 + bonus})
    return pd.DataFrame(rows)


def test_best_temperature_uses_validation_loss():
    m = _metrics(0.01, 1.0, 0.5, 0.05, 0.4)
    assert analysis.best_temperature(m).tolist() == [2.0]


@pytest.mark.parametrize("hard_train, dist_train, expect", [
    (0.01, 0.05, "contradicts"),      # the label-trained student has the lower training CE
    (0.05, 0.01, "supports"),
    (0.03, 0.03, "mixed"),            # equal on average: the interval straddles zero
])
def test_version_t_gives_each_outcome(hard_train, dist_train, expect):
    cells = analysis.cell_table(_metrics(hard_train, 1.0, 0.5, dist_train, 0.4))
    assert analysis.version_verdict(cells, "train_ce")[0] == expect


def test_version_rule_needs_two_thirds_of_the_cells():
    cells = pd.DataFrame({"measure": ["m"] * 3, "verdict": ["supports", "supports", "mixed"]})
    assert analysis.version_verdict(cells, "m") == ("supports", 2, 0, 3)
    cells = pd.DataFrame({"measure": ["m"] * 3, "verdict": ["supports", "contradicts", "mixed"]})
    assert analysis.version_verdict(cells, "m")[0] == "mixed"
    with pytest.raises(ValueError, match="no cells"):
        analysis.version_verdict(cells, "other")


def test_overall_rule_and_missing_table():
    assert analysis.overall_verdict("supports", "contradicts") == "supports"
    assert analysis.overall_verdict("contradicts", "supports") == "mixed"
    assert analysis.overall_verdict("mixed", "mixed") == "contradicts"
    with pytest.raises(ValueError, match="needs the tables"):
        analysis.analyse({}, {})
