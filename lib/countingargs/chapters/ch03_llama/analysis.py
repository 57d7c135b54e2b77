"""Verdicts and glued numbers of the llama chapter, from the saved tables only.

Every function takes ``(tables, params)`` (the tables as read back from ``results/``, the
resolved parameters) and returns :class:`~countingargs.report.Findings`; :func:`analyse` gives
all of them, which is what ``python -m countingargs verify`` recomputes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...report import Findings
from ...stats import MIXED, Verdict, paired_t_interval, t_interval

#: two-input targets by code (row ``x`` of :func:`countingargs.data.cube.cube` is bit ``x``)
NAMED_TARGETS = {0b1000: "AND", 0b1110: "OR", 0b0110: "XOR", 0b1100: "x1"}


def _need(tables, *names):
    missing = [n for n in names if n not in tables]
    if missing:
        raise KeyError(f"missing table(s) {missing}; have {sorted(tables)}")
    return [tables[n] for n in names]


# ---------------------------------------------------------------------------------------------
# 1. exact counting
def size_table(counting: pd.DataFrame) -> pd.DataFrame:
    """One row per enumerated size ``(n, h)`` (in the order enumerated): parameters,
    configurations, targets and the means over targets of the class shares and log ratios."""
    rows = []
    for (n, h), t in counting.groupby(["n", "h"], sort=False):
        n_params = int(h * (n + 1) + h + 1)
        rows.append({"n": int(n), "h": int(h), "n_params": n_params, "n_configs": 3 ** n_params,
                     "n_targets": len(t), "n_llamas_naive": int(t.n_llamas_naive.iloc[0]),
                     "share_cancelled_mean": t.share_cancelled.mean(),
                     "share_unread_mean": (t.v_unread / t.v_total).mean(),
                     "share_extra_mean": t.share_extra.mean(),
                     "share_cancelled_max": t.share_cancelled.max(),
                     "log10_ratio_cancelled_mean": t.log10_ratio_cancelled.mean(),
                     "log10_ratio_free_mean": t.log10_ratio_free.mean(),
                     "targets_with_cancelled": int((t.v_cancelled > 0).sum())})
    return pd.DataFrame(rows)


def named_table(counting: pd.DataFrame) -> pd.DataFrame:
    """The named two-input targets at every width: volumes per class, the naive llama multiple,
    the cancelled / not-cancelled ratio and the same ratio summed over llamas ``g``."""
    named = counting[(counting.n == 2) & counting.f_code.isin(list(NAMED_TARGETS))].copy()
    named["target"] = named.f_code.map(NAMED_TARGETS)
    named["naive_llama_multiple"] = named.n_llamas_naive
    rest = named.v_straightforward + named.v_unread
    named["corrected_cancelled_over_not"] = named.v_cancelled / rest
    named["summed_over_g_over_not"] = named.sum_g_cancelled / rest
    return named[["h", "target", "v_straightforward", "v_unread", "v_cancelled",
                  "naive_llama_multiple", "corrected_cancelled_over_not",
                  "summed_over_g_over_not"]].sort_values(["target", "h"])


def exact(tables, params) -> Findings:
    """Experiment 1: the verdicts for versions C and F at the largest enumerated size, the trend
    with width, the named targets."""
    (counting,) = _need(tables, "counting")
    sizes = size_table(counting)
    named = named_table(counting)
    big = sizes.sort_values("n_params").iloc[-1]
    nb, hb = int(big.n), int(big.h)
    tb = counting[(counting.n == nb) & (counting.h == hb)]
    rc = tb.log10_ratio_cancelled.dropna()
    rf = tb.log10_ratio_free.dropna()
    est_c, lo_c, hi_c = t_interval(rc)
    est_f, lo_f, hi_f = t_interval(rf)
    v_c = Verdict.from_interval(lo_c, hi_c, favour="negative",
                                what=f"mean log10 ratio cancelled / not cancelled (n={nb}, H={hb})")
    v_f = Verdict.from_interval(lo_f, hi_f, favour="negative",
                                what=f"mean log10 ratio extra / straightforward (n={nb}, H={hb})")
    n_tr = int(sizes.groupby("n").h.nunique().idxmax())
    tr = sizes[sizes.n == n_tr].sort_values("h")
    and_big = named[named.target == "AND"].sort_values("h").iloc[-1]
    g = {"enum_big_n": nb, "enum_big_h": hb, "enum_big_configs": int(big.n_configs),
         "enum_big_targets": int(len(tb)), "enum_big_targets_ratio": int(len(rc)),
         "enum_ratio_c": est_c, "enum_ratio_c_lo": lo_c, "enum_ratio_c_hi": hi_c,
         "enum_ratio_f": est_f, "enum_ratio_f_lo": lo_f, "enum_ratio_f_hi": hi_f,
         "enum_share_c_big": tb.share_cancelled.mean(),
         "enum_share_c_big_max": tb.share_cancelled.max(),
         "enum_share_extra_big": tb.share_extra.mean(),
         "enum_naive_big": int(big.n_llamas_naive), "enum_max_ratio_c_big": rc.max(),
         "verdict_exact": v_c.label, "verdict_exact_reason": v_c.reason,
         "verdict_free": v_f.label, "verdict_free_reason": v_f.reason,
         "trend_n": n_tr, "trend_h_lo": int(tr.h.iloc[0]), "trend_h_hi": int(tr.h.iloc[-1]),
         "trend_share_lo": tr.share_cancelled_mean.iloc[0],
         "trend_share_hi": tr.share_cancelled_mean.iloc[-1],
         "trend_rc_lo": tr.log10_ratio_cancelled_mean.iloc[0],
         "trend_rc_hi": tr.log10_ratio_cancelled_mean.iloc[-1],
         "trend_extra_lo": tr.share_extra_mean.iloc[0],
         "trend_extra_hi": tr.share_extra_mean.iloc[-1],
         "and_h": int(and_big.h), "and_corrected": and_big.corrected_cancelled_over_not,
         "and_summed": and_big.summed_over_g_over_not,
         "say_all_sizes": ("below zero at every size we enumerated"
                           if (sizes.log10_ratio_cancelled_mean < 0).all()
                           else "not below zero at every size we enumerated"),
         "say_trend": ("narrows" if tr.log10_ratio_cancelled_mean.iloc[-1]
                       > tr.log10_ratio_cancelled_mean.iloc[0] else "does not narrow"),
         "say_free": {
             "contradicts": "It does not hold for spare capacity: a unit nobody reads can compute "
                            "anything at no cost, and such networks are a large share of the volume",
             "supports": "At these sizes it holds for spare capacity as well, although unread "
                         "units cost nothing and their share grows with width",
             "mixed": "For spare capacity the counts are undecided: unread units cost nothing, "
                      "and their share grows with width"}[v_f.label]}
    return Findings(glue=g, tables={"counting_sizes": sizes, "counting_named": named})


def exact_verdicts(tables, params) -> tuple[Verdict, Verdict]:
    f = exact(tables, params).glue
    return (Verdict(f["verdict_exact"], f["verdict_exact_reason"]),
            Verdict(f["verdict_free"], f["verdict_free_reason"]))


# ---------------------------------------------------------------------------------------------
# 2. sampling random 7-bit networks
def seed_table(sampled: pd.DataFrame) -> pd.DataFrame:
    """Per sampling stream and output group: networks analysed and the shares of each kind."""
    return (sampled.groupby(["seed", "group"])
            .agg(n_analysed=("any_llama", "size"), any_llama=("any_llama", "mean"),
                 any_fed_llama=("any_fed_llama", "mean"),
                 any_unfed_llama=("any_unfed_llama", "mean"),
                 n_distinct_g=("n_distinct_g", "mean"), n_decodable=("n_decodable", "mean"),
                 any_decodable=("n_decodable", lambda v: (v > 0).mean()))
            .reset_index())


def sampling(tables, params) -> Findings:
    """Experiment 2: share of constant-output networks carrying an exact llama unit."""
    sampled, fcounts = _need(tables, "sampling_networks", "sampling_counts")
    per_seed = seed_table(sampled)
    const = per_seed[per_seed.group == "constant"]
    nonc = per_seed[per_seed.group == "nonconstant"]
    e2, lo2, hi2 = t_interval(const.any_llama)
    v_s = Verdict.from_interval(lo2 - 0.5, hi2 - 0.5, favour="negative",
                                what="share of constant-output networks with an exact llama "
                                     "unit, minus 1/2")
    e_f, lo_f, hi_f = t_interval(const.any_fed_llama)
    e_u, lo_u, hi_u = t_interval(const.any_unfed_llama)
    g = {"samp_nets_total": int(params["sample_nets"] * params["sample_seeds"]),
         "samp_seeds": int(params["sample_seeds"]), "samp_family": _family_size(params),
         "samp_p_const": fcounts.n_constant.sum() / fcounts.n_nets.sum(),
         "samp_analysed_const": int(const.n_analysed.sum()),
         "samp_llama": e2, "samp_llama_lo": lo2, "samp_llama_hi": hi2,
         "samp_fed": e_f, "samp_fed_lo": lo_f, "samp_fed_hi": hi_f,
         "samp_unfed": e_u, "samp_unfed_lo": lo_u, "samp_unfed_hi": hi_u,
         "samp_llama_nonconst": nonc.any_llama.mean(),
         "samp_fed_nonconst": nonc.any_fed_llama.mean(),
         "samp_decodable_const": const.n_decodable.mean(),
         "samp_any_decodable_const": const.any_decodable.mean(),
         "verdict_sampling": v_s.label, "verdict_sampling_reason": v_s.reason}
    return Findings(glue=g, tables={"sampling_seeds": per_seed})


def _family_size(params) -> int:
    from .experiment import feature_family

    return int(len(feature_family(7, n_random=int(params["family_random"]), seed=0)))


# ---------------------------------------------------------------------------------------------
# 3. trained networks
def toys(tables, params) -> Findings:
    """The LLC estimator on toys: relative errors at the reference setting, the shrinkage and
    the order of the toys at the chapter's settings."""
    (tt,) = _need(tables, "llc_toys")
    s = toy_summary(tt)
    ref = s[s.setting.str.startswith("reference") & (s.multiplicity == 1)]
    chs = s[s.setting.str.startswith("chapter")].sort_values("true_lambda")
    m1 = chs[chs.multiplicity == 1]
    nc = s[(s.toy == "normal_crossing") & s.setting.str.startswith("reference")]
    g = {"toy_max_rel_err": ref.rel_error.abs().max(),
         "toy_nc_ref": float(nc.llc_mean.iloc[0]),
         "toy_order_kept": "kept" if np.all(np.diff(m1.llc_mean.values) > 0) else "not kept",
         "toy_ch_shrink": (m1.llc_mean / m1.true_lambda).mean()}
    return Findings(glue=g)


