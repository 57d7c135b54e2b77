"""Chapter 06 (memorise or derive): the task, the route diagnostics on hand-built networks with
known answers, and every outcome of every verdict rule from synthetic tables."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from countingargs import report
from countingargs.chapters.ch06_memorise import analysis as A
from countingargs.chapters.ch06_memorise import experiment as E
from countingargs.stats import CONTRADICTS, MIXED, SUPPORTS

M_BITS, S_BITS = 6, 3


def batch(K=12, ks=(2,), seeds=(0,), conditions=E.CONDITIONS, id_scale=1.0, n_heldout=16):
    return E.make_batch(K, ks, seeds, conditions, m=M_BITS, s=S_BITS, n_heldout=n_heldout,
                        id_scale=id_scale)


# ---------------------------------------------------------------------------------------------
# the task
def test_descriptions_are_every_code_once_and_specification_is_the_parity():
    codes = E.descriptions(3, M_BITS)
    assert codes.shape == (2 ** M_BITS, M_BITS)
    assert len({tuple(r) for r in codes}) == 2 ** M_BITS
    sub = E.rule(3, 2, M_BITS, S_BITS)
    r = E.specification(codes, sub)
    for i, j in itertools.product(range(0, 64, 7), range(S_BITS)):
        assert r[i, j] == codes[i, sub[j][0]] * codes[i, sub[j][1]]


def test_derangement_has_no_fixed_point_and_is_a_permutation():
    for n in (2, 3, 17):
        p = E.derangement(5, n)
        assert sorted(p) == list(range(n)) and not np.any(p == np.arange(n))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="K \\+ n_heldout"):
        E.make_batch(60, [1], [0], m=M_BITS, s=S_BITS, n_heldout=16)
    with pytest.raises(ValueError, match="unknown conditions"):
        batch(conditions=("free", "lookup"))
    with pytest.raises(ValueError, match="k \\(bits"):
        E.rule(0, 0, M_BITS, S_BITS)
    with pytest.raises(ValueError, match="decoupled"):
        E.Arm("x", optimizer="sgd", decay="decoupled", weight_decay=0.1)


def test_split_first_layer_equals_a_dense_layer_on_the_concatenated_input():
    b = batch(id_scale=0.7)
    p = E.init_params(b, 8)
    rows = torch.arange(b.K)
    out = E.forward(p, b.desc, rows, id_scale=b.id_scale)
    onehot = torch.eye(b.K).expand(b.n, -1, -1) * b.id_scale
    x = torch.cat([onehot, b.desc], dim=-1)
    w0 = torch.cat([p["wid"], p["wd"]], dim=1)
    dense = torch.relu(x @ w0 + p["b0"]) @ p["w1"] + p["b1"]
    assert torch.allclose(out, dense, atol=1e-5)


def test_conditions_and_difficulties_of_a_seed_start_from_the_same_weights():
    b = batch(ks=(1, 3), seeds=(0, 1))
    p = E.init_params(b, 8)
    meta = b.meta
    for seed in (0, 1):
        idx = meta.index[meta.seed == seed].tolist()
        for name in E.KEYS:
            assert all(torch.equal(p[name][idx[0]], p[name][i]) for i in idx)
    assert not torch.equal(p["wd"][0], p["wd"][meta.index[meta.seed == 1][0]])
    # the shared blocks do not depend on K
    p2 = E.init_params(batch(K=20, ks=(1, 3), seeds=(0, 1)), 8)
    assert torch.equal(p["wd"], p2["wd"]) and torch.equal(p["w1"], p2["w1"])


def test_masked_inputs_do_not_reach_the_output():
    b = batch()
    p = E.init_params(b, 8)
    other = {k: v.clone() for k, v in p.items()}
    other["wd"] = torch.randn_like(other["wd"])
    other["wid"] = torch.randn_like(other["wid"])
    rows = torch.arange(b.K)
    kw = dict(use_id=b.use_id, use_desc=b.use_desc)
    a = E.forward(p, b.desc, rows, **kw)
    for i, cond in enumerate(b.meta.condition):
        if cond == "memorise":        # description masked: changing wd changes nothing
            q = dict(p, wd=other["wd"])
        elif cond == "derive":
            q = dict(p, wid=other["wid"])
        else:
            continue
        assert torch.allclose(a[i], E.forward(q, b.desc, rows, **kw)[i])


# ---------------------------------------------------------------------------------------------
# route diagnostics on hand-built networks
@pytest.mark.parametrize("k", [1, 2, 3])
def test_handbuilt_deriver_is_classified_as_deriving(k):
    b = batch(ks=(k,), conditions=("free",))
    sub = E.rule(0, k, M_BITS, S_BITS)
    p = E.handbuilt("derive", b, sub, width=16)
    d = E.diagnose(b, p).iloc[0]
    assert d.loss < 1e-10 and d.acc == 1.0
    assert d.heldout_acc == 1.0 and d.follow_desc == 1.0 and d.heldout_follow_desc == 1.0
    assert d.loss_scramble_id == pytest.approx(d.loss) and d.loss_zero_id == pytest.approx(d.loss)
    assert d.loss_scramble_desc > 0.1 and d.loss_zero_desc > 0.1
    assert A.route_class([d.follow_desc], [d.heldout_acc])[0] == "derive"
    assert A.derivation_index([d.follow_desc], [d.heldout_acc])[0] == 1.0


def test_handbuilt_memoriser_is_classified_as_memorising_with_brute_force_costs():
    b = batch(ks=(2,), conditions=("free",))
    p = E.handbuilt("memorise", b, width=10)
    d = E.diagnose(b, p).iloc[0]
    y = b.y[0].numpy()
    perm = b.perm[0].numpy()
    frac_diff = float((y[perm] != y).mean())
    assert d.loss < 1e-10 and d.follow_desc == 0.0
    assert d.loss_scramble_id == pytest.approx(2 * frac_diff, abs=1e-6)   # 0.5 * (±2)^2 per differing bit
    assert d.loss_zero_desc == pytest.approx(0.0, abs=1e-10)
    assert d.loss_scramble_desc == pytest.approx(0.0, abs=1e-10)
    # no identifier: output 0, read as +1, so held-out accuracy is the share of +1 targets
    assert d.heldout_acc == pytest.approx(float((b.y_held[0] > 0).float().mean()))
    assert d.heldout_follow_desc == 0.0
    assert A.route_class([d.follow_desc], [0.5])[0] == "memorise"
    assert A.derivation_index([d.follow_desc], [d.heldout_acc])[0] == 0.0


def test_hybrid_follow_share_matches_brute_force():
    """Bits 0..1 derived, bit 2 memorised: the follow share is the share of disagreeing bits that
    fall on derived outputs, counted by brute force."""
    b = batch(ks=(2,), conditions=("free",))
    sub = E.rule(0, 2, M_BITS, S_BITS)
    der = E.handbuilt("derive", b, sub, width=12)
    mem = E.handbuilt("memorise", b, width=12)
    hyb = {k: v.clone() for k, v in der.items()}
    # take memoriser units 4, 5 (bit 2) into free slots 10, 11 and cut the deriver's bit 2
    hyb["w1"][:, :, 2] = 0.0
    hyb["b1"][:, :, 2] = 0.0
    for src, dst in ((4, 10), (5, 11)):
        hyb["wid"][:, :, dst] = mem["wid"][:, :, src]
        hyb["w1"][:, dst, 2] = mem["w1"][:, src, 2]
    d = E.diagnose(b, hyb).iloc[0]
    y = b.y[0].numpy()
    diff = y[b.perm[0].numpy()] != y
    expect = diff[:, :2].sum() / diff.sum()
    assert d.loss < 1e-10
    assert d.follow_desc == pytest.approx(expect)
    assert 0 < d.follow_desc < 1


def test_trained_restricted_networks_take_their_route():
    """A small end-to-end check: the memorise-only network never follows the description and
    the derive-only network always does."""
    b = batch(K=16, ks=(1,), seeds=(0,))
    t = E.train(b, E.Arm("t", lr=0.4, max_steps=3000, width=16))
    d = E.describe(t)
    assert d.reached.all()
    assert (d.loss <= 1e-3 + 1e-9).all()
    assert d.set_index("condition").follow_desc["memorise"] == 0.0
    assert d.set_index("condition").follow_desc["derive"] == 1.0


def test_snapshots_at_the_alternative_level_are_earlier():
    b = batch(K=8, ks=(1,), seeds=(0,))
    t = E.train(b, E.Arm("t", lr=0.4, max_steps=3000, width=16, level_alt=0.01))
    main, alt = E.describe(t), E.describe(t, "alt")
    assert (alt.steps <= main.steps).all() and (alt.loss <= 0.01 + 1e-9).all()
    assert (alt.loss >= main.loss).all()


def test_llc_loss_fn_handles_chains_point_major():
    b = batch(K=8, ks=(1,), seeds=(0, 1), conditions=("free",))
    p = E.init_params(b, 8)
    f = E.llc_loss_fn(b)
    one = f(p)
    two = f({k: v.repeat_interleave(3, 0) for k, v in p.items()})
    assert torch.allclose(two.view(2, 3), one.view(2, 1).expand(2, 3))


# ---------------------------------------------------------------------------------------------
# the chunked grid: the same tables whatever the chunk layout and wherever the chunks ran
CHUNK_GRID = dict(m=M_BITS, s=S_BITS, n_heldout=16)
MAIN_ARM = E.Arm("main", lr=0.4, width=8, max_steps=300, level_alt=0.01)
LLC_SMALL = dict(n_beta=100.0, step_size=1e-4, localization=10.0, n_chains=2, n_draws=4, n_burnin=2)


def chunked_main(scheduler):
    return E.run_arm(MAIN_ARM, [4, 8], [1, 2], [0, 1], **CHUNK_GRID, llc_settings=LLC_SMALL,
                     volume_settings=dict(rhos=[0.03], tol=0.01, n_samples=4),
                     llc_alternative=dict(LLC_SMALL, n_beta=300.0), alternative_Ks=[8],
                     scheduler=scheduler)


def chunked_side(arm, seeds_per_chunk, scheduler):
    return E.run_arm(arm, [4, 8], [1, 2], [0, 1, 2], ("free", "derive"), **CHUNK_GRID,
                     seeds_per_chunk=seeds_per_chunk, scheduler=scheduler)["networks"]


def same_tables(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].to_csv() == b[name].to_csv(), name


SIDE_ARMS = (E.Arm("adam", optimizer="adam", lr=0.01, width=8, max_steps=300),
             E.Arm("l2", lr=0.4, width=8, weight_decay=0.01, freeze=False, max_steps=50))


@pytest.mark.parametrize("arm", SIDE_ARMS, ids=lambda a: a.name)
def test_grid_is_the_same_whatever_the_seeds_per_chunk(arm):
    """Every network's streams are its own: one seed per chunk, two, or all in one batch give
    byte-identical tables, in make_batch's order."""
    ref = chunked_side(arm, 3, "")
    assert list(ref.seed[:3]) == [0, 0, 1] and list(ref.k[:6]) == [1] * 6
    for g in (1, 2):
        assert chunked_side(arm, g, "").to_csv() == ref.to_csv()


