"""Chapter 02 (volume): verdicts, effect sizes and glued numbers, from the saved tables only.

Every verdict rule stated in the notebook's prose is one function here; :func:`analyse` gives
every glued value and derived table (``python -m countingargs verify`` calls it on the saved
CSVs). Intervals are over seeds (:data:`interval`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ... import stats
from ...report import Findings
from ...stats import CONTRADICTS, MIXED, SUPPORTS, Verdict

#: interval over seeds: ``interval(values) -> (estimate, low, high)``
interval = stats.t_interval


def band_verdict(lo: float, hi: float, width: float, what: str) -> Verdict:
    """Supports if ``[lo, hi]`` lies inside ``[-width, width]`` (the claimed equality holds to
    within the band), contradicts if it lies entirely outside, mixed otherwise."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"band_verdict needs a finite interval with lo <= hi, got [{lo}, {hi}]")
    if not width > 0:
        raise ValueError(f"band width must be > 0, got {width}")
    span = f"[{lo:.3g}, {hi:.3g}]"
    if -width <= lo and hi <= width:
        return Verdict(SUPPORTS, f"the 95% interval of the {what} {span} lies inside ±{width:g}")
    if lo > width or hi < -width:
        return Verdict(CONTRADICTS, f"the 95% interval of the {what} {span} lies outside ±{width:g}")
    return Verdict(MIXED, f"the 95% interval of the {what} {span} overlaps the edge of ±{width:g}")


def _arch(n_inputs, hidden) -> str:
    return f"{n_inputs}→" + "→".join(map(str, hidden)) + "→1"


def _need(tables: dict, *names: str) -> None:
    missing = [n for n in names if n not in tables]
    if missing:
        raise ValueError(f"chapter 02 analysis needs the tables {missing}; saved: {sorted(tables)}")


# ---------------------------------------------------------------------------------------------
# 1. the prior
# ---------------------------------------------------------------------------------------------
def verdict_prior(seeds: pd.DataFrame) -> tuple[Verdict, tuple[float, float, float]]:
    """Premise: random networks concentrate on simple functions. Per seed of the main setting,
    mean LZ complexity of a random network's function minus that of a uniformly random
    function; supports if the interval lies below 0, contradicts if above, else mixed."""
    main = seeds[seeds.setting == "main"]
    diff = (main.lz_mean_prior - main.lz_mean_uniform).to_numpy(float)
    est, lo, hi = interval(diff)
    v = Verdict.from_interval(lo, hi, favour="negative",
                              what="difference in mean LZ complexity (prior minus uniform)")
    return v, (est, lo, hi)


def prior(tables: dict, params: dict) -> Findings:
    _need(tables, "prior_seeds", "prior_pooled", "prior_top", "prior_scatter")
    from scipy import stats as st

    seeds, pooled = tables["prior_seeds"], tables["prior_pooled"].set_index("setting")
    top, scatter = tables["prior_top"], tables["prior_scatter"]
    main = seeds[seeds.setting == "main"]
    v, (lz_est, lz_lo, lz_hi) = verdict_prior(seeds)
    p0 = interval(main.p_const0)
    p1 = interval(main.p_const1)
    top_main = top[top.setting == "main"].drop_duplicates("rank").sort_values("rank")
    g = dict(arch=_arch(params["n_inputs"], params["hidden"]), n_cube=2 ** params["n_inputs"],
             n_inputs=params["n_inputs"], prior_samples=int(pooled.loc["main", "samples"]),
             prior2_samples=int(pooled.loc["second", "samples"]), sigma_w=params["sigma_w"],
             sigma_b=params["sigma_b"], n_seeds=params["seeds"],
             prior2_desc=f"{params['prior2_activation']}, σ_w = {params['prior2_sigma_w']:g}, "
                         f"σ_b = {params['sigma_b']:g}",
             distinct_main=int(pooled.loc["main", "distinct"]),
             distinct_second=int(pooled.loc["second", "distinct"]),
             singleton_share=float(pooled.loc["main", "singletons"] / pooled.loc["main", "distinct"]),
             p_const0=p0[0], p_const0_lo=p0[1], p_const0_hi=p0[2],
             p_const1=p1[0], p_const1_lo=p1[1], p_const1_hi=p1[2],
             log2_uniform=-float(2 ** params["n_inputs"]),
             lz_diff=lz_est, lz_diff_lo=lz_lo, lz_diff_hi=lz_hi,
             lz_prior_mean=float(main.lz_mean_prior.mean()),
             lz_uniform_mean=float(main.lz_mean_uniform.mean()),
             lz_second_mean=float(seeds[seeds.setting == "second"].lz_mean_prior.mean()),
             lz_sample=params["lz_sample"], lz_top=params["lz_top"],
             top_main_1=top_main.iloc[0].function, top_main_3=top_main.iloc[2].function,
             p_top_main_3=float(top_main.iloc[2].p),
             rho_lz=float(st.spearmanr(scatter.logp, scatter.lz).statistic),
             verdict_prior=v.label, verdict_prior_reason=v.reason)
    return Findings(glue=g)


