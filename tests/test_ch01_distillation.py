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
    assert mon.change(ids, 10).isnan().all()                  # no full window yet
    assert mon.converged(ids, 30).tolist() == [True, True]    # moved 0.006 < 0.01; below tol
    assert mon.converged(ids, 20).tolist() == [False, False]  # moved 0.505 and 0.9
    early = distill.Monitor(1, max_steps=40, every=10, window=20, tol=0.01)
    early.record(torch.tensor([0.005]), torch.tensor([0]), 10)   # below tol before a full window
    assert early.converged(torch.tensor([0]), 10).item() and early.change(torch.tensor([0]), 10).isnan().all()
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


def test_crossings_record_the_first_step_at_or_below_each_level():
    split = data.digits_split()
    params = [p.detach() for p in BatchedMLP(2, [64, 4, 10], seeds=[0, 1]).parameters()]
    cross = distill.Crossings(torch.tensor([[0.5, 0.05], [0.2, 0.9]]), split)
    ids = torch.tensor([0, 1])
    for step, ce in enumerate([1.0, 0.6, 0.45, 0.3, 0.15]):
        cross(params, ids, step, torch.tensor([ce, ce]))
    f = cross.found
    assert f["epoch"][0, 0] == 2 and f["train_ce"][0, 0] == pytest.approx(0.45)
    assert f["prev_train_ce"][0, 0] == pytest.approx(0.6)
    assert f["epoch"][1].tolist() == [4.0, 1.0]
    assert torch.isnan(f["epoch"][0, 1])                     # 0.05 never reached while training
    held = distill.evaluate(params, split.x_pool[:5].expand(2, 5, 64), split.y_pool[:5].expand(2, 5), split,
                            torch.zeros(2, 5, 10), torch.zeros(2, 500, 10))
    assert f["test_ce"][0, 0] == pytest.approx(held["test_ce"][0].item())
    # a network frozen at the step it reached the level: its final state is the matched one
    final = {**held, "train_ce": torch.tensor([0.04, 0.1])}
    cross.finish(np.array([7, 7]), final)
    assert f["epoch"][0, 1] == 7 and f["train_ce"][0, 1] == pytest.approx(0.04)


def test_probes_fill_the_budgets_a_network_did_not_reach_with_its_final_state():
    split = data.digits_split()
    params = [p.detach() for p in BatchedMLP(2, [64, 4, 10], seeds=[0, 1]).parameters()]
    probes = distill.Probes(2, [3, 10, 3], split)
    assert probes.epochs == [3, 10]
    for step in range(6):
        probes(params, torch.tensor([0, 1]), step, torch.tensor([1.0 - step / 10, 2.0]))
    final = {"train_ce": torch.tensor([0.3, 0.4]), "val_ce": torch.tensor([0.5, 0.6]),
             "test_ce": torch.tensor([0.7, 0.8])}
    stopped = probes.finish(np.array([6, 10]), final)
    assert probes.vals["train_ce"][:, 0].tolist() == pytest.approx([0.7, 2.0])
    assert probes.vals["train_ce"][:, 1].tolist() == pytest.approx([0.3, 0.4])
    assert stopped.tolist() == [[False, True], [False, False]]
    assert distill.n_params(16) == 64 * 16 + 16 + 16 * 10 + 10
    assert distill.budget_epochs(121_000, 16) == 100


# -- analysis: verdict rules on synthetic tables ------------------------------------------------
CELLS = ((100, 8), (400, 8), (100, 16))


