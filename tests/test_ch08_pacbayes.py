"""Chapter 08: the bound arithmetic against hand computations, the stochastic networks, the reader
of other chapters' results, and every outcome of the analysis rules."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import brentq

from countingargs import chunks
from countingargs.chapters.ch08_pacbayes import analysis, bounds, experiment
from countingargs.nets.mlp import forward
from countingargs.stats import CONTRADICTS, MIXED, SUPPORTS

PARAMS = {"delta": 0.025, "delta_mc": 0.01, "p_min": 0.01, "literature_bound": 0.0279, "literature_bound_n": 30000,
          "literature_test_error": 0.0204}


# -- the bound arithmetic ---------------------------------------------------------------------------
def test_binary_kl_by_hand():
    # kl(0.1 || 0.2) = 0.1 ln(0.1/0.2) + 0.9 ln(0.9/0.8)
    assert bounds.kl_bernoulli(0.1, 0.2) == pytest.approx(0.1 * math.log(0.5) + 0.9 * math.log(1.125), abs=1e-15)
    assert bounds.kl_bernoulli(0.1, 0.2) == pytest.approx(0.0366900, abs=1e-7)
    assert bounds.kl_bernoulli(0.0, 0.3) == pytest.approx(-math.log(0.7))
    assert bounds.kl_bernoulli(0.3, 0.3) == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bounds.kl_bernoulli(1.2, 0.5)


def test_kl_inverse_closed_forms_and_an_independent_solver():
    c = np.array([0.0, 0.01, 0.3])
    np.testing.assert_allclose(bounds.kl_inverse(0.0, c), 1 - np.exp(-c), atol=1e-14)   # kl(0||p) = -ln(1-p)
    assert bounds.kl_inverse(0.37, 0.0) == pytest.approx(0.37, abs=1e-14)
    for q, cc in ((0.1, 0.0235924), (0.02, 0.005), (0.6, 0.2)):
        ref = brentq(lambda p: q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p)) - cc, q, 1 - 1e-15)
        assert bounds.kl_inverse(q, cc) == pytest.approx(ref, abs=1e-9)
        assert bounds.kl_inverse(q, cc) <= q + math.sqrt(cc / 2) + 1e-12       # Pinsker
    assert bounds.kl_inverse(0.5, 50.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="c must be"):
        bounds.kl_inverse(0.1, -1.0)


def test_the_bound_at_known_kl_and_risk():
    # empirical risk 0, KL 0, n = 1000, delta = 0.05: 1 - exp(-ln(2 sqrt(1000) / 0.05) / 1000)
    c = math.log(2 * math.sqrt(1000) / 0.05) / 1000
    assert bounds.pac_bayes_kl(0.0, 0.0, 1000, 0.05) == pytest.approx(1 - math.exp(-c), abs=1e-14)
    assert bounds.pac_bayes_kl(0.0, 0.0, 1000, 0.05) == pytest.approx(0.0071173, abs=1e-7)
    # risk 0.1, KL 5 nats, n = 500, delta = 0.05: complexity (5 + ln(2 sqrt(500)/0.05)) / 500
    assert bounds.complexity(5.0, 500, 0.05) == pytest.approx((5 + math.log(2 * math.sqrt(500) / 0.05)) / 500)
    assert bounds.complexity(5.0, 500, 0.05) == pytest.approx(0.0235924, abs=1e-7)
    b = bounds.pac_bayes_kl(0.1, 5.0, 500, 0.05)
    assert bounds.kl_bernoulli(0.1, b) == pytest.approx(0.0235924, abs=1e-7)
    assert 0.1 < b < 0.1 + math.sqrt(0.0235924 / 2)
    with pytest.raises(ValueError, match="n >= 8"):
        bounds.complexity(1.0, 5, 0.05)


def test_certificate_chains_the_monte_carlo_term_and_the_union_bound():
    mc = bounds.mc_upper(0.05, 1000, 0.01)
    assert mc == pytest.approx(bounds.kl_inverse(0.05, math.log(200) / 1000))
    one = bounds.certificate(0.05, 1000, 3.0, 600, 0.025, 0.01, 1)
    three = bounds.certificate(0.05, 1000, 3.0, 600, 0.025, 0.01, 3)
    assert one == pytest.approx(bounds.pac_bayes_kl(mc, 3.0, 600, 0.025))
    assert three == pytest.approx(bounds.pac_bayes_kl(mc, 3.0, 600, 0.025 / 3))
    assert three > one > mc > 0.05
    # more Monte Carlo samples, a smaller certificate
    assert bounds.certificate(0.05, 100000, 3.0, 600, 0.025, 0.01) < one


def test_monte_carlo_term_covers_at_its_level_even_for_unequal_means():
    rng = np.random.default_rng(0)
    trials, delta = 3000, 0.1
    p = 0.05
    cover = (bounds.mc_upper(rng.binomial(200, p, trials) / 200, 200, delta) >= p).mean()
    assert cover >= 1 - delta
    # per-example draws: independent losses with different means (their average is what is bounded)
    means = rng.uniform(0, 0.2, 300)
    draws = rng.random((trials, 300)) < means
    cover2 = (bounds.mc_upper(draws.mean(1), 300, delta) >= means.mean()).mean()
    assert cover2 >= 1 - delta


def test_fquad_relaxes_the_kl_bound_and_gaussian_kl_is_exact():
    for r, kl, n in ((0.0, 1.0, 300), (0.05, 10.0, 648), (0.4, 0.0, 100)):
        fq = float(bounds.f_quad(torch.tensor([r], dtype=torch.float64), torch.tensor([kl], dtype=torch.float64),
                                 n, 0.025))
        assert fq >= bounds.pac_bayes_kl(r, kl, n, 0.025) - 1e-12
    mq, sq = torch.randn(2, 3, 4, dtype=torch.float64), torch.rand(2, 3, 4, dtype=torch.float64) + 0.1
    mp, sp = torch.randn(2, 3, 4, dtype=torch.float64), torch.tensor([0.3, 0.7], dtype=torch.float64).view(2, 1, 1)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, sq),
                                            torch.distributions.Normal(mp, sp.expand(2, 3, 4))).sum((1, 2))
    torch.testing.assert_close(bounds.gaussian_kl(mq, sq, mp, sp), ref)


def test_holdout_bound_by_hand():
    assert bounds.holdout(0.0, 100, 0.05) == pytest.approx(1 - math.exp(-math.log(20) / 100))


# -- the stochastic networks ------------------------------------------------------------------------
def _net(m=2, sizes=(3, 5, 2), seed=0, sigma=0.2):
    g = torch.Generator().manual_seed(seed)
    mu, sd = [], []
    for a, b in zip(sizes[:-1], sizes[1:]):
        mu += [torch.randn(m, a, b, generator=g), torch.randn(m, 1, b, generator=g)]
        sd += [torch.full((m, a, b), sigma), torch.full((m, 1, b), sigma)]
    return mu, sd


def test_local_reparameterisation_matches_the_weight_distribution():
    mu, sd = _net(m=1, sizes=(3, 2))
    x = torch.tensor([[[1.0, -2.0, 0.5]]])
    g = torch.Generator().manual_seed(1)
    z = torch.stack([experiment.lrt_logits(mu, sd, x, g)[0, 0] for _ in range(20000)])
    mean = x[0] @ mu[0][0] + mu[1][0]
    var = (x[0] ** 2) @ sd[0][0] ** 2 + sd[1][0] ** 2
    torch.testing.assert_close(z.mean(0), mean[0], atol=0.02, rtol=0)
    torch.testing.assert_close(z.var(0), var[0], atol=0.03, rtol=0.03)
    # zero variance: the deterministic network
    zero = [torch.zeros_like(s) for s in sd]
    mu2, _ = _net()
    x2 = torch.randn(2, 7, 3)
    torch.testing.assert_close(experiment.lrt_logits(mu2, [torch.zeros_like(m) for m in mu2], x2, g),
                               forward(experiment._as_layers(mu2), x2))
    assert zero


def test_shared_draws_with_zero_variance_give_the_deterministic_error():
    mu, _ = _net()
    x = torch.randn(2, 50, 3)
    y = torch.randint(0, 2, (2, 50))
    err, ce = experiment.shared_draw_loss(mu, [torch.zeros_like(m) for m in mu], x, y, 7,
                                          torch.Generator().manual_seed(0), 0.01, chunk=3)
    det = (forward(experiment._as_layers(mu), x).argmax(-1) != y).double().mean(1).numpy()
    np.testing.assert_allclose(err, det)
    assert np.all((ce >= 0) & (ce <= 1))


SMALL = dict(prior_sigmas=[0.01, 0.05], prior_fraction=0.5, prior_steps=20, prior_lr=0.01, post_steps=5,
             post_lr=0.003, p_min=0.01, p_min_train=1e-5, delta=0.025, delta_mc=0.01, repeats=3, test_repeats=2,
             mc_draws=10)


def test_certify_batch_shapes_selection_and_determinism():
    nets, priors = experiment.certify_batch("binary", "true", 60, 4, [0, 1], **SMALL)
    assert len(nets) == 4 and len(priors) == 2
    assert nets.groupby("seed").selected.sum().tolist() == [1, 1]
    assert (nets.n_prior + nets.n_bound == 60).all() and (nets.n_priors == 2).all()
    assert nets[nets.selected].bound_err_draws.notna().all() and nets[~nets.selected].bound_err_draws.isna().all()
    assert (nets.kl >= 0).all() and nets[["bound_err", "test_err", "bound_ce", "test_ce"]].stack().between(0, 1).all()
    again, _ = experiment.certify_batch("binary", "true", 60, 4, [0, 1], **SMALL)
    pd.testing.assert_frame_equal(nets, again)
    rnd, _ = experiment.certify_batch("ten", "random", 60, 4, [0], **SMALL)
    assert (rnd.labels == "random").all()
    with pytest.raises(ValueError, match="bound"):
        experiment.certify_batch("binary", "true", 12, 4, [0], **SMALL)
    with pytest.raises(ValueError, match="labels"):
        experiment.certify_batch("binary", "noisy", 60, 4, [0], **SMALL)


# -- the chunked run: the same tables whatever the chunk layout and the workers ----------------------
GRID = dict(tasks=["binary"], train_sizes=[40, 60], widths=[4], seeds=[0, 1], control=True)


def _tables_csv(tables):
    return {k: df.to_csv() for k, df in tables.items()}


@pytest.fixture(scope="module")
def reference_run():
    return _tables_csv(experiment.run(**GRID, batches_per_chunk=1, scheduler="", **SMALL))


def test_run_is_the_same_for_every_chunk_layout(reference_run):
    # the batches run one by one, as the run did before it was chunked
    direct = [experiment.certify_batch(t, lab, n, w, GRID["seeds"], **SMALL)
              for t, lab, n, w in (("binary", "true", 40, 4), ("binary", "true", 60, 4), ("binary", "random", 60, 4))]
    assert reference_run == {"networks": pd.concat([a for a, _ in direct], ignore_index=True).to_csv(),
                             "priors": pd.concat([b for _, b in direct], ignore_index=True).to_csv()}
    for per_chunk in (2, 3):
        assert _tables_csv(experiment.run(**GRID, batches_per_chunk=per_chunk, scheduler="", **SMALL)) == reference_run
    with pytest.raises(ValueError, match="batches_per_chunk"):
        experiment.run(**GRID, batches_per_chunk=0, scheduler="", **SMALL)
    with pytest.raises(ValueError, match="base key"):
        experiment.certify_chunk(seed=3, chunk=0, batches=[], seeds=[0], **SMALL)


def test_run_on_a_local_cluster_with_1_and_2_workers_matches_in_process(reference_run, workers_env):
    for sched, per_chunk in (("local:1", 1), ("local:2", 1), ("local:2", 2)):
        got = experiment.run(**GRID, batches_per_chunk=per_chunk, scheduler=sched, **SMALL)
        assert _tables_csv(got) == reference_run
    rows = {(h["name"], h["scheduler"], h["workers"]) for h in chunks.history()}
    assert {("08-certificates", "local:1", 1), ("08-certificates", "local:2", 2)} <= rows


def test_task_data_labels():
    d = experiment.task_data("binary")
    assert len(d["y"]) == 1297 and set(d["y"].unique().tolist()) == {0, 1}
    assert torch.equal(d["y"], (d["y_strata"] >= 5).long())
    assert set(experiment.task_data("ten")["y_random"].unique().tolist()) <= set(range(10))
    with pytest.raises(ValueError, match="unknown task"):
        experiment.task_data("eleven")


# -- reading other chapters' results -----------------------------------------------------------------
def _ch01(folder):
    folder.mkdir(parents=True)
    rows = []
    for n in (100, 400):
        for w in (4, 8):
            for s in range(3):
                for t, vce in ((1.0, 0.5), (2.0, 0.4)):
                    rows.append({"n_train": n, "width": w, "seed": s, "condition": "distill", "checkpoint": "final",
                                 "temperature": t, "val_ce": vce, "test_acc": 0.90 + 0.01 * s + (0.02 if t == 2.0 else 0)})
                rows.append({"n_train": n, "width": w, "seed": s, "condition": "hard", "checkpoint": "early_stopped",
                             "temperature": np.nan, "val_ce": 0.6, "test_acc": 0.88 + 0.01 * s})
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    pd.DataFrame({"version": ["H", "M", "T"], "n_train": [100, 100, 100], "width": [4, 4, 4],
                  "diff": [0.2, 0.1, 0.05], "lo": [0.1, 0.05, 0.0], "hi": [0.3, 0.15, 0.1], "n_seeds": [3, 3, 3]}
                 ).to_csv(folder / "cells.csv", index=False)


def test_external_effects_absent_present_and_unreadable(tmp_path):
    absent = experiment.external_effects(tmp_path, "quick")
    assert set(absent.family) == set(experiment.SOURCES) and (absent.status == "absent").all()
    assert experiment.external_effects(None, "quick").status.eq("absent").all()
    _ch01(tmp_path / "results" / "quick" / "01_distillation")
    led = tmp_path / "results" / "quick" / "07_speed"
    led.mkdir(parents=True)
    pd.DataFrame({"id": ["07-tax"], "version": ["tax"], "effect": [0.05], "effect_lo": [0.02], "effect_hi": [0.08],
                  "units": ["nats"]}).to_csv(led / "ledger.csv", index=False)
    eff = experiment.external_effects(tmp_path, "quick")
    acc = eff[eff.family == "01-accuracy"]
    assert len(acc) == 4 and (acc.status == "present").all()
    # temperature 2 has the lower validation CE: distilled 0.92 + 0.01 s against hard 0.88 + 0.01 s
    np.testing.assert_allclose(acc.effect, 0.04)
    nats = eff[eff.family == "01-nats"]
    assert sorted(nats.cell.str[:9]) == ["version H", "version M"]      # version T (training CE) left out
    assert eff[eff.family == "07-nats"].file.iloc[0] == "results/quick/07_speed/ledger.csv"
    sha = hashlib.sha256((led / "ledger.csv").read_bytes()).hexdigest()
    assert eff[eff.family == "07-nats"].sha256.iloc[0] == sha
    pd.DataFrame({"x": [1]}).to_csv(led / "ledger.csv", index=False)
    bad = experiment.external_effects(tmp_path, "quick")
    assert bad[bad.family == "07-nats"].status.iloc[0].startswith("unreadable")


# -- the analysis rules --------------------------------------------------------------------------------
def test_compare_rule_every_outcome_and_edges():
    assert analysis.compare(0.02, 0.01, 0.03, 0.04, 0.06) == SUPPORTS
    assert analysis.compare(-0.02, -0.03, -0.01, 0.04, 0.06) == SUPPORTS          # |effect| counts
    assert analysis.compare(0.10, 0.08, 0.12, 0.04, 0.06) == CONTRADICTS
    assert analysis.compare(0.05, 0.03, 0.07, 0.04, 0.06) == MIXED
    assert analysis.compare(0.05, 0.03, 0.06, 0.06, 0.07) == MIXED               # touching: not above
    assert analysis.compare(0.0, -0.05, 0.05, 0.001, 0.002) == MIXED              # may be zero: never contradicts
    assert analysis.compare(0.0, -0.01, 0.01, 0.02, 0.03) == SUPPORTS
    assert analysis.compare(0.1, math.nan, math.nan, 0.01, 0.02) == analysis.MISSING
    with pytest.raises(ValueError, match="reversed"):
        analysis.compare(0.1, 0.2, 0.1, 0.0, 0.1)


def test_family_verdict_two_thirds():
    assert analysis.family_verdict([SUPPORTS, SUPPORTS, MIXED]) == SUPPORTS
    assert analysis.family_verdict([CONTRADICTS, CONTRADICTS, SUPPORTS]) == CONTRADICTS
    assert analysis.family_verdict([SUPPORTS, CONTRADICTS, MIXED]) == MIXED
    assert analysis.family_verdict([SUPPORTS, SUPPORTS, MIXED, MIXED]) == MIXED
    with pytest.raises(ValueError):
        analysis.family_verdict([])


def _networks(err=0.05, slack_scale=1.0, seeds=3):
    """A synthetic ``networks`` table: the certificate's slack grows with ``slack_scale``."""
    rows, priors = [], []
    for task, chance in analysis.CHANCE.items():
        for labels, n, w in (("true", 400, 16), ("true", 1297, 16), ("random", 1297, 16)):
            for s in range(seeds):
                base = chance if labels == "random" else err * (1 + 0.1 * s)
                for k, sig in enumerate((0.01, 0.03)):
                    rows.append({"task": task, "labels": labels, "n_train": n, "width": w, "seed": s,
                                 "sigma_prior": sig, "n_priors": 2, "n_prior": n // 2, "n_bound": n - n // 2,
                                 "n_params": 1000, "kl": 1.0 + 50 * (slack_scale - 1) + k, "sigma_mean": sig,
                                 "bound_err": base, "bound_ce": base / 2, "repeats": 100, "selected": k == 0,
                                 "draws": 2000 if k == 0 else 0, "bound_err_draws": base if k == 0 else math.nan,
                                 "bound_ce_draws": base / 2 if k == 0 else math.nan, "test_err": base,
                                 "test_ce": base / 2, "test_repeats": 100, "test_err_mean": base * 0.9, "n_test": 500})
                priors.append({"task": task, "labels": labels, "n_train": n, "width": w, "seed": s, "n_prior": n // 2,
                               "prior_train_err": 0.0, "prior_bound_err": base, "prior_test_err": base})
    return pd.DataFrame(rows), pd.DataFrame(priors)