# ---------------------------------------------------------------------------------------------
# reach of rejection sampling on the big cube
# ---------------------------------------------------------------------------------------------
def reach_summary(reach: pd.DataFrame) -> pd.DataFrame:
    """Mean acceptance rate, accepted networks and functions seen twice per (target, size)."""
    return (reach.groupby(["target", "k"], sort=False)
            .agg(accept_rate=("accept_rate", "mean"), accepted=("accepted", "mean"),
                 distinct=("distinct", "mean"), seen_twice=("seen_twice", "mean")).reset_index())


def reach(tables: dict, params: dict) -> Findings:
    _need(tables, "reach")
    r = tables["reach"]
    k_hi = int(r.k.max())
    at_hi = r[r.k == k_hi]
    zero = at_hi.groupby("target", sort=False).accepted.max().loc[lambda x: x == 0]
    hardest = at_hi.groupby("target", sort=False).accept_rate.mean().sort_values()
    r16 = r[r.k == 16]
    g = dict(reach_k16_seen_twice=float(r16.seen_twice.mean()) if len(r16) else 0.0,
             reach_k16_distinct=float(r16.distinct.mean()) if len(r16) else 0.0,
             reach_kmax=k_hi,
             reach_kmax_zero_targets=", ".join(zero.index) if len(zero) else "none of the targets",
             reach_hardest=", ".join(hardest.index[:2]))
    return Findings(glue=g, tables={"reach_summary": reach_summary(r)})


# ---------------------------------------------------------------------------------------------
# 2-3. volume vs SGD, counting vs volume
# ---------------------------------------------------------------------------------------------
def top10_shares(vs: pd.DataFrame) -> pd.DataFrame:
    """SGD's share and the volume share (on the half of the prior sample that did not select
    them) of the ten functions with the most volume; a share of zero counts as half a sample;
    ``log2_ratio`` = log2(SGD share / volume share)."""
    out = vs.copy()
    out["sgd_share_top10"] = np.maximum(out.sgd_top10, 0.5) / out.sgd_n
    out["pb_share_top10"] = np.maximum(out.pb_top10_b, 0.5) / np.maximum(out.pb_n_b, 1)
    out["log2_ratio"] = np.log2(out.sgd_share_top10 / out.pb_share_top10)
    return out


def per_seed(vs: pd.DataFrame) -> pd.DataFrame:
    """Cell statistics averaged over targets and optimisers, one row per seed; ``d`` = how much
    closer SGD's off-S accuracy is to volume's than to counting's 0.5."""
    v = top10_shares(vs)
    ps = v.groupby("seed").agg(spearman=("spearman", "mean"), log2_ratio=("log2_ratio", "mean"),
                               acc_sgd=("acc_sgd", "mean"), acc_pb=("acc_pb", "mean"),
                               gen_sgd=("gen_sgd", "mean"), gen_pb=("gen_pb", "mean"))
    ps["d"] = (ps.acc_sgd - 0.5).abs() - (ps.acc_sgd - ps.acc_pb).abs()
    return ps