def _tables(hard_train=0.01, conv_test=1.0, es_test=0.5, matched_test=0.5, dist_train=0.05, dist_test=0.4,
            narrow_test=1.0, wide_test=0.5, matched=True, seeds=5, cells=CELLS):
    """Synthetic saved tables. Every seed gets the given value plus a small seed-dependent jitter
    (so paired differences have a spread); of the two temperatures, T = 2 has the lower
    validation loss and is the one compared."""
    metrics, match, budget = [], [], []
    for n, w in cells:
        for s in range(seeds):
            j = 0.001 * (s - seeds / 2)
            base = dict(n_train=n, width=w, seed=s, epochs_run=1000, converged=True, final_change=0.0,
                        val_ce=0.5, train_acc=1.0, test_acc=0.9, agree_train=1.0, agree_test=0.9)
            metrics.append({**base, "condition": "hard", "temperature": 1.0, "checkpoint": "final",
                            "epoch": 1000, "train_ce": hard_train + j, "test_ce": conv_test + j})
            metrics.append({**base, "condition": "hard", "temperature": 1.0, "checkpoint": "early_stopped",
                            "epoch": 100, "train_ce": 0.2 + j, "test_ce": es_test + 2 * j})
            for t, bonus in ((1.0, 0.2), (2.0, 0.0)):
                metrics.append({**base, "condition": "distill", "temperature": t, "checkpoint": "final",
                                "epoch": 1000, "epochs_run": 1000, "train_ce": dist_train - j + bonus,
                                "test_ce": dist_test + bonus, "val_ce": 0.4 + bonus})
                lvl = dist_train - j + bonus
                match.append(dict(n_train=n, width=w, seed=s, temperature=t, level=lvl, matched=matched,
                                  epoch=150.0 if matched else np.nan, train_ce=lvl - 1e-4 if matched else np.nan,
                                  prev_train_ce=lvl + 1e-4 if matched else np.nan, val_ce=0.5 if matched else np.nan,
                                  test_ce=matched_test + 3 * j if matched else np.nan,
                                  test_acc=0.9 if matched else np.nan))
    for n in sorted({n for n, _ in cells}):
        for w in sorted({w for _, w in cells}):
            p = distill.n_params(w)
            for b in (1e4, 1e5):
                for s in range(seeds):
                    j = 0.001 * (s - seeds / 2)
                    test = narrow_test + j if w == min(w for _, w in cells) else wide_test - j * b / 1e5
                    budget.append(dict(n_train=n, width=w, seed=s, budget=b, n_params=p, epoch=round(b / p),
                                       epochs_run=1000, stopped=False, train_ce=0.1, val_ce=0.5, test_ce=test))
    split = pd.DataFrame({"part": ["pool", "validation", "test"], "size": [1000, 297, 500]})
    teachers = pd.DataFrame({"n_train": [100], "seed": [0], "best_epoch_median": [50.0], "best_epoch_max": [80.0]})
    return {"metrics": pd.DataFrame(metrics), "matched": pd.DataFrame(match), "budget": pd.DataFrame(budget),
            "split": split, "teachers": teachers}


def _versions(**kw):
    return analysis.verdicts(_tables(**kw), {}).tables["versions"].set_index("version").verdict.to_dict()


def test_best_temperature_uses_validation_loss():
    assert analysis.best_temperature(_tables()["metrics"]).tolist() == [2.0] * 3


@pytest.mark.parametrize("kw, expect", [
    (dict(es_test=0.3, matched_test=0.3), {"T": "contradicts", "H": "contradicts", "M": "contradicts", "C": "supports"}),
    (dict(hard_train=0.3, es_test=0.8, matched_test=0.9, narrow_test=0.3),
     {"T": "supports", "H": "supports", "M": "supports", "C": "contradicts"}),
    (dict(hard_train=0.05, es_test=0.4, matched_test=0.4, narrow_test=0.5),
     {"T": "mixed", "H": "mixed", "M": "mixed", "C": "mixed"}),
])
def test_each_version_gives_each_outcome(kw, expect):
    assert _versions(**kw) == expect


def test_version_rule_needs_two_thirds_of_the_planned_cells():
    assert analysis.version_verdict(["supports", "supports", "mixed"], 3) == ("supports", 2, 0, 0)
    assert analysis.version_verdict(["supports", "contradicts", "mixed"], 3)[0] == "mixed"
    assert analysis.version_verdict(["contradicts", "contradicts", "missing"], 3) == ("contradicts", 0, 2, 1)
    assert analysis.version_verdict(["supports", "missing", "missing"], 3)[0] == "mixed"
    with pytest.raises(ValueError, match="expected 3"):
        analysis.version_verdict(["supports"], 3)
    with pytest.raises(ValueError, match="unknown"):
        analysis.version_verdict(["maybe"], 1)