def test_grid_with_llc_keeps_a_k_in_one_chunk():
    with pytest.raises(ValueError, match="one stream per K"):
        E.run_arm(MAIN_ARM, [4], [1], [0, 1], **CHUNK_GRID, llc_settings=LLC_SMALL, seeds_per_chunk=1)
    with pytest.raises(ValueError, match="without repeats"):
        E.run_arm(MAIN_ARM, [4], [1], [0, 0], **CHUNK_GRID)


def test_grid_on_local_cluster_1_and_2_workers_matches_in_process(workers_env):
    """The main arm (training, diagnostics, LLC at both levels, sensitivity, volume) and a side
    arm in one-seed chunks: byte-identical on a LocalCluster with 1 and with 2 workers."""
    from countingargs import chunks

    main, side = chunked_main(""), chunked_side(SIDE_ARMS[0], 3, "")
    for sched in ("local:1", "local:2"):
        same_tables(main, chunked_main(sched))
        assert chunked_side(SIDE_ARMS[0], 1, sched).to_csv() == side.to_csv()
    rows = {(h["name"], h["scheduler"], h["workers"]) for h in chunks.history()}
    assert {("ch06-main", "local:1", 1), ("ch06-main", "local:2", 2), ("ch06-adam", "local:2", 2)} <= rows