def verdict_order(vs: pd.DataFrame):
    ps = per_seed(vs)
    est, lo, hi = interval(ps.spearman.fillna(0))
    return Verdict.from_interval(lo, hi, what="Spearman correlation of log P_SGD and log P_B"), (est, lo, hi)


def verdict_proportion(vs: pd.DataFrame):
    est, lo, hi = interval(per_seed(vs).log2_ratio)
    return band_verdict(lo, hi, 1.0, "log2 ratio of SGD's share to the volume share on the "
                                     "top-10 volume functions"), (est, lo, hi)


def verdict_count(vs: pd.DataFrame):
    est, lo, hi = interval(per_seed(vs).d)
    return Verdict.from_interval(lo, hi, what="advantage of volume over counting as a predictor "
                                              "of SGD's off-S accuracy"), (est, lo, hi)


def volume_vs_sgd(tables: dict, params: dict) -> Findings:
    _need(tables, "volume_vs_sgd")
    from scipy import stats as st

    vs = top10_shares(tables["volume_vs_sgd"])
    ps = per_seed(vs)
    v2a, (rho, rho_lo, rho_hi) = verdict_order(vs)
    v2b, (r, r_lo, r_hi) = verdict_proportion(vs)
    v3, (d, d_lo, d_hi) = verdict_count(vs)
    n_test = int(2 ** params["small_inputs"] - params["train_size"])
    targets = list(dict.fromkeys(vs.target))
    g = dict(train_size=params["train_size"], n_test_small=n_test, n5=params["small_inputs"],
             rho=rho, rho_lo=rho_lo, rho_hi=rho_hi, log2_ratio=r, log2_ratio_lo=r_lo,
             log2_ratio_hi=r_hi, ratio=2 ** r, d=d, d_lo=d_lo, d_hi=d_hi,
             sgd_share_top10=float(vs.sgd_share_top10.mean()),
             pb_share_top10=float(vs.pb_share_top10.mean()),
             acc_sgd=float(ps.acc_sgd.mean()), acc_pb=float(ps.acc_pb.mean()),
             gen_sgd=float(ps.gen_sgd.mean()), gen_pb=float(ps.gen_pb.mean()),
             gen_count=float(st.binom.cdf(int(0.1 * n_test), n_test, 0.5)),
             accepted_mean=float(vs.drop_duplicates(["seed", "target"]).accepted.mean()),
             accepted_min=int(vs.accepted.min()), small_samples=int(vs.prior_samples.iloc[0]),
             sgd_runs=params["sgd_runs"], n_compared_mean=float(vs.n_compared.mean()),
             sgd_fit_share=float(vs.sgd_fitted.sum() / vs.sgd_runs.sum()),
             targets_list=", ".join(targets), optimisers_list=", ".join(dict.fromkeys(vs.optimiser)),
             sgd_lr=params["sgd_lr"], adam_lr=params["adam_lr"],
             target_0=targets[0], target_1=targets[1] if len(targets) > 1 else targets[0],
             rho_target_0=float(vs[vs.target == targets[0]].spearman.mean()),
             rho_target_1=float(vs[vs.target == targets[-1]].spearman.mean()),
             log2_ratio_target_0=float(vs[vs.target == targets[0]].log2_ratio.mean()),
             log2_ratio_target_1=float(vs[vs.target == targets[-1]].log2_ratio.mean()),
             verdict_order=v2a.label, verdict_order_reason=v2a.reason,
             verdict_proportion=v2b.label, verdict_proportion_reason=v2b.reason,
             verdict_count=v3.label, verdict_count_reason=v3.reason)
    by_cell = (vs.groupby(["target", "optimiser"], sort=False)
               .agg(spearman=("spearman", "mean"), sgd_share_top10=("sgd_share_top10", "mean"),
                    pb_share_top10=("pb_share_top10", "mean"), acc_sgd=("acc_sgd", "mean"),
                    acc_pb=("acc_pb", "mean"), median_steps=("median_steps", "median"))
               .reset_index())
    return Findings(glue=g, tables={"volume_vs_sgd_by_cell": by_cell})


