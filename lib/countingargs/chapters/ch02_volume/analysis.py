"""Chapter 02 (volume): verdicts, effect sizes and glued numbers, from the saved tables only.

Every verdict rule stated in the notebook's prose is one function here (``verdict_*``); each
returns ``(Verdict, (estimate, low, high), n_undefined)`` where the interval is a Student-t
interval over seeds (:data:`interval`) and ``n_undefined`` counts the cells whose statistic was
undefined (NaN): they are left out of the per-seed means and reported, never filled in.
:func:`analyse` gives every glued value and derived table (``python -m countingargs verify``
calls it on the saved CSVs).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ... import stats
from ...report import SCEPTIC, Findings, ledger_row, ledger_table
from ...stats import CONTRADICTS, MIXED, SUPPORTS, Verdict

#: interval over seeds: ``interval(values) -> (estimate, low, high)``
interval = stats.t_interval
#: test 2a (strong version): the correlation counts as "at the ceiling" within this margin
CEILING_MARGIN = 0.1
#: test 2b: SGD's share of the top-10 volume functions within a factor 2**PROPORTION_MARGIN
PROPORTION_MARGIN = 1.0
#: test 4: test accuracies count as equal within this margin
GC_MARGIN = 0.05
#: test 4: loss bins per cell for the loss-matched comparison (quantiles of guess-and-check's)
GC_LOSS_BINS = 10
#: the prior settings (name -> how the prose describes it)
SETTINGS = {"main": "ReLU, inputs in {0,1}", "second": "tanh with large σ_w, inputs in {0,1}",
            "tanh": "tanh, inputs in {0,1}", "pm1-relu": "ReLU, inputs in {−1,+1}",
            "pm1-tanh": "tanh, inputs in {−1,+1}"}

Result = tuple  # (Verdict, (estimate, low, high), n_undefined)


# The glue keys of the two extra settings of the volume-vs-SGD test, spelled out (not built with
# f-strings) so that each key the prose uses can be found here: trained on to a low loss (many
# steps), and tanh on inputs in {-1, +1}. Each setting glues the same quantities.
LONG_KEYS = ("long_steps", "long_distinct", "long_rho", "long_rho_null", "long_rho_floor",
             "long_ceiling_gap", "long_verdict_order_ceiling", "long_verdict_order_ceiling_reason",
             "long_verdict_order_floor", "long_log2_ratio", "long_verdict_proportion",
             "long_verdict_proportion_reason", "long_acc_sgd", "long_acc_pb", "long_d",
             "long_verdict_count", "long_verdict_count_reason")
PM1_KEYS = ("pm1_steps", "pm1_distinct", "pm1_rho", "pm1_rho_null", "pm1_rho_floor", "pm1_ceiling_gap",
            "pm1_verdict_order_ceiling", "pm1_verdict_order_ceiling_reason", "pm1_verdict_order_floor",
            "pm1_log2_ratio", "pm1_verdict_proportion", "pm1_verdict_proportion_reason", "pm1_acc_sgd",
            "pm1_acc_pb", "pm1_d", "pm1_verdict_count", "pm1_verdict_count_reason")


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


def per_seed_mean(cells: pd.DataFrame, values: pd.Series) -> tuple[pd.Series, int]:
    """Mean of ``values`` (aligned with ``cells``) over the cells of each seed, leaving out the
    undefined ones; returns the per-seed means (seeds with no defined cell are dropped) and the
    number of undefined cells."""
    v = pd.Series(np.asarray(values, float), index=cells.index)
    bad = int((~np.isfinite(v)).sum())
    ok = np.isfinite(v)
    return v[ok].groupby(cells.seed[ok]).mean(), bad


def _interval_verdict(per_seed: pd.Series, n_bad: int, n_cells: int, what: str, *,
                      band: float | None = None, favour: str = "positive") -> Result:
    """A verdict from per-seed values: a band rule (``band``) or a sign rule (``favour``).
    Fewer than two seeds with a defined value give ``mixed`` with the reason."""
    if len(per_seed) < 2:
        return (Verdict(MIXED, f"the {what} is undefined in {n_bad} of {n_cells} cells, leaving "
                               f"{len(per_seed)} seed(s): too few for an interval"),
                (float(per_seed.mean()) if len(per_seed) else float("nan"),) + (float("nan"),) * 2,
                n_bad)
    est, lo, hi = interval(per_seed.to_numpy(float))
    v = (band_verdict(lo, hi, band, what) if band is not None
         else Verdict.from_interval(lo, hi, favour=favour, what=what))
    if n_bad:
        v = Verdict(v.label, f"{v.reason} ({n_bad} of {n_cells} cells undefined, left out)")
    return v, (est, lo, hi), n_bad


def _need(tables: dict, *names: str) -> None:
    missing = [n for n in names if n not in tables]
    if missing:
        raise ValueError(f"chapter 02 analysis needs the tables {missing}; saved: {sorted(tables)}")


def _arch(n_inputs, hidden) -> str:
    return f"{n_inputs}→" + "→".join(map(str, hidden)) + "→1"


# ---------------------------------------------------------------------------------------------
# 1. the prior
# ---------------------------------------------------------------------------------------------
def verdict_prior(seeds: pd.DataFrame) -> Result:
    """Premise, as first stated: per seed of the main setting, mean LZ complexity of a random
    network's function minus that of a uniformly random function; supports if the interval lies
    below 0, contradicts if above, else mixed."""
    main = seeds[seeds.setting == "main"]
    ps, bad = per_seed_mean(main, main.lz_mean_prior - main.lz_mean_uniform)
    return _interval_verdict(ps, bad, len(main), "difference in mean LZ complexity (prior minus "
                             "uniform)", favour="negative")


def verdict_prior_matched(seeds: pd.DataFrame, setting: str = "main") -> Result:
    """Premise without the bias toward few ones: per seed, mean LZ complexity of a random
    network's function minus that of a random function with the same number of ones (its bits
    shuffled); supports if the interval lies below 0, contradicts if above, else mixed."""
    rows = seeds[seeds.setting == setting]
    if rows.empty:
        raise ValueError(f"no prior setting {setting!r}; saved: {sorted(seeds.setting.unique())}")
    ps, bad = per_seed_mean(rows, rows.lz_mean_prior - rows.lz_mean_matched)
    return _interval_verdict(ps, bad, len(rows), f"difference in mean LZ complexity ({setting}: "
                             "prior minus random functions with as many ones)", favour="negative")


def prior_by_setting(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per setting: mean LZ complexity of the networks' functions, of the same functions with
    shuffled bits, of uniformly random functions (main only), the gap to the shuffled ones with
    its interval, the mean imbalance |ones / L - 1/2| and the mass of the two constants."""
    rows = []
    for setting, d in seeds.groupby("setting", sort=False):
        _, (gap, lo, hi), _ = verdict_prior_matched(seeds, setting)
        rows.append(dict(setting=setting, activation=d.activation.iloc[0],
                         encoding=d.encoding.iloc[0], sigma_w=float(d.sigma_w.iloc[0]),
                         lz_network=float(d.lz_mean_prior.mean()),
                         lz_ones_matched=float(d.lz_mean_matched.mean()),
                         lz_uniform=float(d.lz_mean_uniform.mean()) if d.lz_mean_uniform.notna().any()
                         else np.nan,
                         gap_matched=gap, gap_matched_lo=lo, gap_matched_hi=hi,
                         imbalance=float(d.imbalance_mean.mean()),
                         p_constant=float((d.p_const0 + d.p_const1).mean())))
    return pd.DataFrame(rows)