def _effects(effect_acc, effect_nats, present=("01-accuracy", "01-nats")):
    rows = []
    for fam in experiment.SOURCES:
        base = {"family": fam, "chapter": fam[:2], "file": f"results/quick/x/{fam}.csv", "sha256": "ab" * 32,
                "quantity": "q"}
        if fam not in present:
            rows.append({**base, "status": "absent"})
            continue
        e, units = (effect_acc, "accuracy") if fam == "01-accuracy" else (effect_nats, "nats")
        for i in range(3):
            rows.append({**base, "status": "present", "cell": f"cell {i}", "units": units, "effect": e,
                         "lo": e * 0.8, "hi": e * 1.2, "n_seeds": 5})
    return pd.DataFrame(rows).reindex(columns=experiment.EFFECT_COLUMNS)


def _tables(effect_acc, effect_nats, slack_scale=1.0, present=("01-accuracy", "01-nats")):
    nets, priors = _networks(slack_scale=slack_scale)
    return {"networks": nets, "priors": priors, "effects": _effects(effect_acc, effect_nats, present)}


def test_comparison_produces_each_verdict():
    sup = analysis.comparison(_tables(0.001, 0.001), PARAMS)
    assert sup.glue["verdict"] == SUPPORTS and len(sup.tables["ledger"]) == 2
    con = analysis.comparison(_tables(0.5, 2.0), PARAMS)
    assert con.glue["verdict"] == CONTRADICTS
    assert set(con.tables["ledger"].favours) == {"for the counting argument"}
    mixed = analysis.comparison(_tables(0.001, 2.0), PARAMS)
    assert mixed.glue["verdict"] == MIXED
    assert mixed.glue["verdict_01_accuracy"] == SUPPORTS and mixed.glue["verdict_01_nats"] == CONTRADICTS
    assert mixed.glue["verdict_07_nats"] == "not available"
    assert "not found" in mixed.glue["finding_07_nats"]