def test_unmatched_students_make_missing_cells_not_a_verdict():
    t = _tables(matched=False)
    cells = analysis.cell_table(t)
    m = cells[cells.version == "M"]
    assert (m.verdict == "missing").all() and (m.n_seeds == 0).all()
    v = analysis.verdicts(t, {})
    assert v.glue["verdict_matched"] == "mixed" and v.glue["cells_missing_matched"] == 3
    assert "No cell had two paired seeds" in v.glue["finding_matched"]


def test_an_interval_touching_zero_is_mixed_and_a_constant_difference_is_decided():
    a = pd.Series([1.0, 2.0, 3.0])
    assert analysis.paired_cell(a, a)["verdict"] == "mixed"            # [0, 0] touches zero
    cell = analysis.paired_cell(a + 0.5, a)
    assert cell["verdict"] == "supports" and cell["lo"] == cell["hi"] == 0.5 and cell["p"] == 0.0
    assert analysis.paired_cell(pd.Series([1.0]), pd.Series([0.0]))["verdict"] == "missing"


def test_p_value_agrees_with_the_t_interval():
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = rng.normal(rng.normal(0, 0.5), 1.0, size=int(rng.integers(2, 12)))
        cell = analysis.paired_cell(pd.Series(d), pd.Series(np.zeros_like(d)))
        assert (cell["p"] < 0.05) == (cell["verdict"] != "mixed")