def prior(tables: dict, params: dict) -> Findings:
    _need(tables, "prior_seeds", "prior_pooled", "prior_top", "prior_scatter")
    from scipy import stats as st

    seeds, pooled = tables["prior_seeds"], tables["prior_pooled"].set_index("setting")
    top, scatter = tables["prior_top"], tables["prior_scatter"]
    main = seeds[seeds.setting == "main"]
    v1, (lz_est, lz_lo, lz_hi), _ = verdict_prior(seeds)
    v1m, (m_est, m_lo, m_hi), _ = verdict_prior_matched(seeds, "main")
    v1p, (p_est, p_lo, p_hi), _ = verdict_prior_matched(seeds, "pm1-tanh")
    by = prior_by_setting(seeds).set_index("setting")
    p0, p1 = interval(main.p_const0), interval(main.p_const1)
    top_main = top[top.setting == "main"].drop_duplicates("rank").sort_values("rank")
    lz_u, lz_p, lz_m = (float(main.lz_mean_uniform.mean()), float(main.lz_mean_prior.mean()),
                        float(main.lz_mean_matched.mean()))
    g = dict(arch=_arch(params["n_inputs"], params["hidden"]), n_cube=2 ** params["n_inputs"],
             n_inputs=params["n_inputs"], prior_samples=int(pooled.loc["main", "samples"]),
             prior2_samples=int(pooled.loc["second", "samples"]), sigma_w=params["sigma_w"],
             sigma_b=params["sigma_b"], n_seeds=params["seeds"],
             prior2_desc=f"{by.loc['second', 'activation']}, σ_w = {by.loc['second', 'sigma_w']:g}, "
                         f"σ_b = {params['sigma_b']:g}",
             enc_sigma_w=float(by.loc["pm1-tanh", "sigma_w"]), enc_samples=int(pooled.loc["pm1-tanh", "samples"]),
             distinct_main=int(pooled.loc["main", "distinct"]),
             distinct_second=int(pooled.loc["second", "distinct"]),
             singleton_share=float(pooled.loc["main", "singletons"] / pooled.loc["main", "distinct"]),
             p_const0=p0[0], p_const0_lo=p0[1], p_const0_hi=p0[2],
             p_const1=p1[0], p_const1_lo=p1[1], p_const1_hi=p1[2],
             log2_uniform=-float(2 ** params["n_inputs"]),
             lz_diff=lz_est, lz_diff_lo=lz_lo, lz_diff_hi=lz_hi,
             lz_prior_mean=lz_p, lz_uniform_mean=lz_u, lz_matched_mean=lz_m,
             lz_diff_matched=m_est, lz_diff_matched_lo=m_lo, lz_diff_matched_hi=m_hi,
             lz_gap_ones_share=(lz_u - lz_m) / (lz_u - lz_p),
             lz_second_mean=float(by.loc["second", "lz_network"]),
             lz_second_gap=float(by.loc["second", "gap_matched"]),
             lz_tanh_gap=float(by.loc["tanh", "gap_matched"]),
             lz_pm1_relu_gap=float(by.loc["pm1-relu", "gap_matched"]),
             lz_pm1_tanh_mean=float(by.loc["pm1-tanh", "lz_network"]),
             lz_diff_pm1=p_est, lz_diff_pm1_lo=p_lo, lz_diff_pm1_hi=p_hi,
             imbalance_main=float(by.loc["main", "imbalance"]),
             imbalance_pm1_tanh=float(by.loc["pm1-tanh", "imbalance"]),
             imbalance_pm1_relu=float(by.loc["pm1-relu", "imbalance"]),
             p_constant_pm1_tanh=float(by.loc["pm1-tanh", "p_constant"]),
             p_constant_pm1_relu=float(by.loc["pm1-relu", "p_constant"]),
             lz_sample=params["lz_sample"], lz_top=params["lz_top"],
             top_main_1=top_main.iloc[0].function, top_main_3=top_main.iloc[2].function,
             p_top_main_3=float(top_main.iloc[2].p),
             rho_lz=float(st.spearmanr(scatter.logp, scatter.lz).statistic),
             rho_ones=float(st.spearmanr(scatter.logp, np.abs(scatter.ones - 2 ** params["n_inputs"] / 2)).statistic),
             verdict_prior=v1.label, verdict_prior_reason=v1.reason,
             verdict_prior_matched=v1m.label, verdict_prior_matched_reason=v1m.reason,
             verdict_prior_pm1=v1p.label, verdict_prior_pm1_reason=v1p.reason)
    return Findings(glue=g, tables={"prior_by_setting": prior_by_setting(seeds)})


# ---------------------------------------------------------------------------------------------
# reach of rejection sampling on the big cube
# ---------------------------------------------------------------------------------------------
#: at least this many functions seen twice (mean over targets and training sets) count as
#: "function-by-function estimates possible" at a training-set size
REACH_MIN_SEEN_TWICE = 100


def reach_summary(reach: pd.DataFrame) -> pd.DataFrame:
    """Mean acceptance rate, accepted networks, distinct functions and functions seen twice per
    (target, size)."""
    return (reach.groupby(["target", "k"], sort=False)
            .agg(accept_rate=("accept_rate", "mean"), accepted=("accepted", "mean"),
                 distinct=("distinct", "mean"), seen_twice=("seen_twice", "mean")).reset_index())