def test_a_looser_certificate_moves_the_verdict_toward_turner():
    # the same effects; only the certificate's KL (so its slack) grows
    cert = analysis.summary_table(analysis.certified(_tables(0.03, 0.3)["networks"].pipe(
        lambda n: {"networks": n}), PARAMS))
    tight = analysis.reference_slack(cert, "slack_err", "ten").slack_err
    loose_tables = _tables(0.03, 0.3, slack_scale=2.0)
    loose = analysis.reference_slack(analysis.summary_table(analysis.certified(loose_tables, PARAMS)),
                                     "slack_err", "ten").slack_err
    assert loose > tight
    eff = 0.5 * (tight + loose)            # between the two slacks
    assert analysis.comparison(_tables(eff / 1.25, 0.001), PARAMS).glue["verdict_01_accuracy"] == CONTRADICTS
    assert analysis.comparison(_tables(eff / 1.25, 0.001, slack_scale=2.0), PARAMS).glue["verdict_01_accuracy"] \
        == SUPPORTS


def test_nothing_to_compare_is_reported_not_failed():
    f = analysis.comparison(_tables(0.01, 0.1, present=()), PARAMS)
    assert f.glue["verdict"] == MIXED and "no other chapter" in f.glue["verdict_reason"]
    assert "ledger" not in f.tables and f.glue["n_families"] == 0
    assert all(f.glue[f"verdict_{k}"] == "not available" for k in ("01_accuracy", "01_nats", "07_nats"))