# ---------------------------------------------------------------------------------------------
# analysis: synthetic tables
def net_rows(K, k, seed, cond, *, follow, heldout, steps=100, dist=1.0, reached=True, level="main",
             arm="main", loss=0.001, frozen=True, weight_decay=0.0, norm_sq=10.0, decay="coupled"):
    costs = {f"loss_{c}": loss + 0.5 for c in ("scramble_id", "zero_id", "scramble_desc", "zero_desc")}
    return dict(arm=arm, weight_decay=weight_decay, decay=decay, frozen=frozen, level=level,
                K=K, k=k, seed=seed, condition=cond, loss=loss, follow_desc=follow,
                heldout_acc=heldout, steps=steps, dist_init=dist, reached=reached, norm_sq=norm_sq,
                **costs)


def synthetic(Ks=(4, 16, 64), ks=(1, 3), seeds=range(5), *, llc_gap=lambda K, k: 10.0,
              der_heldout=lambda K, k: 1.0, free_route=lambda K, k, s: "derive",
              faster=lambda K, k: "derive", dual_excess=0.0, level_alt=True):
    """Tables for analyse(): the LLC of memorise-only minus derive-only is llc_gap(K, k) (plus
    noise), and each free network takes free_route(K, k, seed)."""
    rng = np.random.default_rng(0)
    nets, llcs, vols = [], [], []
    route_vals = {"derive": (1.0, 1.0), "memorise": (0.0, 0.5), "mixed": (0.5, 0.75)}
    for K, k, s in itertools.product(Ks, ks, seeds):
        f_follow, f_held = route_vals[free_route(K, k, s)]
        st = {"derive": (50, 100), "memorise": (100, 50)}[faster(K, k)]
        for level in (["main", "alt"] if level_alt else ["main"]):
            nets += [net_rows(K, k, s, "free", follow=f_follow, heldout=f_held, level=level),
                     net_rows(K, k, s, "memorise", follow=0.0, heldout=0.5, steps=st[1], level=level),
                     net_rows(K, k, s, "derive", follow=1.0, heldout=der_heldout(K, k), steps=st[0],
                              level=level)]
            base = 20.0 + rng.normal(0, 0.5)
            for cond, v in (("free", base + 5), ("memorise", base + llc_gap(K, k)), ("derive", base)):
                llcs.append(dict(arm="main", level=level, K=K, k=k, seed=s, condition=cond,
                                 llc=v + rng.normal(0, 0.1), llc_chain_sd=0.1, llc_diverged=False,
                                 llc_drift=0.0))
        for cond in E.CONDITIONS:
            vols.append(dict(arm="main", K=K, k=k, seed=s, condition=cond, rho=0.01, fraction=0.5))
    main = pd.DataFrame(nets)
    side = main[(main.level == "main")].assign(arm="adam")
    wd = []
    for K, k, s in itertools.product(Ks, ks, seeds):
        for cond, J in (("memorise", 1.0), ("derive", 0.5), ("free", 0.5 * (1 + dual_excess))):
            wd.append(net_rows(K, k, s, cond, follow=1.0 if cond != "memorise" else 0.0, heldout=1.0,
                               arm="sgd-l2-0.01", frozen=False, weight_decay=0.01,
                               loss=0.0, norm_sq=J / 0.005))
    toys = pd.DataFrame([dict(toy="regular_d2", true_lambda=1.0, multiplicity=1, chain=c, llc=1.0 + 0.01 * c)
                         for c in range(4)])
    sens = pd.concat([pd.DataFrame(llcs).query("level == 'main'").assign(setting=x)
                      for x in ("main", "alternative")], ignore_index=True)
    params = dict(m=10, s=4, ks=list(ks), Ks=list(Ks), seeds=len(list(seeds)), vol_tol=0.01,
                  vol_rhos=[0.01])
    tables = dict(main_networks=main, main_llc=pd.DataFrame(llcs), main_volume=pd.DataFrame(vols),
                  side_networks=side, wd_networks=pd.DataFrame(wd), llc_toys=toys,
                  llc_sensitivity=sens)
    return tables, params