def test_holm_adjustment():
    adj = analysis.holm(np.array([0.01, 0.04, 0.03, 0.005, np.nan]))
    np.testing.assert_allclose(adj[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adj[4])
    assert analysis.holm(np.array([0.5, 0.9])).tolist() == [1.0, 1.0]


def test_holm_can_remove_a_cell_verdict_and_leaves_context_cells_out():
    cells = pd.DataFrame({"version": ["T", "H", "context", "M"], "p": [0.001, 0.03, 0.0001, np.nan],
                          "verdict": ["contradicts", "supports", "supports", "missing"]})
    comp = pd.DataFrame({"p": [0.2, 0.0001], "verdict": ["mixed", "supports"], "applies": [True, False]})
    c, k = analysis.with_holm(cells, comp)
    # family: 0.001, 0.03, 0.2 (three tested cells) -> 0.003, 0.06, 0.2
    np.testing.assert_allclose(c.p_holm.to_numpy()[[0, 1]], [0.003, 0.06])
    assert c.verdict_holm.tolist() == ["contradicts", "mixed", "", "missing"]
    assert np.isnan(c.p_holm[2]) and k.verdict_holm.tolist() == ["mixed", ""]


def test_non_finite_results_are_refused():
    t = _tables()
    t["metrics"].loc[0, "test_ce"] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        analysis.cell_table(t)
    with pytest.raises(ValueError, match="needs the tables"):
        analysis.analyse({}, {})


def test_compute_cells_where_the_wide_student_had_converged_carry_no_verdict():
    t = _tables()
    b = t["budget"]
    b.loc[(b.budget == 1e5) & (b.width == 16) & (b.seed < 3), "stopped"] = True     # 3 of 5 converged
    comp = analysis.compute_table(t)
    assert comp.set_index("budget").applies.groupby(level=0).all().to_dict() == {1e4: True, 1e5: False}
    v = analysis.verdicts(t, {})
    row = v.tables["versions"].set_index("version").loc["C"]
    assert row.cells == 2 and row.supports == 2 and v.glue["verdict_compute"] == "supports"
    assert "In 2 of 4 (size, budget) cells" in v.glue["finding_compute"]
    c, k = analysis.with_holm(analysis.cell_table(t), comp)
    assert k[~k.applies].p_holm.isna().all() and set(k[~k.applies].verdict_holm) == {""}
    b["stopped"] = True                                  # no budget stops the widest student early
    v = analysis.verdicts(t, {})
    assert v.glue["verdict_compute"] == "mixed" and "not computable" in v.glue["effect_compute"]


def test_compute_view_needs_two_widths():
    with pytest.raises(ValueError, match="two widths"):
        analysis.compute_table(_tables(cells=((100, 8), (400, 8))))


def test_analyse_gives_one_ledger_row_per_version_and_no_combined_preference():
    f = analysis.analyse(_tables(es_test=0.3, matched_test=0.3), {})
    led = f.tables["ledger"]
    assert list(led.id) == ["01-train-vs-converged", "01-heldout-vs-early-stopped", "01-heldout-loss-matched",
                            "01-compute-budget"]
    assert list(led.verdict) == ["contradicts", "contradicts", "contradicts", "supports"]
    assert led.version.str.match(r"^[THMC]: ").all() and (led.units == "nats").all()
    assert f.glue["verdict"] == "mixed"            # the versions disagree
    assert f.glue["n_family"] == 3 * 3 + 4 and f.glue["n_compute_applies"] == 4
    assert f.glue["n_params_widest"] == distill.n_params(16)


def test_cell_rule_under_the_null_decides_about_five_percent_of_cells():
    # calibration at the chapter's settings (10 paired seeds): with no true difference a cell
    # supports or contradicts with probability 0.05; the version rule (two thirds of 12 cells)
    # then essentially never fires
    rng = np.random.default_rng(1)
    labels = [analysis.paired_cell(pd.Series(rng.normal(0, 1, 10)), pd.Series(np.zeros(10)))["verdict"]
              for _ in range(4000)]
    decided = np.mean([v != "mixed" for v in labels])
    assert 0.04 < decided < 0.06
    assert abs(labels.count("supports") - labels.count("contradicts")) < 60


# -- the chunked run: the same bytes for any seed grouping and any number of workers ---------
_SMALL = dict(train_sizes=[30, 50], widths=[4, 6], temperatures=[2.0, 1.0], seeds=[3, 0, 1],
              student_epochs=40, hard_max_epochs=60, student_lr=0.02, eval_every=10, conv_window=20,
              conv_tol=0.01, teacher_members=2, teacher_hidden=8, teacher_epochs=20, teacher_lr=0.01,
              teacher_weight_decay=1e-4, budgets=[2000.0, 400.0])


def _csv(tables):
    return {name: df.to_csv() for name, df in tables.items()}


@pytest.fixture(scope="module")
def small_in_process():
    return _csv(distill.run(**_SMALL, seeds_per_chunk=3, scheduler=""))


def test_logits_of_a_network_do_not_depend_on_its_place_in_the_batch():
    # 297 validation digits x 10 classes: a block of 2970 floats, off the 16-byte boundary at odd places
    split = data.digits_split()
    params = [p.detach() for p in BatchedMLP(7, [64, 6, 10], seeds=list(range(7))).parameters()]
    z = distill.logits(params, split.x_val)
    assert z.shape == (7, 297, 10)
    for i in range(7):
        alone = distill.logits([p[i:i + 1].clone() for p in params], split.x_val)
        assert z[i].numpy().tobytes() == alone[0].numpy().tobytes()


def test_run_gives_the_same_bytes_for_any_seed_grouping(small_in_process):
    got = distill.run(**_SMALL, seeds_per_chunk=1, scheduler="")
    assert _csv(got) == small_in_process
    assert _csv(distill.run(**_SMALL, seeds_per_chunk=2, scheduler="")) == small_in_process
    # the rows come in the order of one batched run: sizes, widths, then seeds as given
    assert list(got["teachers"].seed) == [3, 0, 1, 3, 0, 1]
    with pytest.raises(ValueError, match="seeds_per_chunk"):
        distill.run(**_SMALL, seeds_per_chunk=0)


def test_run_on_a_local_cluster_with_1_and_2_workers_matches_in_process(small_in_process, workers_env):
    from countingargs import chunks

    for sched, spc in (("local:1", 3), ("local:2", 1)):
        assert _csv(distill.run(**_SMALL, seeds_per_chunk=spc, scheduler=sched)) == small_in_process
    rows = {(h["name"], h["scheduler"], h["workers"], h["chunks"]) for h in chunks.history()}
    assert {("distillation", "local:1", 1, 2), ("distillation", "local:2", 2, 6)} <= rows