def toy_summary(tt: pd.DataFrame) -> pd.DataFrame:
    """Per setting and toy: true lambda, multiplicity, mean estimate over chains, its standard
    error and the relative error."""
    s = (tt.groupby(["setting", "toy"])
         .agg(true_lambda=("true_lambda", "first"), multiplicity=("multiplicity", "first"),
              llc_mean=("llc", "mean"),
              llc_se=("llc", lambda v: v.std(ddof=1) / np.sqrt(len(v))))
         .reset_index())
    s["rel_error"] = s.llc_mean / s.true_lambda - 1
    return s


def encoding(tables, params) -> Findings:
    """Part 3(c) and the training summary: how often plain networks encode the llama
    specifically (exact Clopper-Pearson interval), probe R^2, losses, norms, steps."""
    from scipy.stats import beta as _beta

    (enc,) = _need(tables, "trained")
    plain = enc[(enc.condition == "plain") & enc.reached]
    llam = enc[(enc.condition == "llama") & enc.reached]
    k, n = int(plain.specific.sum()), int(len(plain))
    e = k / n
    lo = float(_beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    hi = float(_beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    v = Verdict.from_interval(0.25 - hi, 0.25 - lo, favour="positive",
                              what="1/4 minus the share of plain networks encoding the llama "
                                   "specifically")
    g = {"n_train_pairs": int(params["train_seeds"]), "unprompted": e, "unprompted_lo": lo,
         "unprompted_hi": hi, "unprompted_chance": 0.05,
         "specific_llama_nets": llam.specific.mean(), "r2_plain": plain.r2_llama.mean(),
         "r2_plain_controls": plain.r2_controls.mean(), "r2_llama_nets": llam.r2_llama.mean(),
         "r2_input": float(enc.r2_input_llama.mean()), "rank_plain": plain.llama_rank.mean(),
         "train_ce_plain": plain.train_ce.mean(), "train_ce_llama": llam.train_ce.mean(),
         "acc_plain": plain.test_acc.mean(), "acc_llama": llam.test_acc.mean(),
         "norm_plain": plain.weight_norm.mean(), "norm_llama": llam.weight_norm.mean(),
         "steps_plain": plain.steps.mean(), "steps_llama": llam.steps.mean(),
         "verdict_unprompted": v.label, "verdict_unprompted_reason": v.reason}
    return Findings(glue=g)


def trained(tables, params) -> Findings:
    """Parts 3(a) LLC and 3(b) local volume, and the combined verdict of experiment 3."""
    llcs, vols = _need(tables, "llc", "local_volume")
    good = llcs[llcs.reached & ~llcs.diverged]
    wide = good.pivot_table(index=["setting", "seed"], columns="condition", values="llc").dropna()
    diff_main = (wide.loc[0].llama - wide.loc[0].plain).values
    e_l, lo_l, hi_l = paired_t_interval(wide.loc[0].llama, wide.loc[0].plain)
    cond_means = good.groupby(["setting", "condition"]).llc.mean().unstack()
    setting_range = float((cond_means.max() - cond_means.min()).max())
    diff_by_setting = (wide.llama - wide.plain).groupby(level=0).mean()
    v_llc = Verdict.from_interval(lo_l, hi_l, favour="positive",
                                  what="paired LLC difference llama - plain")
    inconclusive = setting_range > abs(e_l)
    if inconclusive:
        v_llc = Verdict(MIXED, "inconclusive: the mean LLC moves by up to "
                        f"{setting_range:.3g} across estimator settings, more than the mean "
                        f"difference {e_l:.3g} between conditions ({v_llc.reason})")
    vw = vols[vols.reached].groupby(["seed", "condition"]).fraction.mean().unstack().dropna()
    e_v, lo_v, hi_v = paired_t_interval(vw.plain, vw.llama)
    v_vol = Verdict.from_interval(lo_v, hi_v, favour="positive",
                                  what="paired difference plain - llama of the surviving fraction")
    enc = encoding(tables, params).glue
    v_unp = Verdict(enc["verdict_unprompted"], enc["verdict_unprompted_reason"])
    v_tr = Verdict.combine([v_llc, v_vol, v_unp])
    stable = (np.sign(diff_by_setting) == np.sign(diff_by_setting.iloc[0])).all()
    g = {"llc_pairs": int(len(diff_main)), "llc_plain": float(cond_means.loc[0, "plain"]),
         "llc_llama": float(cond_means.loc[0, "llama"]), "llc_diff": e_l, "llc_diff_lo": lo_l,
         "llc_diff_hi": hi_l, "llc_setting_range": setting_range,
         "llc_n_settings": int(llcs.setting.nunique()),
         "llc_sign_stable": "the same" if stable else "not the same",
         "llc_diff_min": float(diff_by_setting.min()), "llc_diff_max": float(diff_by_setting.max()),
         "llc_drift": float(good[good.main].drift.mean()),
         "llc_chain_std": float(good[good.main].llc_chain_std.mean()),
         "vol_plain": float(vw.plain.mean()), "vol_llama": float(vw.llama.mean()),
         "vol_diff": e_v, "vol_diff_lo": lo_v, "vol_diff_hi": hi_v,
         "verdict_llc": v_llc.label, "verdict_llc_reason": v_llc.reason,
         "verdict_volume": v_vol.label, "verdict_volume_reason": v_vol.reason,
         "verdict_trained": v_tr.label,
         "say_llc": ("so by our rule that part is inconclusive" if inconclusive
                     else f"and that part {v_llc.label} the claim" if v_llc.label != "mixed"
                     else "and that part is mixed")}
    return Findings(glue=g)


# ---------------------------------------------------------------------------------------------
def summary(tables, params) -> Findings:
    """The chapter verdict (version C of experiments 1-3 combined) and the settings as text."""
    v_c, _ = exact_verdicts(tables, params)
    s = sampling(tables, params).glue
    t = trained(tables, params).glue
    v = Verdict.combine([v_c, Verdict(s["verdict_sampling"], s["verdict_sampling_reason"]),
                         Verdict(t["verdict_trained"], "")])
    reasons = "; ".join(r for r in (v_c.reason, s["verdict_sampling_reason"],
                                    t["verdict_llc_reason"], t["verdict_volume_reason"],
                                    encoding(tables, params).glue["verdict_unprompted_reason"]))
    p = params
    g = {"verdict": v.label, "verdict_reason": reasons,
         "sample_nets_txt": f"{p['sample_nets']:,}", "toy_chains_txt": str(p["toy_chains"]),
         "hidden_txt": f"{p['hidden']}→{p['hidden']}", "llama_k_txt": str(p["llama_k"]),
         "n_controls_txt": str(p["n_controls"]), "llc_seeds_txt": str(p["llc_seeds"]),
         "vol_samples_txt": str(p["vol_samples"]), "vol_tol_txt": f"{p['vol_tol']:g} nats",
         "llc_chains_txt": str(p["llc_chains"]), "llc_draws_txt": str(p["llc_draws"]),
         "llc_burnin_txt": str(p["llc_burnin"]), "sigma_w_txt": f"{p['sigma_w']:g}",
         "sigma_b_txt": f"{p['sigma_b']:g}"}
    return Findings(glue=g)


def analyse(tables, params) -> Findings:
    """Everything the chapter glues and derives, from the saved tables."""
    return Findings.merge(exact(tables, params), sampling(tables, params), toys(tables, params),
                          encoding(tables, params), trained(tables, params),
                          summary(tables, params))