def test_analyse_gives_every_table_and_a_valid_ledger():
    tables, params = synthetic()
    f = A.analyse(tables, params)
    assert f.glue["verdict"] == SUPPORTS
    assert set(f.tables) == {"route_cells", "complexity_cells", "crossovers", "premise_robustness",
                             "dual_cells", "ledger"}
    led = f.tables["ledger"]
    assert list(led.columns) == list(report.LEDGER_COLUMNS)
    assert set(led.id) == {"06-premise", "06-memorisation", "06-speed", "06-depth", "06-dual"}
    assert led.version.str.len().min() > 20
    for key, value in f.glue.items():
        assert not (isinstance(value, float) and math.isnan(value)), key


def test_analyse_refuses_missing_tables():
    tables, params = synthetic()
    del tables["wd_networks"]
    with pytest.raises(KeyError, match="wd_networks"):
        A.analyse(tables, params)


def verdicts(tables, params):
    return {k[len("verdict_"):]: v for k, v in A.analyse(tables, params).glue.items()
            if k.startswith("verdict_") and k != "verdict_reason"}


def test_premise_outcomes():
    assert verdicts(*synthetic())["premise"] == SUPPORTS
    # deriving simpler everywhere, SGD memorises everywhere
    assert verdicts(*synthetic(free_route=lambda K, k, s: "memorise"))["premise"] == CONTRADICTS
    # deriving never simpler (memorise is simpler everywhere)
    assert verdicts(*synthetic(llc_gap=lambda K, k: -10.0))["premise"] == CONTRADICTS
    # deriving simpler, but the derive-only networks never generalise: no derive-simpler cell
    assert verdicts(*synthetic(der_heldout=lambda K, k: 0.6))["premise"] == CONTRADICTS
    # SGD derives in half the cells, memorises in the other half
    half = synthetic(free_route=lambda K, k, s: "derive" if k == 1 else "memorise")
    assert verdicts(*half)["premise"] == MIXED
    # 3 of 5 seeds derive everywhere: every cell unclear
    assert verdicts(*synthetic(free_route=lambda K, k, s: "derive" if s < 3 else "memorise"))["premise"] == MIXED