def test_effects_in_other_units_are_not_compared():
    t = _tables(0.01, 0.1, present=("07-nats",))
    t["effects"].loc[t["effects"].family == "07-nats", "units"] = "share of runs"
    comp = analysis.comparison_table(t, PARAMS)
    assert (comp.verdict == analysis.NOT_COMPARABLE).all()
    g = analysis.comparison(t, PARAMS).glue
    assert g["verdict_07_nats"] == "not available" and "in other units" in g["finding_07_nats"]
    t["effects"].loc[t["effects"].family == "07-nats", ["units", "lo", "hi"]] = ["nats", math.nan, math.nan]
    g = analysis.comparison(t, PARAMS).glue
    assert g["verdict_07_nats"] == "not available" and "without an interval" in g["finding_07_nats"]


def test_analyse_gives_every_glue_value_and_validity_counts():
    f = analysis.analyse(_tables(0.01, 0.1), PARAMS)
    assert f.glue["holds_err"] == f.glue["n_certs"] == 12
    assert f.glue["random_above_chance"] == f.glue["n_random"] == 6
    for key, value in f.glue.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
    c = f.tables["certified"]
    assert (c.cert_err > c.test_err).all() and (c.cert_err_draws > c.cert_err).all()
    with pytest.raises(ValueError, match="needs the tables"):
        analysis.certificates({}, PARAMS)


def test_find_book_root(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "_config.yml").write_text("title: t\n")
    deep = tmp_path / ".rebuild-tmp" / "08_pacbayes-x"
    deep.mkdir(parents=True)
    assert experiment.find_book_root(deep) == tmp_path.resolve()
    assert experiment.find_book_root(tmp_path.parent) is None or experiment.find_book_root(tmp_path.parent) != tmp_path
