"""Verdicts and glued numbers of the llama chapter, from the saved tables only.

Every public function takes ``(tables, params)`` (the tables as read back from ``results/``,
the resolved parameters) and returns :class:`~countingargs.report.Findings`; :func:`analyse`
gives all of them, which is what ``python -m countingargs verify`` recomputes. The rules are
the ones stated in the notebook before any result:

- **Versions C and F against width** (:func:`width`): for each input size ``n``, the statistic
  at the widest ``H`` measured (by sampling beyond exhaustive enumeration), with its sampling
  interval: below 0 supports, above 0 contradicts, otherwise mixed. The statistic is the mean
  over targets of ``R = log10(volume ratio)`` where every target is sampled often (``n <= 2``:
  14 targets), and the volume-weighted (pooled) ratio over targets otherwise (``n = 3``: 254
  targets, many drawn only a few dozen times).
- **Random 7-bit networks** (:func:`sampling`): among constant-output networks, the share with
  some hidden unit that feeds the output (version C) and with some non-constant hidden unit
  (version F), every ``g`` counted; below 1/2 supports, above contradicts.
- **LLC** (:func:`llc_rule`): the paired difference llama - plain must keep its sign (interval
  on one side of 0) and its size (largest / smallest mean within :data:`SIZE_FACTOR`) at every
  estimator setting, each setting validated on the toys and stationary (systematic drift below
  :data:`DRIFT_SHARE` of the effect).
- **Local volume** (:func:`volume`): the paired difference plain - llama of the surviving
  fraction at radii relative to each network's (balanced) norm; above 0 supports, below
  contradicts.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ...report import SCEPTIC, Findings, ledger_row, ledger_table
from ...stats import CONTRADICTS, MIXED, SUPPORTS, Verdict, paired_t_interval, proportion_interval

CHAPTER = "03_llama"
#: two-input targets by code (row ``x`` of :func:`countingargs.data.cube.cube` is bit ``x``)
NAMED_TARGETS = {0b1000: "AND", 0b1110: "OR", 0b0110: "XOR", 0b1100: "x1"}
CLASS_COLS = ("straightforward", "unread", "cancelled")
#: toys: relative tolerance of the estimate against lambda (m = 1) and against the exact
#: finite-n estimand (every toy)
TOY_TOL = 0.15
#: resamples of the sampled configurations behind each interval of the width table
SIZE_BOOT = 1000
#: LLC: the per-setting mean differences may differ by at most this factor
SIZE_FACTOR = 2.0
#: LLC: a setting is stationary when |mean drift| <= DRIFT_SHARE x |mean paired difference|
DRIFT_SHARE = 0.5
#: probe R^2 below this is drawn at the floor of the encoding figure (and counted)
R2_FLOOR = -1.0
#: the localisation of the chapter's first version
OLD_LOCALIZATION = 100.0
POPE_QUOTE = "more rare in NN configuration space"
POPE_SOURCE = "Pope, opening comment (reposted tweet), paragraph beginning 'The issue is that'"
POPE_QUOTE_F = "an additional constraint on the possible parameters"
POPE_SOURCE_F = "Pope, opening comment (reposted tweet), paragraph beginning 'The key issue'"


def _need(tables, *names):
    missing = [n for n in names if n not in tables]
    if missing:
        raise KeyError(f"missing table(s) {missing}; have {sorted(tables)}")
    return [tables[n] for n in names]


def _non_constant(codes, n) -> np.ndarray:
    codes = np.asarray(codes)
    return (codes != 0) & (codes != 2 ** (2 ** n) - 1)


# =============================================================================================
# 1. threshold networks: exact and sampled volumes
def ratio_stats(k: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of class volumes or counts ``k (..., F, 3)`` over ``F`` non-constant targets
    (columns straightforward, unread, cancelled):

    ``mean_rc`` / ``mean_rf``: mean over targets of ``R_C = log10(cancelled / not cancelled)``
    and ``R_F = log10((unread + cancelled) / straightforward)`` (nan when some target has an
    empty class); ``pooled_rc`` / ``pooled_rf``: the same ratios of the volumes summed over
    targets; ``n_below`` / ``n_above``: targets with ``R_C`` below / above 0; ``share_cancelled``:
    the pooled share of cancelled configurations."""
    k = np.asarray(k, dtype=float)
    s, u, c = k[..., 0], k[..., 1], k[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = np.log10(c / (s + u))
        rf = np.log10((u + c) / s)
        ok_c = np.isfinite(rc).all(-1)
        ok_f = np.isfinite(rf).all(-1)
        tot = k.sum((-1, -2))
        return {"mean_rc": np.where(ok_c, np.where(ok_c[..., None], rc, 0).mean(-1), np.nan),
                "mean_rf": np.where(ok_f, np.where(ok_f[..., None], rf, 0).mean(-1), np.nan),
                "pooled_rc": np.log10(c.sum(-1) / (s + u).sum(-1)),
                "pooled_rf": np.log10((u + c).sum(-1) / s.sum(-1)),
                "n_below": (c < s + u).sum(-1), "n_above": (c > s + u).sum(-1),
                "share_cancelled": c.sum(-1) / tot}


STATS = ("mean_rc", "pooled_rc", "mean_rf", "pooled_rf")


def _exact_rows(counting: pd.DataFrame) -> list[dict]:
    rows = []
    for (n, h), t in counting.groupby(["n", "h"], sort=True):
        t = t[_non_constant(t.f_code, n)]
        st = ratio_stats(t[["v_straightforward", "v_unread", "v_cancelled"]].to_numpy())
        row = {"n": int(n), "h": int(h), "source": "exact", "n_samples": np.nan,
               "n_targets": len(t)}
        for key in STATS:
            row[key] = row[key + "_lo"] = row[key + "_hi"] = float(st[key])
        row.update(n_below=int(st["n_below"]), n_above=int(st["n_above"]),
                   share_cancelled=float(st["share_cancelled"]))
        rows.append(row)
    return rows


def _sampled_rows(sampled: pd.DataFrame, n_boot: int) -> list[dict]:
    """Sampled sizes: point estimates and percentile intervals from resampling the i.i.d.
    configurations (a multinomial draw of the whole count table, ``n_boot`` times)."""
    from ...nets.seeding import rng

    rows = []
    for (n, h), t in sampled.groupby(["n", "h"], sort=True):
        n_samples = int(t.n_samples.iloc[0])
        k_all = t[["k_straightforward", "k_unread", "k_cancelled"]].to_numpy().astype(np.int64)
        if k_all.sum() != n_samples:
            raise ValueError(f"sampled counts at n={n}, H={h} add up to {k_all.sum()}, "
                             f"not n_samples = {n_samples}")
        keep = _non_constant(t.f_code, n)
        st = ratio_stats(k_all[keep])
        boot = rng("size-boot", int(n), int(h)).multinomial(
            n_samples, k_all.ravel() / n_samples, size=n_boot).reshape(n_boot, *k_all.shape)
        bst = ratio_stats(boot[:, keep])
        row = {"n": int(n), "h": int(h), "source": "sampled", "n_samples": n_samples,
               "n_targets": int(keep.sum())}
        for key in STATS:
            lo, hi = np.quantile(bst[key], [0.025, 0.975], method="inverted_cdf")
            row[key], row[key + "_lo"], row[key + "_hi"] = float(st[key]), float(lo), float(hi)
        row.update(n_below=int(st["n_below"]), n_above=int(st["n_above"]),
                   share_cancelled=float(st["share_cancelled"]))
        rows.append(row)
    return rows


def width_table(counting: pd.DataFrame, sampled: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """One row per size and source (``exact`` enumeration, ``sampled`` configurations):
    ``n, h, source, n_samples, n_targets``, each statistic of :func:`ratio_stats` with
    ``_lo`` / ``_hi`` (sampling interval; equal to the value for exact rows), ``n_below``,
    ``n_above`` (targets with R_C below / above 0), ``share_cancelled``."""
    if n_boot < 100:
        raise ValueError(f"size_boot must be at least 100 for a 95% interval, got {n_boot}")
    rows = _exact_rows(counting) + _sampled_rows(sampled, n_boot)
    return pd.DataFrame(rows).sort_values(["n", "h", "source"]).reset_index(drop=True)


def trend_statistic(n: int) -> str:
    """The summary of R at input size ``n``: the mean over targets for ``n <= 2``, the pooled
    ratio beyond (where many targets are drawn too rarely for a per-target ratio)."""
    return "mean" if n <= 2 else "pooled"


def sampler_check(wt: pd.DataFrame) -> pd.DataFrame:
    """Where a size is both enumerated and sampled: for each statistic, the exact value, the
    sampled estimate with its interval and whether the interval covers the exact value."""
    rows = []
    for (n, h), t in wt.groupby(["n", "h"]):
        if set(t.source) != {"exact", "sampled"}:
            continue
        e, s = t[t.source == "exact"].iloc[0], t[t.source == "sampled"].iloc[0]
        for key in STATS:
            if not all(np.isfinite(x) for x in (e[key], s[key], s[key + "_lo"], s[key + "_hi"])):
                continue  # undefined where a class is empty: nothing to check
            rows.append({"n": int(n), "h": int(h), "statistic": key, "exact": e[key],
                         "estimate": s[key], "lo": s[key + "_lo"], "hi": s[key + "_hi"],
                         "covered": bool(s[key + "_lo"] <= e[key] <= s[key + "_hi"])})
    return pd.DataFrame(rows, columns=["n", "h", "statistic", "exact", "estimate", "lo", "hi",
                                       "covered"])


def _series(wt: pd.DataFrame, n: int, key: str) -> pd.DataFrame:
    """The statistic against width at input size ``n``: exact where enumerated, sampled beyond."""
    t = wt[wt.n == n]
    exact_h = set(t[t.source == "exact"].h)
    t = t[(t.source == "exact") | ~t.h.isin(exact_h)].sort_values("h")
    return t[["h", "source", key, key + "_lo", key + "_hi"]].rename(
        columns={key: "value", key + "_lo": "lo", key + "_hi": "hi"})


def width_verdict(wt: pd.DataFrame, n: int, version: str) -> tuple[Verdict, dict]:
    """The rule for version ``"C"`` (R_C) or ``"F"`` (R_F) at input size ``n``: the statistic at
    the widest H measured, below 0 supports, above 0 contradicts, otherwise (or undefined)
    mixed. Also returns the numbers the prose and the ledger need."""
    if version not in ("C", "F"):
        raise ValueError(f"version must be 'C' or 'F', got {version!r}")
    key = f"{trend_statistic(n)}_r{version.lower()}"
    ser = _series(wt, n, key)
    if ser.empty:
        raise ValueError(f"no sizes with n = {n}")
    last = ser.iloc[-1]
    what = (f"{'mean over targets' if trend_statistic(n) == 'mean' else 'pooled'} R_{version} "
            f"at n={n}, H={int(last.h)} ({last.source})")
    if not (np.isfinite(last.lo) and np.isfinite(last.hi)):
        v = Verdict(MIXED, f"the {what} is not defined (a class is empty in the sample)")
    else:
        v = Verdict.from_interval(last.lo, last.hi, favour="negative", what=what)
    finite = ser[np.isfinite(ser.value)]
    above = finite[finite.value > 0]
    if finite.empty:
        change = "is never defined"
    elif above.empty:
        change = f"stays below zero up to H = {int(finite.h.iloc[-1])}"
    elif above.h.iloc[0] == finite.h.iloc[0]:
        change = f"is above zero from the smallest width measured, H = {int(finite.h.iloc[0])}"
    else:
        below = finite[finite.h < above.h.iloc[0]]
        change = (f"changes sign between H = {int(below.h.iloc[-1])} and "
                  f"H = {int(above.h.iloc[0])}")
    tail = finite.tail(3)
    slope = float(np.polyfit(tail.h, tail.value, 1)[0]) if len(tail) >= 2 else float("nan")
    return v, {"value": float(last.value), "lo": float(last.lo), "hi": float(last.hi),
               "h": int(last.h), "source": last.source, "change": change, "slope": slope,
               "statistic": trend_statistic(n)}


def size_table(counting: pd.DataFrame) -> pd.DataFrame:
    """One row per enumerated size ``(n, h)``: parameters, configurations, targets, the means
    over targets of the class shares and log ratios (over the targets where defined), and
    the exact counts: targets with R_C below zero and the volume-weighted ratio."""
    rows = []
    for (n, h), t in counting.groupby(["n", "h"], sort=False):
        n_params = int(h * (n + 1) + h + 1)
        st = ratio_stats(t[["v_straightforward", "v_unread", "v_cancelled"]].to_numpy())
        rows.append({"n": int(n), "h": int(h), "n_params": n_params, "n_configs": 3 ** n_params,
                     "n_targets": len(t), "n_llamas_naive": int(t.n_llamas_naive.iloc[0]),
                     "share_cancelled_mean": t.share_cancelled.mean(),
                     "share_unread_mean": (t.v_unread / t.v_total).mean(),
                     "share_extra_mean": t.share_extra.mean(),
                     "share_cancelled_max": t.share_cancelled.max(),
                     "log10_ratio_cancelled_mean": t.log10_ratio_cancelled.mean(),
                     "log10_ratio_free_mean": t.log10_ratio_free.mean(),
                     "targets_with_cancelled": int((t.v_cancelled > 0).sum()),
                     "targets_below_zero": int(st["n_below"]),
                     "pooled_rc": float(st["pooled_rc"]), "pooled_rf": float(st["pooled_rf"])})
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
    """Experiment 1, the enumerated sizes: exact counts at the largest two-input size (targets
    below zero, the volume-weighted ratio, the spread over targets) and the named targets."""
    (counting,) = _need(tables, "counting")
    sizes = size_table(counting)
    named = named_table(counting)
    two = sizes[sizes.n == 2]
    if two.empty:
        raise ValueError("the enumeration needs at least one size with n = 2")
    big = two.sort_values("h").iloc[-1]
    hb = int(big.h)
    tb = counting[(counting.n == 2) & (counting.h == hb)]
    rc = tb.log10_ratio_cancelled
    first = two.sort_values("h").iloc[0]
    and_big = named[named.target == "AND"].sort_values("h").iloc[-1]
    g = {"enum_big_h": hb, "enum_big_configs": int(big.n_configs),
         "enum_big_targets": int(len(tb)), "enum_big_below": int(big.targets_below_zero),
         "enum_ratio_c": float(rc.mean()), "enum_ratio_c_min": float(rc.min()),
         "enum_ratio_c_max": float(rc.max()), "enum_pooled_c": float(big.pooled_rc),
         "enum_ratio_f": float(tb.log10_ratio_free.mean()), "enum_pooled_f": float(big.pooled_rf),
         "enum_share_c_big": float(tb.share_cancelled.mean()),
         "enum_share_c_big_max": float(tb.share_cancelled.max()),
         "enum_share_extra_big": float(tb.share_extra.mean()),
         "enum_naive_big": int(big.n_llamas_naive),
         "trend_h_lo": int(first.h), "trend_share_lo": float(first.share_cancelled_mean),
         "say_share_trend": ("grown" if big.share_cancelled_mean > first.share_cancelled_mean
                             else "not grown"),
         "trend_extra_lo": float(first.share_extra_mean),
         "and_h": int(and_big.h), "and_corrected": float(and_big.corrected_cancelled_over_not),
         "and_summed": float(and_big.summed_over_g_over_not)}
    return Findings(glue=g, tables={"counting_sizes": sizes, "counting_named": named})


def width(tables, params) -> Findings:
    """Versions C and F against width: sampled sizes beyond enumeration, validated against the
    exact counts where both exist; one verdict per version and input size."""
    counting, sampled = _need(tables, "counting", "sampled_counts")
    wt = width_table(counting, sampled, SIZE_BOOT)
    chk = sampler_check(wt)
    if chk.empty:
        raise ValueError("no size is both enumerated and sampled: the sampler is not validated")
    g = {"check_sizes": int(chk[["n", "h"]].drop_duplicates().shape[0]),
         "check_covered": int(chk.covered.sum()), "check_total": int(len(chk)),
         "check_max_err": float((chk.estimate - chk.exact).abs().max()),
         "sampled_configs": int(sampled.n_samples.max())}
    for n in (2, 3):
        if (wt.n == n).sum() == 0:
            raise ValueError(f"width needs sizes with n = {n}")
        for version in ("C", "F"):
            v, d = width_verdict(wt, n, version)
            g.update(_width_glue(n, version, v, d))
    # the n = 2 series as exact counts per width (targets below zero out of 14)
    s2 = wt[(wt.n == 2)].sort_values(["h", "source"]).drop_duplicates("h", keep="first")
    widest = s2.iloc[-1]
    g.update({"w2_h_max": int(widest.h), "w2_below_widest": int(widest.n_below),
              "w2_targets": int(widest.n_targets),
              "w2_pooled_widest": float(widest.pooled_rc),
              "w2_pooled_widest_lo": float(widest.pooled_rc_lo),
              "w2_pooled_widest_hi": float(widest.pooled_rc_hi),
              "w3_h_max": int(wt[wt.n == 3].h.max())})
    return Findings(glue=g, tables={"width": wt, "sampler_check": chk})


def _width_glue(n: int, version: str, v: Verdict, d: dict) -> dict:
    """Glue of one width verdict under literal keys (searchable from the prose)."""
    keys = {(2, "C"): ("verdict_width_c2", "wc2"), (3, "C"): ("verdict_width_c3", "wc3"),
            (2, "F"): ("verdict_width_f2", "wf2"), (3, "F"): ("verdict_width_f3", "wf3")}
    vk, p = keys[(n, version)]
    bad = [k for k in ("value", "lo", "hi", "slope") if not np.isfinite(d[k])]
    if bad:
        raise ValueError(f"version {version}, n = {n}: {', '.join(bad)} undefined at the widest "
                         f"size (a class is empty, or fewer than two widths have a value): "
                         "sample more configurations or more sizes")
    return {vk: v.label, vk + "_reason": v.reason, p + "_value": d["value"], p + "_lo": d["lo"],
            p + "_hi": d["hi"], p + "_h": d["h"], p + "_change": d["change"],
            p + "_slope": d["slope"]}


# =============================================================================================
# 2. random 7-bit networks
def seed_table(sampled: pd.DataFrame) -> pd.DataFrame:
    """Per sampling stream and output group: networks analysed and the shares of each kind."""
    return (sampled.groupby(["seed", "group"])
            .agg(n_analysed=("any_llama", "size"), any_nonconst=("any_nonconst", "mean"),
                 any_fed=("any_fed", "mean"), any_llama=("any_llama", "mean"),
                 any_fed_llama=("any_fed_llama", "mean"),
                 any_unfed_llama=("any_unfed_llama", "mean"),
                 n_units_fed=("n_units_fed", "mean"), n_distinct_g=("n_distinct_g", "mean"),
                 n_decodable=("n_decodable", "mean"),
                 any_decodable=("n_decodable", lambda v: (v > 0).mean()))
            .reset_index())


def share_verdict(k: int, n: int, what: str) -> tuple[Verdict, tuple[float, float, float]]:
    """A share of i.i.d. networks (Wilson interval) against 1/2: below supports ("the llama
    class is the minority"), above contradicts, otherwise mixed."""
    e, lo, hi = proportion_interval(int(k), int(n))
    return Verdict.from_interval(lo - 0.5, hi - 0.5, favour="negative",
                                 what=f"{what}, minus 1/2"), (e, lo, hi)


def sampling(tables, params) -> Findings:
    """Experiment 2: among constant-output networks, every ``g``: the share with a non-constant
    hidden unit (version F) and with a unit that feeds the output (version C); the feature
    family as a labelled special case; the loose test (linear decodability) for contrast."""
    sampled, fcounts = _need(tables, "sampling_networks", "sampling_counts")
    per_seed = seed_table(sampled)
    const = sampled[sampled.group == "constant"]
    nonc = sampled[sampled.group == "nonconstant"]
    n = len(const)
    if n == 0:
        raise ValueError("no constant-output network was analysed")
    v_c, (e_c, lo_c, hi_c) = share_verdict(const.any_fed.sum(), n, "share of constant-output "
                                           "networks with a hidden unit that feeds the output")
    v_f, (e_f, lo_f, hi_f) = share_verdict(const.any_nonconst.sum(), n, "share of constant-"
                                           "output networks with a non-constant hidden unit")
    fam = {}
    for key, col in (("samp_llama", "any_llama"), ("samp_fed", "any_fed_llama"),
                     ("samp_unfed", "any_unfed_llama")):
        e, lo, hi = proportion_interval(int(const[col].sum()), n)
        fam.update({key: e, key + "_lo": lo, key + "_hi": hi})
    g = {"samp_nets_total": int(fcounts.n_nets.sum()), "samp_seeds": int(len(fcounts)),
         "samp_p_const": float(fcounts.n_constant.sum() / fcounts.n_nets.sum()),
         "samp_analysed_const": int(n), "samp_k_nonconst": int(const.any_nonconst.sum()),
         "samp_k_fed": int(const.any_fed.sum()),
         "samp_nonconst": e_f, "samp_nonconst_lo": lo_f, "samp_nonconst_hi": hi_f,
         "samp_anyfed": e_c, "samp_anyfed_lo": lo_c, "samp_anyfed_hi": hi_c,
         "samp_units_fed": float(const.n_units_fed.mean()),
         "samp_units_nonconst": float(const.n_units_nonconst.mean()),
         "samp_llama_nonconst": float(nonc.any_llama.mean()) if len(nonc) else float("nan"),
         "samp_decodable_const": float(const.n_decodable.mean()),
         "samp_any_decodable_const": float((const.n_decodable > 0).mean()),
         "samp_family": int(fcounts.family_size.iloc[0]),
         "verdict_random_c": v_c.label, "verdict_random_c_reason": v_c.reason,
         "verdict_random_f": v_f.label, "verdict_random_f_reason": v_f.reason, **fam}
    return Findings(glue=g, tables={"sampling_seeds": per_seed})


# =============================================================================================
# 3. trained networks
def toy_summary(tt: pd.DataFrame) -> pd.DataFrame:
    """Per setting and toy: lambda, multiplicity, the exact estimand at the settings, the mean
    estimate over chains with its standard error, the relative errors against lambda and
    against the estimand, and whether the toy passes (:data:`TOY_TOL` against lambda for
    m = 1, against the estimand for every toy)."""
    s = (tt.groupby(["setting", "toy"])
         .agg(step_size=("step_size", "first"), localization=("localization", "first"),
              n_burnin=("n_burnin", "first"), true_lambda=("true_lambda", "first"),
              multiplicity=("multiplicity", "first"), expected=("expected", "first"),
              llc_mean=("llc", "mean"),
              llc_se=("llc", lambda v: v.std(ddof=1) / math.sqrt(len(v))),
              drift=("drift", "mean"))
         .reset_index())
    s["rel_error"] = s.llc_mean / s.true_lambda - 1
    s["rel_error_expected"] = s.llc_mean / s.expected - 1
    s["passes"] = ((s.rel_error_expected.abs() <= TOY_TOL)
                   & ((s.multiplicity > 1) | (s.rel_error.abs() <= TOY_TOL)))
    return s


def toys(tables, params) -> Findings:
    """The estimator on toys at each of the chapter's settings: which settings pass, the worst
    relative error of the toys with multiplicity 1, the normal crossing's known bias."""
    (tt,) = _need(tables, "llc_toys")
    s = toy_summary(tt)
    m1 = s[s.multiplicity == 1]
    nc = s[(s.toy == "normal_crossing") & (s.setting == 0)]
    quart = s[(s.toy == "quartic") & (s.setting == 0)]
    per = s.groupby("setting").passes.all()
    from ...estimators.llc import TOYS, toy_expected

    nb = float(tt.n_beta.iloc[0])
    g = {"toy_tol": TOY_TOL, "toy_worst_m1": float(m1.rel_error.abs().max()),
         # the first version's localisation (100): what the degenerate toys aim at there
         "toy_old_quartic": toy_expected("quartic", nb, OLD_LOCALIZATION) / TOYS["quartic"][1],
         "toy_old_nc": (toy_expected("normal_crossing", nb, OLD_LOCALIZATION)
                        / TOYS["normal_crossing"][1]),
         "toy_worst_expected": float(s.rel_error_expected.abs().max()),
         "toy_settings_pass": int(per.sum()), "toy_settings": int(len(per)),
         "toy_quartic_main": float(quart.llc_mean.iloc[0]) if len(quart) else float("nan"),
         "toy_quartic_expected": float(quart.expected.iloc[0]) if len(quart) else float("nan"),
         "toy_nc_main": float(nc.llc_mean.iloc[0]) if len(nc) else float("nan"),
         "toy_nc_expected": float(nc.expected.iloc[0]) if len(nc) else float("nan")}
    return Findings(glue=g, tables={"llc_toy_summary": s})


def llc_setting_table(llcs: pd.DataFrame, toys_pass: pd.Series | None = None,
                      reference: bool = False) -> pd.DataFrame:
    """Per estimator setting: the paired difference llama - plain (t-interval over pairs), how
    many pairs have the llama network higher, the mean LLC of each condition, the systematic
    drift (mean over networks, LLC units) and its mean size, whether the setting is stationary
    (``|drift| <= DRIFT_SHARE x |difference|``) and validated on the toys. Rows marked
    ``reference`` (the first version's setting) are left out unless ``reference=True``."""
    good = llcs[llcs.reached & ~llcs.diverged]
    if "reference" in good:
        good = good[good.reference == reference]
    rows = []
    for si, t in good.groupby("setting"):
        w = t.pivot_table(index="seed", columns="condition", values="llc").dropna()
        if len(w) < 2 or not {"plain", "llama"} <= set(w.columns):
            raise ValueError(f"setting {si}: fewer than two complete plain/llama pairs")
        d, lo, hi = paired_t_interval(w.llama, w.plain)
        drift = float(t.drift.mean())
        rows.append({"setting": int(si), "step_size": float(t.step_size.iloc[0]),
                     "localization": float(t.localization.iloc[0]),
                     "n_burnin": int(t.n_burnin.iloc[0]), "n_pairs": int(len(w)),
                     "diff": d, "diff_lo": lo, "diff_hi": hi,
                     "k_llama_higher": int((w.llama > w.plain).sum()),
                     "llc_plain": float(w.plain.mean()), "llc_llama": float(w.llama.mean()),
                     "drift": drift, "drift_abs": float(t.drift.abs().mean()),
                     "stationary": bool(abs(drift) <= DRIFT_SHARE * abs(d)),
                     "toys_pass": bool(toys_pass.get(si, False)) if toys_pass is not None
                     else True})
    return pd.DataFrame(rows)


def llc_rule(st: pd.DataFrame) -> Verdict:
    """Supports when at every setting the interval of the paired difference lies above 0,
    contradicts when it lies below 0 at every setting; in both cases every setting must also be
    validated on the toys and stationary, and the per-setting mean differences must agree within
    a factor :data:`SIZE_FACTOR`. Otherwise mixed, naming what failed."""
    if st.empty:
        raise ValueError("no estimator setting to judge")
    if st[["diff", "diff_lo", "diff_hi"]].isna().any().any():
        raise ValueError("the LLC setting table holds a missing difference")
    up, down = (st.diff_lo > 0).all(), (st.diff_hi < 0).all()
    span = (f"mean difference llama - plain {st['diff'].min():.3g} to {st['diff'].max():.3g} "
            f"over {len(st)} settings")
    problems = []
    if not (up or down):
        straddle = st.setting[(st.diff_lo <= 0) & (st.diff_hi >= 0)]
        problems.append("the interval includes 0 at setting(s) "
                        + ", ".join(str(int(x)) for x in straddle) if len(straddle)
                        else "the sign changes across settings")
    a = st["diff"].abs()
    if (up or down) and a.max() > SIZE_FACTOR * a.min():
        problems.append(f"the size is not kept (largest / smallest {a.max() / a.min():.3g} "
                        f"> {SIZE_FACTOR:g})")
    if not st.stationary.all():
        problems.append("the chains still drift by more than half the effect at setting(s) "
                        + ", ".join(str(int(s)) for s in st.setting[~st.stationary]))
    if not st.toys_pass.all():
        problems.append("the toys are not recovered at setting(s) "
                        + ", ".join(str(int(s)) for s in st.setting[~st.toys_pass]))
    if problems:
        return Verdict(MIXED, f"{span}; " + "; ".join(problems))
    return Verdict(SUPPORTS if up else CONTRADICTS,
                   f"{span}: every setting's 95% interval lies "
                   f"{'above' if up else 'below'} 0 and the sizes agree")


def llc(tables, params) -> Findings:
    """Part 3(a): the LLC difference across settings, the drift, the estimator's checks on the
    networks (step-size factor at the top Hessian eigenvalue, gradient bias bound)."""
    llcs, nets, tt = _need(tables, "llc", "llc_networks", "llc_toys")
    per = toy_summary(tt).groupby("setting").passes.all()
    st = llc_setting_table(llcs, per)
    v = llc_rule(st)
    main = st[st.setting == 0].iloc[0]
    strong = st.sort_values(["localization", "setting"]).iloc[-1]
    fine = st.sort_values(["step_size", "setting"]).iloc[0]
    nb = float(llcs.n_beta.iloc[0])
    loc, step = float(main.localization), float(main.step_size)
    k_top = step * (nb * nets.top_eig.max() + loc) / 2
    grad_bound = nb ** 2 * nets.grad_norm ** 2 / (2 * loc)
    by = nets.groupby("condition")
    bound_gap = float(grad_bound[nets.condition == "llama"].mean()
                      - grad_bound[nets.condition == "plain"].mean())
    level = (main.llc_plain + main.llc_llama) / 2
    g = {"llc_pairs": int(main.n_pairs), "llc_plain": float(main.llc_plain),
         "llc_llama": float(main.llc_llama), "llc_diff": float(main["diff"]),
         "llc_diff_lo": float(main.diff_lo), "llc_diff_hi": float(main.diff_hi),
         "llc_k_higher": int(main.k_llama_higher), "llc_n_settings": int(len(st)),
         "llc_diff_min": float(st["diff"].min()), "llc_diff_max": float(st["diff"].max()),
         "llc_drift_main": float(main.drift), "llc_drift_max": float(st.drift.abs().max()),
         "llc_drift_abs_main": float(main.drift_abs),
         "llc_settings_stationary": int(st.stationary.sum()),
         "llc_level_min": float(st[["llc_plain", "llc_llama"]].min().min()),
         "llc_level_max": float(st[["llc_plain", "llc_llama"]].max().max()),
         "llc_top_eig": float(nets.top_eig.max()), "llc_k_top": float(k_top),
         "llc_k_inflation": float(1 / (1 - k_top / 2) - 1),
         "llc_step_fine": float(fine.step_size),
         "llc_level_fine_diff": float((fine.llc_plain + fine.llc_llama) / 2 - level),
         "llc_grad_plain": float(by.grad_norm.mean()["plain"]),
         "llc_grad_llama": float(by.grad_norm.mean()["llama"]),
         "llc_grad_bound_plain": float(grad_bound[nets.condition == "plain"].mean()),
         "llc_grad_bound_llama": float(grad_bound[nets.condition == "llama"].mean()),
         "llc_grad_says": ("larger than" if abs(bound_gap) > abs(main["diff"]) else "smaller than"),
         "llc_n_beta": nb, "llc_loc_strong": float(strong.localization),
         "llc_plain_strong": float(strong.llc_plain),
         "verdict_llc": v.label, "verdict_llc_reason": v.reason}
    if "reference" in llcs and llcs.reference.any():
        ref = llc_setting_table(llcs, reference=True).iloc[0]
        g.update({"llc_ref_loc": float(ref.localization), "llc_ref_plain": float(ref.llc_plain),
                  "llc_ref_llama": float(ref.llc_llama), "llc_ref_diff": float(ref["diff"]),
                  "llc_ref_diff_lo": float(ref.diff_lo), "llc_ref_diff_hi": float(ref.diff_hi),
                  "llc_ref_k_higher": int(ref.k_llama_higher)})
    return Findings(glue=g, tables={"llc_settings": st})


def volume_rule(vols: pd.DataFrame, kind: str = "relative") -> tuple[Verdict, dict]:
    """Paired difference plain - llama of the surviving fraction averaged over the radii of
    ``kind``: interval above 0 supports (llama networks have less volume), below 0 contradicts,
    otherwise mixed. Returns the verdict and its numbers (with the exact count of pairs)."""
    v = vols[(vols.kind == kind) & vols.reached]
    if v.empty:
        raise ValueError(f"no local-volume rows of kind {kind!r}")
    w = v.groupby(["seed", "condition"]).fraction.mean().unstack().dropna()
    if len(w) < 2:
        raise ValueError("fewer than two complete plain/llama pairs for the local volume")
    d, lo, hi = paired_t_interval(w.plain, w.llama)
    verdict = Verdict.from_interval(lo, hi, favour="positive",
                                    what=f"paired difference plain - llama of the surviving "
                                         f"fraction ({kind} radii)")
    return verdict, {"diff": d, "lo": lo, "hi": hi, "plain": float(w.plain.mean()),
                     "llama": float(w.llama.mean()), "k_plain_more": int((w.plain > w.llama).sum()),
                     "n_pairs": int(len(w))}


def volume(tables, params) -> Findings:
    """Part 3(b): local volume at radii relative to each network's balanced norm (the verdict),
    and at the first version's absolute radii for comparison."""
    (vols,) = _need(tables, "local_volume")
    v, d = volume_rule(vols, "relative")
    _, a = volume_rule(vols, "absolute")
    norms = vols[vols.kind == "relative"].groupby("condition").weight_norm.mean()
    g = {"vol_plain": d["plain"], "vol_llama": d["llama"], "vol_diff": d["diff"],
         "vol_diff_lo": d["lo"], "vol_diff_hi": d["hi"], "vol_k_plain_more": d["k_plain_more"],
         "vol_pairs": d["n_pairs"], "vol_abs_diff": a["diff"], "vol_abs_diff_lo": a["lo"],
         "vol_abs_diff_hi": a["hi"], "vol_norm_plain": float(norms["plain"]),
         "vol_norm_llama": float(norms["llama"]),
         "verdict_volume": v.label, "verdict_volume_reason": v.reason}
    return Findings(glue=g)


def encoding(tables, params) -> Findings:
    """The training summary and the sanity check (formerly part 3(c)): plain networks encode
    the llama above the 95% quantile of control groups about 5% of the time by construction
    (the llama is a feature of the same kind as the controls); an exact interval shows whether
    the count is consistent with that."""
    from scipy.stats import beta as _beta

    (enc,) = _need(tables, "trained")
    plain = enc[(enc.condition == "plain") & enc.reached]
    llam = enc[(enc.condition == "llama") & enc.reached]
    if plain.empty or llam.empty:
        raise ValueError("no plain or no llama network reached the target loss")
    k, n = int(plain.specific.sum()), int(len(plain))
    lo = float(_beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    hi = float(_beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    g = {"n_train_pairs": int((enc.condition == "plain").sum()),
         "n_reached": int(enc.reached.sum()), "n_networks": int(len(enc)),
         "unprompted_k": k, "unprompted_n": n, "unprompted": k / n, "unprompted_lo": lo,
         "unprompted_hi": hi, "unprompted_chance": 0.05,
         "unprompted_says": ("consistent with chance" if lo <= 0.05 <= hi
                             else "above chance" if lo > 0.05 else "below chance"),
         "specific_llama_nets": float(llam.specific.mean()),
         # medians: a held-out probe can score far below 0 on a network whose hidden unit is
         # silent on the training digits and active on test ones
         "r2_plain": float(plain.r2_llama.median()),
         "r2_plain_controls": float(plain.r2_controls.median()),
         "r2_llama_nets": float(llam.r2_llama.median()),
         "r2_input": float(enc.r2_input_llama.median()),
         "r2_floor": R2_FLOOR, "r2_below_floor": int((enc[["r2_llama", "r2_controls",
                                                          "r2_controls_q"]] < R2_FLOOR).any(axis=1).sum()),
         "rank_plain": float(plain.llama_rank.mean()), "train_ce_plain": float(plain.train_ce.mean()),
         "train_ce_llama": float(llam.train_ce.mean()), "acc_plain": float(plain.test_acc.mean()),
         "acc_llama": float(llam.test_acc.mean()), "norm_plain": float(plain.weight_norm.mean()),
         "norm_llama": float(llam.weight_norm.mean()),
         "norm_bal_plain": float(plain.weight_norm_balanced.mean()),
         "norm_bal_llama": float(llam.weight_norm_balanced.mean()),
         "steps_plain": float(plain.steps.mean()), "steps_llama": float(llam.steps.mean())}
    return Findings(glue=g)


# =============================================================================================
def settings_text(tables, params) -> Findings:
    """The settings the prose quotes, as text."""
    p = params
    main = f"step {p['llc_step']:g}, localisation {p['llc_localization']:g}"
    g = {"sample_nets_txt": f"{p['sample_nets']:,}", "toy_chains_txt": str(p["toy_chains"]),
         "hidden_txt": f"{p['hidden']}→{p['hidden']}", "llama_k_txt": str(p["llama_k"]),
         "n_controls_txt": str(p["n_controls"]), "llc_seeds_txt": str(p["llc_seeds"]),
         "vol_samples_txt": str(p["vol_samples"]), "vol_tol_txt": f"{p['vol_tol']:g} nats",
         "llc_chains_txt": str(p["llc_chains"]), "llc_draws_txt": str(p["llc_draws"]),
         "llc_burnin_txt": str(p["llc_burnin"]), "llc_main_txt": main,
         "sigma_w_txt": f"{p['sigma_w']:g}", "sigma_b_txt": f"{p['sigma_b']:g}",
         "sampled_configs_txt": f"{p['sampled_configs']:,}",
         "size_boot_txt": f"{SIZE_BOOT:,}",
         "vol_radii_rel_txt": ", ".join(f"{r:g}" for r in p["vol_radii_rel"])}
    return Findings(glue=g)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


CLAIMS = {
    ("C", "width"): "Networks that compute an intermediate the output reads and then cancel it "
                    "are rarer than networks without one, summed over every intermediate.",
    ("F", "width"): "Networks that compute any extra feature, read or not, are rarer than "
                    "networks that compute nothing extra.",
    ("C", "random"): "Among random networks whose output ignores the input, those in which a "
                     "hidden computation feeds the output and is cancelled are the minority.",
    ("F", "random"): "Among random networks whose output ignores the input, those whose hidden "
                     "units compute anything at all are the minority.",
    ("C", "llc"): "A trained network forced to compute an irrelevant feature and then ignore it "
                  "sits at a less degenerate solution (higher learning coefficient) than a plain "
                  "one at the same loss.",
    ("C", "volume"): "A trained network forced to compute an irrelevant feature and then ignore "
                     "it keeps less parameter volume near it than a plain one at the same loss.",
}


def _pope_row(ver: str, what: str, id: str, version: str, effect: tuple, **kw) -> dict:
    """A ledger row for Pope's claim, version ``ver`` ("C" or "F"), on experiment ``what``."""
    return ledger_row(id=id, chapter=CHAPTER, claim=CLAIMS[(ver, what)], who="Pope",
                      quote=POPE_QUOTE if ver == "C" else POPE_QUOTE_F,
                      source=POPE_SOURCE if ver == "C" else POPE_SOURCE_F,
                      version=f"{ver} ({'cancelled computation' if ver == 'C' else 'free capacity'}); "
                              + version, claim_side=SCEPTIC, effect=effect[0],
                      effect_lo=effect[1], effect_hi=effect[2], **kw)


def ledger(tables, params) -> Findings:
    """One ledger row per verdict the chapter computes, each naming the version of the claim."""
    w = width(tables, params).glue
    s = sampling(tables, params).glue
    lg = llc(tables, params).glue
    vo = volume(tables, params).glue
    rows = []
    for n, p, vk, ver in ((2, "wc2", "verdict_width_c2", "C"), (3, "wc3", "verdict_width_c3", "C"),
                          (2, "wf2", "verdict_width_f2", "F"), (3, "wf3", "verdict_width_f3", "F")):
        stat = "mean over targets" if trend_statistic(n) == "mean" else "volume-weighted"
        what = ("configurations with cancelled computation / without" if ver == "C"
                else "configurations computing anything extra / straightforward ones")
        eff = (w[p + "_value"], w[p + "_lo"], w[p + "_hi"])
        rows.append(_pope_row(
            ver, "width", f"03-{'cancelled' if ver == 'C' else 'free'}-width-n{n}",
            f"threshold networks, {n} inputs, widest H = {w[p + '_h']}", eff,
            effect_name=f"{stat} log10 ratio, {what}", units="log10 volume ratio", verdict=w[vk],
            finding=(f"With {n} inputs the {stat} ratio {w[p + '_change']}; at H = {w[p + '_h']} "
                     f"it is {_fmt(eff[0])} ({_fmt(eff[1])} to {_fmt(eff[2])})."),
            figure="llama-width"))
    for ver, key, vk, name, says in (
            ("C", "samp_anyfed", "verdict_random_c", "share with a hidden unit that feeds the output",
             "have a unit whose removal changes the output somewhere."),
            ("F", "samp_nonconst", "verdict_random_f", "share with a non-constant hidden unit",
             "have a hidden unit that is not constant.")):
        eff = (s[key], s[key + "_lo"], s[key + "_hi"])
        rows.append(_pope_row(
            ver, "random", f"03-{'cancelled' if ver == 'C' else 'free'}-random-nets",
            "random 7-40-40-1 ReLU networks with constant output, every intermediate g counted",
            eff, effect_name=name, units="share of constant-output networks", verdict=s[vk],
            finding=(f"{_fmt(eff[0])} of {s['samp_analysed_const']} constant-output networks "
                     f"({_fmt(eff[1])} to {_fmt(eff[2])}) {says}"),
            figure="llama-sampling"))
    trained_rows = (
        ("llc", "LLC by SGLD, llama forced into the last hidden layer",
         (lg["llc_diff"], lg["llc_diff_lo"], lg["llc_diff_hi"]),
         "paired LLC difference llama - plain (main setting)", "LLC (dimensionless)",
         lg["verdict_llc"],
         f"Llama networks are higher in {lg['llc_k_higher']} of {lg['llc_pairs']} pairs; the mean "
         f"difference ranges from {_fmt(lg['llc_diff_min'])} to {_fmt(lg['llc_diff_max'])} over "
         f"{lg['llc_n_settings']} estimator settings."),
        ("volume", "local volume at radii relative to the balanced weight norm",
         (vo["vol_diff"], vo["vol_diff_lo"], vo["vol_diff_hi"]),
         "paired difference plain - llama of the surviving share", "share of random directions",
         vo["verdict_volume"],
         f"The plain network keeps more directions in {vo['vol_k_plain_more']} of "
         f"{vo['vol_pairs']} pairs; mean difference {_fmt(vo['vol_diff'])} "
         f"({_fmt(vo['vol_diff_lo'])} to {_fmt(vo['vol_diff_hi'])})."))
    for what, version, eff, name, units, verdict, finding in trained_rows:
        rows.append(_pope_row("C", what, f"03-cancelled-trained-{what}", f"digit MLPs, {version}",
                              eff, effect_name=name, units=units, verdict=verdict,
                              finding=finding, figure="llama-trained"))
    return Findings(tables={"ledger": ledger_table(rows)})


def analyse(tables, params) -> Findings:
    """Everything the chapter glues and derives, from the saved tables."""
    return Findings.merge(exact(tables, params), width(tables, params), sampling(tables, params),
                          toys(tables, params), encoding(tables, params), llc(tables, params),
                          volume(tables, params), settings_text(tables, params),
                          ledger(tables, params))