def test_premise_edge_cases():
    # a cell whose paired interval touches zero is not derive-simpler
    cc = pd.DataFrame([dict(K=4, k=1, label=A.NO_DIFF, derive_generalises=True)])
    routes = pd.DataFrame([dict(K=4, k=1, behaviour=A.DERIVES, derive_share=1.0)])
    assert A.verdict_premise(cc, routes)[0].label == CONTRADICTS
    # a derive-simpler cell with no free networks at all (missing): neither derives nor not
    cc = pd.DataFrame([dict(K=4, k=1, label=A.DERIVE_SIMPLER, derive_generalises=True)])
    assert A.verdict_premise(cc, routes.iloc[:0])[0].label == MIXED
    # the Wilson boundary: 5 of 5 derive counts, 4 of 5 is unclear
    assert A.behaviour_label(5, 5) == A.DERIVES and A.behaviour_label(4, 5) == A.UNCLEAR
    assert A.behaviour_label(0, 5) == A.NOT_DERIVES and A.behaviour_label(0, 0) == A.MISSING


def test_speed_outcomes():
    # memorise faster, derive simpler: SGD memorises -> followed speed
    sp = synthetic(faster=lambda K, k: "memorise", free_route=lambda K, k, s: "memorise")
    assert verdicts(*sp)["speed"] == SUPPORTS
    sp = synthetic(faster=lambda K, k: "memorise", free_route=lambda K, k, s: "derive")
    assert verdicts(*sp)["speed"] == CONTRADICTS
    # speed and simplicity agree everywhere: untestable, mixed
    assert verdicts(*synthetic())["speed"] == MIXED
    sp = synthetic(faster=lambda K, k: "memorise",
                   free_route=lambda K, k, s: "derive" if K == 4 else "memorise")
    assert verdicts(*sp)["speed"] == MIXED


def test_depth_outcomes():
    deeper_memorises = synthetic(free_route=lambda K, k, s: "derive" if k == 1 else "memorise")
    assert verdicts(*deeper_memorises)["depth"] == SUPPORTS
    assert verdicts(*synthetic())["depth"] == CONTRADICTS          # no difference: inside the margin
    inverted = synthetic(free_route=lambda K, k, s: "memorise" if k == 1 else "derive")
    assert verdicts(*inverted)["depth"] == CONTRADICTS
    # half the seeds show a large effect, the other half none: the interval straddles the margin
    noisy = synthetic(free_route=lambda K, k, s: "memorise" if (k == 3 and s in (0, 1)) else "derive",
                      seeds=range(4))
    assert verdicts(*noisy)["depth"] == MIXED


def test_depth_needs_two_difficulties():
    tables, _ = synthetic(ks=(1,))
    v, info = A.verdict_depth(tables["main_networks"])
    assert v.label == MIXED and info["n"] == 0


def test_dual_outcomes():
    assert verdicts(*synthetic(dual_excess=0.0))["dual"] == SUPPORTS
    assert verdicts(*synthetic(dual_excess=1.0))["dual"] == CONTRADICTS
    tables, params = synthetic(dual_excess=0.1)     # exactly at the margin: the interval touches it
    wd = tables["wd_networks"]
    free = wd.condition == "free"
    wd.loc[free, "norm_sq"] *= 1 + 0.05 * np.where(wd.loc[free, "seed"] % 2 == 0, 1, -1)
    assert verdicts(tables, params)["dual"] == MIXED