def reach(tables: dict, params: dict) -> Findings:
    """The largest training-set size at which the simple targets (those with any accepted
    network at every size) still have :data:`REACH_MIN_SEEN_TWICE` functions seen twice, the
    next size, and the targets out of reach."""
    _need(tables, "reach")
    r = tables["reach"]
    sizes = sorted(r.k.unique())
    k_hi = int(sizes[-1])
    at_hi = r[r.k == k_hi]
    zero = at_hi.groupby("target", sort=False).accepted.max().loc[lambda x: x == 0]
    hardest = at_hi.groupby("target", sort=False).accept_rate.mean().sort_values()
    simple = [t for t, d in r.groupby("target", sort=False) if (d.groupby("k").accepted.max() > 0).all()]
    twice = r[r.target.isin(simple)].groupby("k").seen_twice.mean()
    ok = [k for k in sizes if twice.get(k, 0) >= REACH_MIN_SEEN_TWICE]
    k_ok = int(ok[-1]) if ok else int(sizes[0])
    k_next = int(next((k for k in sizes if k > k_ok), k_ok))
    nxt = r[(r.k == k_next) & r.target.isin(simple)]
    g = dict(reach_k_ok=k_ok, reach_k_next=k_next, reach_min_twice=REACH_MIN_SEEN_TWICE,
             reach_next_seen_twice=float(nxt.seen_twice.mean()),
             reach_next_distinct=float(nxt.distinct.mean()),
             reach_simple_targets=", ".join(simple) if simple else "none",
             reach_kmax=k_hi,
             reach_kmax_zero_targets=", ".join(zero.index) if len(zero) else "none of the targets",
             reach_hardest=", ".join(hardest.index[:2]))
    return Findings(glue=g, tables={"reach_summary": reach_summary(r)})


# ---------------------------------------------------------------------------------------------
# 2-3. volume vs SGD, counting vs volume
# ---------------------------------------------------------------------------------------------
#: the conditions of the small-cube test: (setting, whether the optimiser trains on to low loss)
CONDITIONS = {"first-fit": ("main", False), "long": ("main", True), "pm1": ("pm1-tanh", False)}


def top10_shares(vs: pd.DataFrame) -> pd.DataFrame:
    """SGD's share and the volume share (on the half of the prior sample that did not select
    them) of the ten functions with the most volume; a share of zero counts as half a sample;
    ``log2_ratio`` = log2(SGD share / volume share)."""
    out = vs.copy()
    out["sgd_share_top10"] = np.maximum(out.sgd_top10, 0.5) / out.sgd_n
    out["pb_share_top10"] = np.maximum(out.pb_top10_b, 0.5) / np.maximum(out.pb_n_b, 1)
    out["log2_ratio"] = np.log2(out.sgd_share_top10 / out.pb_share_top10)
    out["d"] = (out.acc_sgd - 0.5).abs() - (out.acc_sgd - out.acc_pb).abs()
    return out