# ---------------------------------------------------------------------------------------------
# 4. guess-and-check vs SGD
# ---------------------------------------------------------------------------------------------
def draws_per_fit(gc: pd.DataFrame) -> pd.Series:
    """Geometric mean over seeds of draws per accepted network, per training-set size."""
    d = gc.assign(dpf=np.where(gc.accepted > 0, gc.draws / gc.accepted.clip(lower=1), np.nan))
    return d.groupby("k").dpf.apply(lambda v: float(np.exp(np.log(v.dropna()).mean()))
                                    if v.notna().any() else np.nan)


def verdict_gc(gc: pd.DataFrame):
    """Test accuracy of SGD trained to low loss minus guess-and-check, averaged over sizes per
    seed: supports if the interval lies inside ±0.05, contradicts if outside, else mixed."""
    d = gc.dropna(subset=["acc_gc"]).assign(delta=lambda x: x.acc_sgd_low_loss - x.acc_gc)
    est, lo, hi = interval(d.groupby("seed").delta.mean())
    return band_verdict(lo, hi, 0.05, "test-accuracy difference (SGD to low loss minus "
                                      "guess-and-check)"), (est, lo, hi)


def guess_check(tables: dict, params: dict) -> Findings:
    _need(tables, "guess_and_check")
    gc = tables["guess_and_check"]
    v4, (g_est, g_lo, g_hi) = verdict_gc(gc)
    ok = gc.dropna(subset=["acc_gc"])
    ff = interval((ok.acc_sgd_first_fit - ok.acc_gc).groupby(ok.seed).mean())
    growth = draws_per_fit(gc)
    slope = (float(np.polyfit(growth.index.to_numpy(), np.log2(growth.to_numpy()), 1)[0])
             if growth.notna().sum() > 1 else float("nan"))
    g = dict(gc_arch="64→" + "→".join(map(str, params["gc_hidden"])) + "→1",
             gc_accept=params["gc_accept"], gc_sizes_s=", ".join(map(str, params["gc_sizes"])),
             gc_lr=params["gc_lr"], gc_loss_target=params["gc_loss_target"],
             gc_delta=g_est, gc_delta_lo=g_lo, gc_delta_hi=g_hi,
             gc_delta_ff=ff[0], gc_delta_ff_lo=ff[1], gc_delta_ff_hi=ff[2],
             gc_draws_min=float(growth.iloc[0]), gc_draws_max=float(growth.iloc[-1]),
             gc_k_min=int(growth.index[0]), gc_k_max=int(growth.index[-1]),
             gc_doublings_per_point=slope, gc_acc=float(ok.acc_gc.mean()),
             gc_acc_sgd=float(ok.acc_sgd_low_loss.mean()), gc_acc_ff=float(ok.acc_sgd_first_fit.mean()),
             gc_sgd_runs=params["gc_sgd_runs"], gc_unreached=int(gc.acc_gc.isna().sum()),
             verdict_gc=v4.label, verdict_gc_reason=v4.reason)
    return Findings(glue=g)


def overall(tables: dict, params: dict) -> Findings:
    vs = top10_shares(tables["volume_vs_sgd"])
    parts = [verdict_order(vs)[0], verdict_proportion(vs)[0], verdict_count(vs)[0],
             verdict_gc(tables["guess_and_check"])[0]]
    v = Verdict.combine(parts)
    return Findings(glue=dict(verdict=v.label, verdict_reason=v.reason))


def analyse(tables: dict, params: dict) -> Findings:
    """Every glued value and derived table of the chapter."""
    return Findings.merge(prior(tables, params), reach(tables, params),
                          volume_vs_sgd(tables, params), guess_check(tables, params),
                          overall(tables, params))