def test_memorisation_outcomes():
    assert verdicts(*synthetic(Ks=(16, 32, 64)))["memorisation"] == SUPPORTS
    mem = synthetic(Ks=(16, 32, 64), free_route=lambda K, k, s: "memorise")
    assert verdicts(*mem)["memorisation"] == CONTRADICTS
    half = synthetic(Ks=(16, 32, 64), free_route=lambda K, k, s: "memorise" if s % 2 else "derive")
    assert verdicts(*half)["memorisation"] == MIXED
    # only K <= m: nothing to judge
    assert verdicts(*synthetic(Ks=(4, 8)))["memorisation"] == MIXED


def test_cell_complexity_pairs_by_seed_and_drops_stuck_pairs():
    rows = []
    for s in range(4):
        rows.append(dict(level="main", K=8, k=1, seed=s, condition="memorise", llc=10.0 + s,
                         reached=True, heldout_acc=0.5))
        rows.append(dict(level="main", K=8, k=1, seed=s, condition="derive", llc=5.0 + s,
                         reached=s != 3, heldout_acc=1.0))
    c = A.cell_complexity(pd.DataFrame(rows), "llc").iloc[0]
    assert c.n_pairs == 3 and c["diff"] == pytest.approx(5.0)
    assert c.diff_lo == pytest.approx(5.0) and c.label == A.DERIVE_SIMPLER   # zero variance
    assert c.derive_heldout == 1.0 and c.derive_generalises


def test_crossover_needs_every_larger_cell():
    cells = pd.DataFrame([dict(K=K, k=1, label=lab, derive_generalises=True) for K, lab in
                          [(2, A.DERIVE_SIMPLER), (4, A.NO_DIFF), (8, A.DERIVE_SIMPLER),
                           (16, A.DERIVE_SIMPLER)]] +
                         [dict(K=K, k=2, label=lab, derive_generalises=True) for K, lab in
                          [(2, A.DERIVE_SIMPLER), (4, A.DERIVE_SIMPLER), (8, A.DERIVE_SIMPLER),
                           (16, A.NO_DIFF)]])
    x = A.crossover(cells).set_index("k").K_star
    assert x[1] == 8 and math.isnan(x[2])


def test_route_classes_and_index():
    follow = [1.0, 0.9, 0.2, 0.5, 1.0]
    held = [1.0, 0.95, 0.5, 0.75, 0.55]
    assert list(A.route_class(follow, held)) == ["derive", "derive", "memorise", "mixed", "memorise"]
    assert list(A.memory_key(follow)) == ["description", "description", "identifier", "both", "description"]
    np.testing.assert_allclose(A.derivation_index(follow, held), [1.0, 0.81, 0.0, 0.25, 0.1])


def test_dual_table_names_the_dominant_route():
    tables, _ = synthetic(dual_excess=0.5)
    d = A.dual_table(tables["wd_networks"])
    assert (d.dominant == "derive").all() and (d.lower_objective == "derive").all()
    assert (d.free_derive == 5).all()
    wd = tables["wd_networks"].copy()
    wd.loc[wd.condition == "derive", "loss"] = 1.0      # derive: lower norm, higher loss
    d = A.dual_table(wd)
    assert (d.dominant == "neither").all() and (d.lower_objective == "memorise").all()


def test_ledger_effects_are_numbers_when_no_cell_can_be_judged():
    # deriving never simpler (premise: contradicts), and speed agreeing with simplicity everywhere
    # (speed: untestable): the rows fall back to the share of the grid's cells, 0 of n
    never = A.analyse(*synthetic(llc_gap=lambda K, k: -10.0)).tables["ledger"].set_index("id")
    agree = A.analyse(*synthetic()).tables["ledger"].set_index("id")
    for led, rid, verdict in ((never, "06-premise", CONTRADICTS), (agree, "06-speed", MIXED)):
        row = led.loc[rid]
        assert row.verdict == verdict and "(none)" in row.effect_name, rid
        assert row.effect == 0.0 and 0 < row.effect_hi < 1, rid
    # where cells exist, the effect is the rule's own share
    assert agree.loc["06-premise", "effect"] == 1.0 and "(none)" not in agree.loc["06-premise", "effect_name"]
    for led in (never, agree):
        assert np.isfinite(led[["effect", "effect_lo", "effect_hi"]].values.astype(float)).all()