def condition_cells(vs: pd.DataFrame, condition: str) -> pd.DataFrame:
    """The cells of a condition: ``first-fit`` (main setting, optimisers stopped at the first
    fit), ``long`` (main setting, trained on to a low loss), ``pm1`` (tanh on inputs in
    {-1,+1}, stopped at the first fit)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; valid: {list(CONDITIONS)}")
    setting, long = CONDITIONS[condition]
    is_long = vs.optimiser.str.contains("-long")
    return top10_shares(vs[(vs.setting == setting) & (is_long == long)])


def verdict_order_floor(cells: pd.DataFrame) -> Result:
    """2a, weak version (order): SGD's frequencies are related to volume beyond the floor of the
    statistic (its value when SGD's counts are shuffled over the functions). Per seed, the mean
    over cells of Spearman minus floor; supports if the interval lies above 0, contradicts if
    below, else mixed."""
    ps, bad = per_seed_mean(cells, cells.spearman - cells.spearman_floor)
    return _interval_verdict(ps, bad, len(cells), "rank correlation above its floor")


def verdict_order_ceiling(cells: pd.DataFrame) -> Result:
    """2a, strong version (first order, P_SGD = P_B): the rank correlation is as high as it
    would be if SGD sampled exactly from P_B (the parametric null's mean at the same sample
    sizes and selection). Per seed, mean over cells of Spearman minus ceiling; supports if the
    interval lies inside ±:data:`CEILING_MARGIN`, contradicts if entirely outside, else mixed."""
    ps, bad = per_seed_mean(cells, cells.spearman - cells.spearman_null)
    return _interval_verdict(ps, bad, len(cells), "rank correlation minus its ceiling",
                             band=CEILING_MARGIN)


def verdict_lit(cells: pd.DataFrame) -> Result:
    """2a, the literature's statistic: Pearson correlation of log P_SGD and log P_B over the
    functions seen at least k times in both samples, minus its value under exact sampling from
    P_B; the same band rule as :func:`verdict_order_ceiling`. Undefined cells (fewer than three
    such functions) are left out and counted."""
    ps, bad = per_seed_mean(cells, cells.lit - cells.lit_null)
    return _interval_verdict(ps, bad, len(cells), "log-log correlation minus its ceiling",
                             band=CEILING_MARGIN)


def verdict_proportion(cells: pd.DataFrame) -> Result:
    """2b: SGD's share of the ten functions with the most volume equals their volume share.
    Per seed, mean over cells of log2(SGD share / volume share); supports if the interval lies
    inside ±:data:`PROPORTION_MARGIN` (a factor two), contradicts if entirely outside."""
    v = top10_shares(cells)
    ps, bad = per_seed_mean(v, v.log2_ratio)
    return _interval_verdict(ps, bad, len(v), "log2 ratio of SGD's share to the volume share "
                             "on the top-10 volume functions", band=PROPORTION_MARGIN)


def verdict_count(cells: pd.DataFrame) -> Result:
    """3: volume predicts SGD's accuracy off S better than counting does. Per seed, mean over
    cells of d = |a_SGD - 0.5| - |a_SGD - a_B|; supports if the interval lies above 0,
    contradicts if below, else mixed."""
    v = top10_shares(cells)
    ps, bad = per_seed_mean(v, v.d)
    return _interval_verdict(ps, bad, len(v), "advantage of volume over counting as a predictor "
                             "of SGD's off-S accuracy")


VS_RULES = {"order_floor": verdict_order_floor, "order_ceiling": verdict_order_ceiling,
            "lit": verdict_lit, "proportion": verdict_proportion, "count": verdict_count}


def vs_verdicts(vs: pd.DataFrame) -> pd.DataFrame:
    """Every rule of tests 2-3 in every condition: one row each (condition, rule, cells,
    undefined cells, estimate, interval, verdict, reason)."""
    rows = []
    for cond in CONDITIONS:
        cells = condition_cells(vs, cond)
        if cells.empty:
            continue
        for rule, fn in VS_RULES.items():
            v, (est, lo, hi), bad = fn(cells)
            rows.append(dict(condition=cond, rule=rule, cells=len(cells), undefined=bad,
                             estimate=est, low=lo, high=hi, verdict=v.label, reason=v.reason))
    return pd.DataFrame(rows)


def by_cell(vs: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds per (setting, target, optimiser) of the statistics and diagnostics."""
    v = top10_shares(vs)
    cols = ["spearman", "spearman_null", "spearman_floor", "spearman_split", "lit", "lit_null",
            "lit_n", "log2_ratio", "acc_sgd", "acc_pb", "median_steps", "fit_at_init",
            "init_agree", "init_agree_other"]
    return v.groupby(["setting", "target", "optimiser"], sort=False)[cols].mean().reset_index()


def _by_target(cells: pd.DataFrame, col: str, ref: str) -> str:
    parts = [f"{t}: {d[col].mean():.2f} (exact sampling would give {d[ref].mean():.2f})"
             for t, d in cells.groupby("target", sort=False)]
    return "; ".join(parts)


def _rule(verdicts: pd.DataFrame, cond: str, rule: str) -> pd.Series:
    return verdicts[(verdicts.condition == cond) & (verdicts.rule == rule)].iloc[0]


def num(x: float, fmt: str = ".2f") -> str:
    """A number as glued text, or "undefined" for NaN (glue refuses non-finite numbers, and
    a statistic that is undefined must say so rather than show a filled-in value)."""
    return format(float(x), fmt) if np.isfinite(x) else "undefined"


def span(est: float, lo: float, hi: float, fmt: str = ".2f") -> str:
    """``"0.12 (interval 0.05 to 0.20)"``, or with "undefined" where a value is NaN."""
    return f"{num(est, fmt)} (interval {num(lo, fmt)} to {num(hi, fmt)})"


def init_sentence(own: float, other: float) -> str:
    """Whether the runs end near their own initial function on the held-out inputs: the excess
    agreement with the own initial function over another run's, as a share of the most it
    could be (``1 - other``); below one half the steps count as moving the function far."""
    share = (own - other) / (1 - other) if other < 1 else float("nan")
    if not np.isfinite(share):
        return "whether the runs stay near their initial functions is undefined here"
    if share < 0.5:
        return (f"that is {share:.2f} of the most it could be, so a small number of large steps "
                "still moves the function a long way, and the few steps do not by themselves "
                "explain why SGD and Adam agree")
    return (f"that is {share:.2f} of the most it could be, so the runs end close to their initial "
            "functions, which goes some way to explain why SGD and Adam agree")


class _Condition:
    """The verdict rows and cell means of one condition, for literal glue keys."""

    def __init__(self, vs: pd.DataFrame, ver: pd.DataFrame, cond: str):
        self.cells = condition_cells(vs, cond)
        if self.cells.empty:
            raise ValueError(f"the volume_vs_sgd table has no cells of condition {cond!r}")
        self.rows = {rule: _rule(ver, cond, rule) for rule in VS_RULES}

    def span(self, rule, fmt=".2f"):
        r = self.rows[rule]
        return span(r.estimate, r.low, r.high, fmt)

    def verdict(self, rule):
        return str(self.rows[rule].verdict)

    def reason(self, rule):
        return str(self.rows[rule].reason)

    def undefined(self, rule):
        return int(self.rows[rule].undefined)

    def mean(self, col, fmt=".2f"):
        return num(self.cells[col].mean(), fmt)

    def glue(self, *keys: str) -> dict:
        """The condition's glued values under the literal ``keys`` given, in this order: median
        steps, distinct functions, Spearman, its ceiling, its floor, gap to the ceiling, 2a-strong
        verdict and reason, 2a-weak verdict, top-10 log2 ratio, 2b verdict and reason, SGD's and
        volume's accuracy off S, d, verdict 3 and reason."""
        values = (num(self.cells.median_steps.median(), ".0f"), self.mean("sgd_distinct", ".0f"),
                  self.mean("spearman"), self.mean("spearman_null"), self.mean("spearman_floor"),
                  self.span("order_ceiling"), self.verdict("order_ceiling"),
                  self.reason("order_ceiling"), self.verdict("order_floor"),
                  self.span("proportion"), self.verdict("proportion"), self.reason("proportion"),
                  self.mean("acc_sgd", ".3f"), self.mean("acc_pb", ".3f"), self.span("count", ".3f"),
                  self.verdict("count"), self.reason("count"))
        if len(keys) != len(values):
            raise ValueError(f"glue needs {len(values)} keys, got {len(keys)}")
        return dict(zip(keys, values))

    def share_of_ceiling(self):
        rho, null, floor = (self.cells[c].mean() for c in ("spearman", "spearman_null", "spearman_floor"))
        return num((rho - floor) / (null - floor))


def volume_vs_sgd(tables: dict, params: dict) -> Findings:
    """Tests 2 and 3 in every condition (table ``vs_verdicts``), the cell means
    (``volume_vs_sgd_by_cell``) and the glued text; numbers that can be undefined are glued as
    text (:func:`num`, :func:`span`)."""
    _need(tables, "volume_vs_sgd")
    from scipy import stats as st

    vs = tables["volume_vs_sgd"]
    ver = vs_verdicts(vs)
    f, lg, pm = (_Condition(vs, ver, c) for c in CONDITIONS)
    ff = f.cells
    n_test = int(2 ** params["small_inputs"] - params["train_size"])
    sgd, adam = ff[ff.optimiser == "sgd"], ff[ff.optimiser == "adam"]
    g = dict(train_size=params["train_size"], n_test_small=n_test, n5=params["small_inputs"],
             small_samples=int(ff.prior_samples.iloc[0]), sgd_runs=params["sgd_runs"],
             sgd_lr=params["sgd_lr"], adam_lr=params["adam_lr"], long_loss=float(vs.long_loss.iloc[0]),
             k_lit=int(vs.k_lit.iloc[0]), null_reps=params["null_reps"], ceiling_margin=CEILING_MARGIN,
             targets_list=", ".join(dict.fromkeys(ff.target)),
             optimisers_list=", ".join(dict.fromkeys(ff.optimiser)),
             gen_count=float(st.binom.cdf(int(0.1 * n_test), n_test, 0.5)),
             accepted_mean=float(ff.drop_duplicates(["seed", "target"]).accepted.mean()),
             accepted_min=int(vs.accepted.min()), n_compared_mean=float(ff.n_compared.mean()),
             sgd_fit_share=float(vs.sgd_fitted.sum() / vs.sgd_runs.sum()),
             n_vs_cells=len(ff), n_vs_verdicts=len(ver),
             # first fit, main setting: 2a weak / strong / literature, 2b, 3
             rho=f.mean("spearman"), rho_null=f.mean("spearman_null"),
             rho_null_lo=f.mean("spearman_null_lo"), rho_null_hi=f.mean("spearman_null_hi"),
             rho_floor=f.mean("spearman_floor"), rho_split=f.mean("spearman_split"),
             rho_share_of_ceiling=f.share_of_ceiling(),
             rho_by_target=_by_target(ff, "spearman", "spearman_null"),
             floor_gap=f.span("order_floor"), verdict_order_floor=f.verdict("order_floor"),
             verdict_order_floor_reason=f.reason("order_floor"),
             ceiling_gap=f.span("order_ceiling"), verdict_order_ceiling=f.verdict("order_ceiling"),
             verdict_order_ceiling_reason=f.reason("order_ceiling"),
             order_undefined=f.undefined("order_ceiling"),
             lit=f.mean("lit"), lit_null=f.mean("lit_null"), lit_n_mean=f.mean("lit_n", ".1f"),
             lit_gap=f.span("lit"), verdict_lit=f.verdict("lit"), verdict_lit_reason=f.reason("lit"),
             lit_undefined=f.undefined("lit"),
             log2_ratio=f.span("proportion"),
             ratio=num(2 ** f.rows["proportion"].estimate, ".1f"),
             log2_ratio_null=f.mean("log2_ratio_null"),
             log2_ratio_null_lo=f.mean("log2_ratio_null_lo"),
             log2_ratio_null_hi=f.mean("log2_ratio_null_hi"),
             verdict_proportion=f.verdict("proportion"),
             verdict_proportion_reason=f.reason("proportion"),
             sgd_share_top10=f.mean("sgd_share_top10"), pb_share_top10=f.mean("pb_share_top10"),
             d=f.span("count", ".3f"), verdict_count=f.verdict("count"),
             verdict_count_reason=f.reason("count"),
             acc_sgd=f.mean("acc_sgd", ".3f"), acc_pb=f.mean("acc_pb", ".3f"),
             gen_sgd=f.mean("gen_sgd"), gen_pb=f.mean("gen_pb"),
             # how far SGD travels
             steps_sgd=num(sgd.median_steps.median(), ".0f"),
             steps_adam=num(adam.median_steps.median(), ".0f") if len(adam) else "not run",
             fit_at_init=f.mean("fit_at_init", ".3f"), init_agree=f.mean("init_agree"),
             init_agree_other=f.mean("init_agree_other"),
             init_excess=num(ff.init_agree.mean() - ff.init_agree_other.mean()),
             init_sentence=init_sentence(ff.init_agree.mean(), ff.init_agree_other.mean()),
             distinct_first_fit=num(sgd.sgd_distinct.mean(), ".0f"),
             pm1_optimisers=", ".join(dict.fromkeys(pm.cells.optimiser)),
             pm1_samples=int(pm.cells.prior_samples.iloc[0]))
    # trained on to a low loss (many steps); tanh on inputs in {-1, +1}
    g.update(lg.glue(*LONG_KEYS))
    g.update(pm.glue(*PM1_KEYS))
    return Findings(glue=g, tables={"volume_vs_sgd_by_cell": by_cell(vs), "vs_verdicts": ver})


# ---------------------------------------------------------------------------------------------
# 4. guess-and-check vs SGD
# ---------------------------------------------------------------------------------------------
GC_SGD = ("sgd-first-fit", "sgd-low-loss", "sgd-small-lr")


def draws_per_fit(gc: pd.DataFrame) -> pd.Series:
    """Geometric mean over seeds of draws per accepted network, per training-set size."""
    d = gc.assign(dpf=np.where(gc.accepted > 0, gc.draws / gc.accepted.clip(lower=1), np.nan))
    return d.groupby("k").dpf.apply(lambda v: float(np.exp(np.log(v.dropna()).mean()))
                                    if v.notna().any() else np.nan)


def matched_difference(gc_losses: np.ndarray, gc_acc: np.ndarray, losses: np.ndarray,
                       acc: np.ndarray, bins: int = GC_LOSS_BINS, min_per_bin: int = 2,
                       min_matched: int = 5) -> tuple[float, float]:
    """Test-accuracy difference (method minus guess-and-check) at matched training loss, and the
    share of the method's networks whose loss falls in a bin that counts (its coverage).

    Bins are the ``bins`` quantile bins of guess-and-check's losses; a bin counts when both
    sides have at least ``min_per_bin`` networks in it, with weight ``min(n_method, n_gc)``.
    NaN when the counted bins weigh less than ``min_matched`` (the loss ranges do not overlap)."""
    gc_losses, losses = np.asarray(gc_losses, float), np.asarray(losses, float)
    if len(gc_losses) < min_per_bin or len(losses) < min_per_bin:
        return float("nan"), 0.0
    edges = np.unique(np.quantile(gc_losses, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return float("nan"), 0.0
    bg = np.clip(np.searchsorted(edges, gc_losses, side="right") - 1, 0, len(edges) - 2)
    inside = (losses >= edges[0]) & (losses <= edges[-1])
    bm = np.clip(np.searchsorted(edges, losses, side="right") - 1, 0, len(edges) - 2)
    num = den = covered = 0.0
    for b in range(len(edges) - 1):
        ng, nm = int((bg == b).sum()), int(((bm == b) & inside).sum())
        if ng >= min_per_bin and nm >= min_per_bin:
            w = min(ng, nm)
            num += w * (acc[(bm == b) & inside].mean() - gc_acc[bg == b].mean())
            den += w
            covered += nm
    if den < min_matched:
        return float("nan"), covered / len(losses)
    return num / den, covered / len(losses)


def gc_cells(nets: pd.DataFrame) -> pd.DataFrame:
    """One row per (seed, size, SGD method): unmatched and loss-matched test-accuracy
    differences to guess-and-check, the matched share, median training losses and steps."""
    rows = []
    for (s, k), d in nets.groupby(["seed", "k"]):
        g = d[d.method == "guess-and-check"]
        for m in GC_SGD:
            x = d[d.method == m]
            if g.empty or x.empty:
                diff, share = float("nan"), 0.0
            else:
                diff, share = matched_difference(g.train_loss.to_numpy(), g.test_acc.to_numpy(),
                                                 x.train_loss.to_numpy(), x.test_acc.to_numpy())
            rows.append(dict(seed=s, k=k, method=m,
                             raw_diff=float(x.test_acc.mean() - g.test_acc.mean())
                             if len(g) and len(x) else float("nan"),
                             matched_diff=diff, matched_share=share,
                             loss_gc=float(g.train_loss.median()) if len(g) else float("nan"),
                             loss_sgd=float(x.train_loss.median()) if len(x) else float("nan"),
                             steps=float(x.steps.median()) if len(x) else float("nan")))
    return pd.DataFrame(rows)


def verdict_gc(cells: pd.DataFrame, method: str, column: str = "matched_diff") -> Result:
    """4: guess-and-check reaches the test accuracy of SGD (Chiang et al.). Per seed, the mean
    over training-set sizes of the difference (``method`` minus guess-and-check) at matched
    training loss; supports if the interval lies inside ±:data:`GC_MARGIN`, contradicts if it
    lies entirely outside, else mixed. Sizes where the loss ranges do not overlap are left out
    and counted."""
    c = cells[cells.method == method]
    if c.empty:
        raise ValueError(f"no guess-and-check cells for method {method!r}")
    ps, bad = per_seed_mean(c, c[column])
    what = ("test-accuracy difference at matched training loss" if column == "matched_diff"
            else "test-accuracy difference") + f" ({method} minus guess-and-check)"
    return _interval_verdict(ps, bad, len(c), what, band=GC_MARGIN)


class _GCMethod:
    """Verdict, intervals (as text) and medians of one SGD variant against guess-and-check."""

    def __init__(self, cells: pd.DataFrame, nets: pd.DataFrame, method: str):
        self.verdict, est, self.undefined = verdict_gc(cells, method)
        self.matched = span(*est, ".3f")
        self.raw = span(*verdict_gc(cells, method, "raw_diff")[1], ".3f")
        x = nets[nets.method == method]
        self.share = num(cells[cells.method == method].matched_share.mean())
        self.acc, self.loss = num(x.test_acc.mean(), ".3f"), num(x.train_loss.median(), ".3f")
        self.steps = num(x.steps.median(), ".0f")
        self.at_init = num((x.steps == 0).mean())


def guess_check(tables: dict, params: dict) -> Findings:
    _need(tables, "guess_and_check", "gc_networks")
    gc, nets = tables["guess_and_check"], tables["gc_networks"]
    cells = gc_cells(nets)
    growth = draws_per_fit(gc)
    slope = (float(np.polyfit(growth.index.to_numpy(), np.log2(growth.to_numpy()), 1)[0])
             if growth.notna().sum() > 1 else float("nan"))
    g = dict(gc_arch="64→" + "→".join(map(str, params["gc_hidden"])) + "→1",
             gc_accept=params["gc_accept"], gc_sizes_s=", ".join(map(str, params["gc_sizes"])),
             gc_lr=float(gc.lr.iloc[0]), gc_small_lr=float(gc.small_lr.iloc[0]),
             gc_loss_target=float(gc.loss_target.iloc[0]), gc_margin=GC_MARGIN, gc_bins=GC_LOSS_BINS,
             gc_draws_min=float(growth.iloc[0]), gc_draws_max=float(growth.iloc[-1]),
             gc_k_min=int(growth.index[0]), gc_k_max=int(growth.index[-1]),
             gc_doublings_per_point=slope, gc_sgd_runs=params["gc_sgd_runs"],
             gc_unreached=int(gc.acc_gc.isna().sum()),
             gc_acc=float(nets[nets.method == "guess-and-check"].test_acc.mean()),
             gc_loss=float(nets[nets.method == "guess-and-check"].train_loss.median()))
    ff, low, slow = (_GCMethod(cells, nets, m) for m in GC_SGD)
    g.update(gc_ff_matched=ff.matched, gc_ff_raw=ff.raw, gc_ff_share=ff.share,
             gc_ff_undefined=ff.undefined, gc_ff_acc=ff.acc, gc_ff_loss=ff.loss,
             gc_ff_steps=ff.steps, gc_ff_at_init=ff.at_init, verdict_gc_ff=ff.verdict.label,
             verdict_gc_ff_reason=ff.verdict.reason,
             gc_low_matched=low.matched, gc_low_raw=low.raw, gc_low_share=low.share,
             gc_low_undefined=low.undefined, gc_low_acc=low.acc, gc_low_loss=low.loss,
             gc_low_steps=low.steps, verdict_gc_low=low.verdict.label,
             verdict_gc_low_reason=low.verdict.reason,
             gc_slow_matched=slow.matched, gc_slow_raw=slow.raw, gc_slow_share=slow.share,
             gc_slow_undefined=slow.undefined, gc_slow_acc=slow.acc, gc_slow_loss=slow.loss,
             gc_slow_steps=slow.steps, verdict_gc_slow=slow.verdict.label,
             verdict_gc_slow_reason=slow.verdict.reason)
    return Findings(glue=g, tables={"gc_cells": cells})


# ---------------------------------------------------------------------------------------------
# the ledger: one row per verdict, each naming the version of the claim it tests
# ---------------------------------------------------------------------------------------------
CH = "02_volume"
POPE_VOLUME = dict(who="Pope (reposted tweets); measured as in Mingard et al. 2021",
                   quote="compare constraints on parameter configurations",
                   source="discussion file, Pope's reposted tweets (key points)")
POPE_SIMPLE = dict(who="Pope (reposted tweets); measured as in Valle-Pérez et al. 2019",
                   quote="the NN simplicity prior",
                   source="discussion file, Pope's reposted tweets (short-depth paragraph)")
POPE_COUNT = dict(who="Pope (first comment); Belrose and Pope 2024 (parody counting functions)",
                  quote="isn’t the correct way to do counting arguments",
                  source="discussion file, Pope's first comment")
CHIANG = dict(who="Chiang et al. 2023",
              quote="test accuracy comparable to SGD", source="Chiang et al. 2023, abstract")


def _row(id, claim, attribution, version, effect_name, res, units, finding, figure):
    v, (est, lo, hi), _ = res
    return ledger_row(id=id, chapter=CH, claim=claim, version=version, claim_side=SCEPTIC,
                      effect_name=effect_name, effect=est, effect_lo=lo, effect_hi=hi,
                      units=units, verdict=v.label, finding=finding, figure=figure, **attribution)


def _span(res, fmt=".2f"):
    _, (est, lo, hi), bad = res
    extra = f"; {bad} undefined cells left out" if bad else ""
    return f"{est:{fmt}} (95% interval {lo:{fmt}} to {hi:{fmt}}{extra})"


def ledger(tables: dict, params: dict) -> Findings:
    """The chapter's ledger rows (table ``ledger``) and the one-line summary for the book's
    ledger page."""
    seeds, vs = tables["prior_seeds"], tables["volume_vs_sgd"]
    cells = gc_cells(tables["gc_networks"])
    simple = "The function of a randomly initialised network is simpler than a random function."
    follows = "SGD picks the functions that fit the training set according to their parameter volume."
    gc_claim = ("Networks drawn from the prior until they fit the training set generalise as well "
                "as networks trained by SGD from the same prior.")
    r_u, r_m, r_p = (verdict_prior(seeds), verdict_prior_matched(seeds, "main"),
                     verdict_prior_matched(seeds, "pm1-tanh"))
    c = {cond: condition_cells(vs, cond) for cond in CONDITIONS}
    rows = [
        _row("02-prior-simple-uniform", simple, POPE_SIMPLE,
             "against uniformly random functions (ReLU, inputs in {0,1})",
             "mean LZ complexity, network minus uniform", r_u, "LZ complexity",
             f"Random networks' functions are {-r_u[1][0]:.1f} LZ units simpler than uniformly "
             f"random ones: {_span(r_u, '.1f')}.", "volume-prior"),
        _row("02-prior-simple-ones", simple, POPE_SIMPLE,
             "against random functions with the same number of ones (ReLU, inputs in {0,1})",
             "mean LZ complexity, network minus ones-matched", r_m, "LZ complexity",
             f"With the number of ones held fixed the difference is {_span(r_m, '.1f')}.",
             "volume-lz-matched"),
        _row("02-prior-simple-pm1", simple, POPE_SIMPLE,
             "against random functions with the same number of ones (tanh, inputs in {−1,+1})",
             "mean LZ complexity, network minus ones-matched", r_p, "LZ complexity",
             f"With inputs in {{−1,+1}} and tanh the difference is {_span(r_p, '.1f')}.",
             "volume-lz-matched"),
    ]
    spec = [("floor", "order_floor", "weak: SGD's frequencies rise with volume (rank correlation "
             "above its shuffled floor)", "Spearman correlation minus its floor", "correlation"),
            ("ceiling", "order_ceiling", "strong: P_SGD = P_B (rank correlation as high as exact "
             "volume sampling gives)", "Spearman correlation minus its ceiling", "correlation"),
            ("lit", "lit", "strong, the literature's statistic (log-log correlation over functions "
             f"seen at least {vs.k_lit.iloc[0]} times in both samples, against its ceiling)",
             "log-log correlation minus its ceiling", "correlation"),
            ("proportion", "proportion", "strong: SGD's share of the ten highest-volume functions "
             "equals their volume share (within a factor 2)", "log2(SGD share / volume share)",
             "log2 ratio")]
    for key, rule, version, name, units in spec:
        res = VS_RULES[rule](c["first-fit"])
        rows.append(_row(f"02-{key}", follows, POPE_VOLUME, version + "; SGD and Adam stopped at "
                         "the first fit", name, res, units, f"{name}: {_span(res)}.",
                         "volume-sgd-summary"))
    res = verdict_count(c["first-fit"])
    rows.append(_row("02-count-vs-volume", "Parameter volume predicts what SGD finds off the "
                     "training set; counting the functions that fit does not.", POPE_COUNT,
                     "counting functions (the parody's measure) against volume; first fit",
                     "|a_SGD − 0.5| − |a_SGD − a_volume|", res, "accuracy",
                     f"Volume is closer than counting to SGD's off-S accuracy by {_span(res, '.3f')}.",
                     "volume-count-vs-volume"))
    for cond, label in (("long", f"trained on to loss ≤ {vs.long_loss.iloc[0]:g} (many steps)"),
                        ("pm1", "tanh on inputs in {−1,+1}")):
        res = verdict_order_ceiling(c[cond])
        rows.append(_row(f"02-ceiling-{cond}", follows, POPE_VOLUME, f"strong: P_SGD = P_B; {label}",
                         "Spearman correlation minus its ceiling", res, "correlation",
                         f"Rank correlation minus its ceiling, {label}: {_span(res)}.",
                         "volume-sgd-summary"))
        res = verdict_proportion(c[cond]) if cond == "long" else verdict_count(c[cond])
        rows.append(_row(f"02-{'proportion' if cond == 'long' else 'count'}-{cond}",
                         follows if cond == "long" else "Parameter volume predicts what SGD finds "
                         "off the training set; counting the functions that fit does not.",
                         POPE_VOLUME if cond == "long" else POPE_COUNT,
                         ("strong: top-10 share within a factor 2; " if cond == "long"
                          else "counting against volume; ") + label,
                         "log2(SGD share / volume share)" if cond == "long"
                         else "|a_SGD − 0.5| − |a_SGD − a_volume|", res,
                         "log2 ratio" if cond == "long" else "accuracy",
                         f"{label}: {_span(res)}.",
                         "volume-sgd-summary" if cond == "long" else "volume-count-vs-volume"))
    gc = tables["guess_and_check"].iloc[0]
    for m, version in (("sgd-first-fit", f"SGD (learning rate {gc.lr:g}) stopped at the "
                        "first fit, compared at matched training loss"),
                       ("sgd-low-loss", f"SGD trained to loss ≤ {gc.loss_target:g}, "
                        "against guess-and-check networks of the same loss"),
                       ("sgd-small-lr", f"SGD with learning rate {gc.small_lr:g} (many "
                        "steps) stopped at the first fit, at matched training loss")):
        res = verdict_gc(cells, m)
        rows.append(_row(f"02-gc-{m.removeprefix('sgd-')}", gc_claim, CHIANG, version,
                         "test accuracy, SGD minus guess-and-check", res, "accuracy",
                         f"{version}: difference {_span(res, '.3f')}.", "volume-guess-check"))
    table = ledger_table(rows)
    summary = "; ".join(f"{r.id.removeprefix('02-')} {r.verdict}" for r in table.itertuples())
    counts = table.verdict.value_counts()
    return Findings(glue=dict(ledger_rows=len(table),
                              ledger_supports=int(counts.get(SUPPORTS, 0)),
                              ledger_contradicts=int(counts.get(CONTRADICTS, 0)),
                              ledger_mixed=int(counts.get(MIXED, 0)),
                              ledger_summary=summary),
                    tables={"ledger": table})


# ---------------------------------------------------------------------------------------------
# the conclusions, as sentences computed from the verdicts (so the prose follows the numbers)
# ---------------------------------------------------------------------------------------------
def _say(label: str, yes: str, no: str, unclear: str) -> str:
    return {SUPPORTS: yes, CONTRADICTS: no}.get(label, unclear)


def order_sentence(weak: str, strong: str, lit: str, proportion: str) -> str:
    """What tests 2a and 2b say together, from their four verdict labels."""
    first = _say(weak, "SGD's frequencies rise with volume: the rank correlation lies clearly "
                       "above its floor",
                 "SGD's frequencies do not rise with volume: the rank correlation lies below its "
                 "floor", "whether SGD's frequencies rise with volume at all is not settled by "
                          "these seeds")
    names = {"strong": "the rank correlation", "lit": "the literature's log-log correlation"}
    labels = {"strong": strong, "lit": lit}
    at = [names[k] for k, v in labels.items() if v == SUPPORTS]
    off = [names[k] for k, v in labels.items() if v == CONTRADICTS]
    if len(at) == 2:
        second = ("and both correlations reach the level exact volume sampling would give, so "
                  "they cannot tell SGD from a volume sampler")
    elif len(off) == 2:
        second = ("but both correlations miss the level exact volume sampling would give, so SGD "
                  "is not a volume sampler by either measure")
    elif at and off:
        second = (f"while the two correlations disagree: {at[0]} reaches the level exact volume "
                  f"sampling would give and {off[0]} misses it")
    elif off:
        second = (f"but {off[0]} misses the level exact volume sampling would give (the other "
                  "correlation is not settled), so SGD is not a volume sampler by that measure")
    elif at:
        second = (f"and {at[0]} reaches the level exact volume sampling would give, while the "
                  "other correlation is not settled")
    else:
        second = "while whether it follows volume as closely as exact sampling would is not settled"
    third = _say(proportion, "SGD's share of the ten highest-volume functions matches their "
                             "volume share within a factor two",
                 "SGD's share of the ten highest-volume functions differs from their volume "
                 "share by more than a factor two",
                 "whether SGD's share of the ten highest-volume functions matches their volume "
                 "share within a factor two is not settled")
    text = f"{first}, {second}; {third}."
    return text[0].upper() + text[1:]


def gc_sentence(first_fit: str, low: str, slow: str) -> str:
    """What the three guess-and-check comparisons say together."""
    def part(label, who):
        return _say(label, f"{who} generalises like guess-and-check at the same training loss",
                    f"{who} differs from guess-and-check by more than the margin at the same "
                    "training loss", f"{who} is not settled against guess-and-check")
    return (f"{part(first_fit, 'SGD stopped at its first fit')}; "
            f"{part(low, 'SGD trained to a low loss')}; "
            f"{part(slow, 'SGD with a small learning rate')}.")


def prior_sentence(uniform: str, matched: str, pm1: str, ones_share: float) -> str:
    """What tests 1a-1c say together."""
    a = _say(uniform, "Random networks' functions are simpler than uniformly random ones (1a)",
             "Random networks' functions are not simpler than uniformly random ones (1a)",
             "Whether random networks' functions are simpler than uniformly random ones is not "
             "settled (1a)")
    b = (f"a share {ones_share:.2f} of that gap is the bias toward functions with few or many "
         "ones, which depends on the input encoding and the activation")
    c = _say(matched, "the rest survives with the number of ones held fixed (1b)",
             "with the number of ones held fixed they are not simpler (1b)",
             "with the number of ones held fixed the difference is not settled (1b)")
    d = _say(pm1, "and with tanh on inputs in {−1,+1} (1c)",
             "but not with tanh on inputs in {−1,+1} (1c)",
             "and with tanh on inputs in {−1,+1} it is not settled (1c)")
    return f"{a}; {b}; {c}, {d}."


def count_sentence(count: str) -> str:
    """What test 3 says."""
    return _say(count, "Counting the functions that fit, the measure of Belrose and Pope's parody, "
                       "predicts chance accuracy off the training set and misses what SGD does; "
                       "parameter volume comes much closer (3).",
                "Counting the functions that fit predicts SGD's accuracy off the training set "
                "better than parameter volume does (3).",
                "Neither counting functions nor parameter volume is clearly the better predictor "
                "of SGD's accuracy off the training set (3).")


def debate_sentence(count: str, strong: str, lit: str) -> str:
    """The bearing on the debate, from tests 3 and 2a (strong and literature versions)."""
    first = _say(count, "The parody's measure fails where Pope's corrected measure does well, as "
                        "Belrose and Pope argue about counting functions.",
                 "Here the parody's measure does better than Pope's corrected one.",
                 "Between the parody's measure and Pope's, these seeds do not decide.")
    if CONTRADICTS in (strong, lit):
        second = ("Volume is not the whole story, though: by at least one calibrated statistic "
                  "SGD's preferences differ from exact volume sampling, so the strong reading, "
                  "that SGD picks functions in proportion to their volume, does not hold even "
                  "in this tiny system.")
    elif strong == lit == SUPPORTS:
        second = ("Within what these sample sizes can resolve, SGD behaves like a volume sampler.")
    else:
        second = "Whether SGD picks functions in proportion to their volume is not settled here."
    return f"{first} {second}"


def conclusions(tables: dict, params: dict) -> Findings:
    """The summary sentences of the closing section, computed from the verdicts."""
    vs = tables["volume_vs_sgd"]
    labels = {c: {r: fn(condition_cells(vs, c))[0].label for r, fn in VS_RULES.items()}
              for c in CONDITIONS}
    f = labels["first-fit"]
    cells = gc_cells(tables["gc_networks"])
    gl = [verdict_gc(cells, m)[0].label for m in GC_SGD]
    seeds = tables["prior_seeds"]
    main = seeds[seeds.setting == "main"]
    lz_u, lz_p, lz_m = (main[c].mean() for c in ("lz_mean_uniform", "lz_mean_prior", "lz_mean_matched"))
    return Findings(glue=dict(
        prior_sentence=prior_sentence(verdict_prior(seeds)[0].label,
                                      verdict_prior_matched(seeds, "main")[0].label,
                                      verdict_prior_matched(seeds, "pm1-tanh")[0].label,
                                      float((lz_u - lz_m) / (lz_u - lz_p))),
        count_sentence=count_sentence(f["count"]),
        debate_sentence=debate_sentence(f["count"], f["order_ceiling"], f["lit"]),
        order_sentence=order_sentence(f["order_floor"], f["order_ceiling"], f["lit"], f["proportion"]),
        long_order_sentence=order_sentence(*(labels["long"][r] for r in
                                             ("order_floor", "order_ceiling", "lit", "proportion"))),
        pm1_order_sentence=order_sentence(*(labels["pm1"][r] for r in
                                            ("order_floor", "order_ceiling", "lit", "proportion"))),
        gc_sentence=gc_sentence(*gl)))


def analyse(tables: dict, params: dict) -> Findings:
    """Every glued value and derived table of the chapter."""
    return Findings.merge(prior(tables, params), reach(tables, params),
                          volume_vs_sgd(tables, params), guess_check(tables, params),
                          ledger(tables, params), conclusions(tables, params))
