"""Verdicts, effect sizes and glued numbers of chapter 07, from saved tables only.

Tables (as saved by the notebook):

- ``gaps``: the gap grid (:func:`experiment.gap_table`); ``task_check``: the construction measured
  by sampling (:func:`experiment.check_task`);
- ``tax``: one row per network (plain / overhead / gated), seed, architecture and step budget;
- ``slack``: one row per network of the slack runs (``start`` scratch or path), gap, seed,
  architecture and step budget, all at the default training setting;
- ``settings``: the same from scratch at the reference architecture, one training setting
  changed at a time.

Units: every loss, tax and gap is in nats of held-out cross-entropy per example, computed exactly
over the label noise (the population loss of the online task).

The rules are the ones stated in the notebook before any code; the thresholds are module
constants, not parameters, so no profile can move them.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy.special import log_ndtr
from scipy.stats import norm

from ... import report, stats
from ...report import Findings
from ...stats import CONTRADICTS, MIXED, SUPPORTS

CHAPTER = "07_speed"
STUCK_LOSS = 0.9 * math.log(2)  # held-out loss at or above: the network learned nothing
CHECK_ACC = 0.9                 # accuracy of the check head below which the check was not computed
FOLLOW = 0.5                    # reliance above: the network ends on the better solution
CLEAR = 0.6                     # stricter reading: above "clearly better", below 1 - CLEAR "clearly worse"
LEVEL = 0.9                     # the slack threshold: the gap at which this share ends on the better
Z_LEVEL = float(norm.ppf(LEVEL))
SLACK_REF = 0.01                # gap (nats) the slack row asks training to resolve
SLACK_REF_ALT = (0.003, 0.03)   # the same rule at other references (sensitivity)
TAX_NEGLIGIBLE = 0.001          # a tax interval inside +-this (nats) shows a negligible tax
TAU_SPAN = 20.0                 # the fit searches tau in [smallest gap / 20, largest gap * 20]
N_TAU = 601
MIN_LEARNED = 0.5               # share of non-stuck runs a threshold needs
EXTRA = ("overhead", "gated")

TAXED, UNTAXED, UNCLEAR, MISSING = "taxed", "untaxed", "unclear", "missing"
RESOLVED, UNRESOLVED = "resolved", "unresolved"
LOCKED, FREE, NOT_EVALUABLE = "locked in", "not locked in", "not evaluable"
BITES, BELOW, BLOCKED = "bites", "below the threshold", "blocked by path dependence"
FIG_TAX, FIG_PREF, FIG_RELIANCE, FIG_BUDGET, FIG_SETTINGS, FIG_PATH, FIG_SIDE = (
    "speed-tax", "speed-preference", "speed-reliance", "speed-budget", "speed-settings",
    "speed-path", "speed-side-by-side")
SOURCE = "LessWrong thread on Carlsmith's report summary (text in notes/000_97dd18eff6661fdc.txt)"


def arch_name(width, depth) -> str:
    return f"{int(width)}x{int(depth)}"


_interval = stats.finite_t_interval   # a mean with its t interval, over the finite values


def _wilson(k: int, n: int) -> tuple[float, float, float]:
    return stats.proportion_interval(int(k), int(n)) if n else (math.nan,) * 3


def majority(labels, yes: str, no) -> str:
    """``supports`` if more than half of ``labels`` are ``yes``, ``contradicts`` if more than
    half are in ``no`` (a label or a tuple of labels), ``mixed`` otherwise (also when empty)."""
    labels = list(labels)
    no = (no,) if isinstance(no, str) else tuple(no)
    n = len(labels)
    if n and sum(lab == yes for lab in labels) > n / 2:
        return SUPPORTS
    if n and sum(lab in no for lab in labels) > n / 2:
        return CONTRADICTS
    return MIXED


def _counts(labels) -> str:
    s = pd.Series(list(labels), dtype=object).value_counts()
    return ", ".join(f"{v} {k}" for k, v in s.items()) if len(s) else "no cells"


# ---------------------------------------------------------------------------------------------
# single networks
def with_outcomes(slack: pd.DataFrame) -> pd.DataFrame:
    """Adds ``stuck`` (learned nothing), ``better`` (reliance above 1/2 on disagreeing inputs),
    ``clear_better`` / ``clear_worse`` (the stricter reading) and ``realised`` (the loss gap between
    the network's solution and its mirror image, signed so that it is positive when the network's
    choice is the better one at a positive gap; exactly 0 at zero gap)."""
    out = slack.copy()
    out["stuck"] = out.loss >= STUCK_LOSS
    out["better"] = out.reliance > FOLLOW
    out["clear_better"] = out.reliance > CLEAR
    out["clear_worse"] = out.reliance < 1 - CLEAR
    out["realised"] = np.sign(out.reliance - FOLLOW) * (out.loss_mirror - out.loss)
    return out


def preference_cells(slack: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, start, architecture, budget, gap): runs, stuck runs, the share ending on the
    better solution (non-stuck runs) with its Wilson interval, mean reliance (t-interval) next to
    the best predictor's, the realised gap, and the shares under the stricter reading."""
    s = with_outcomes(slack)
    br = dict(zip(gaps.gap_index, gaps.bayes_reliance))
    rows = []
    keys = ["setting", "start", "width", "depth", "budget", "gap_index", "gap"]
    for key, g in s.groupby(keys, sort=True):
        ok = g[~g.stuck]
        n = len(ok)
        kb = int(ok.better.sum())
        sh, lo, hi = _wilson(kb, n)
        r, r_lo, r_hi = _interval(ok.reliance)
        rg, rg_lo, rg_hi = _interval(ok.realised)
        rows.append(dict(zip(keys, key), n=len(g), n_stuck=int(g.stuck.sum()), n_learned=n,
                         n_better=kb, share=sh, share_lo=lo, share_hi=hi,
                         share_clear_better=float(ok.clear_better.mean()) if n else math.nan,
                         share_clear_worse=float(ok.clear_worse.mean()) if n else math.nan,
                         reliance=r, reliance_lo=r_lo, reliance_hi=r_hi,
                         bayes_reliance=br[key[5]], realised=rg, realised_lo=rg_lo,
                         realised_hi=rg_hi, loss=float(ok.loss.mean()) if n else math.nan,
                         loss_sd=float(ok.loss.std(ddof=1)) if n > 1 else math.nan))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# the slack threshold
def tau_grid(gap_grid) -> np.ndarray:
    """The grid of ``tau`` searched for a gap grid: from its smallest positive gap / TAU_SPAN to
    its largest gap * TAU_SPAN, log-spaced."""
    g = np.asarray(gap_grid, dtype=float)
    g = g[g > 0]
    if g.size == 0:
        raise ValueError("the gap grid needs a positive gap")
    return np.geomspace(g.min() / TAU_SPAN, g.max() * TAU_SPAN, N_TAU)


def probit_loglik(gap: np.ndarray, outcome: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Log-likelihood on the grid ``tau`` of the model P(better | gap) = Phi(gap / tau), summed
    over the runs given (gap > 0 only; runs at zero gap carry no information about tau)."""
    g = np.asarray(gap, dtype=float)
    o = np.asarray(outcome, dtype=bool)
    keep = g > 0
    g, o = g[keep], o[keep]
    if g.size == 0:
        return np.zeros(len(tau))
    x = g[:, None] / np.asarray(tau)[None, :]
    return np.where(o[:, None], log_ndtr(x), log_ndtr(-x)).sum(0)


def threshold_from_tau(tau: float) -> float:
    """The gap at which the probit model gives a share ``LEVEL`` on the better solution."""
    return Z_LEVEL * float(tau)


def _realised_at(gap_grid: np.ndarray, realised: np.ndarray, d90: float) -> float:
    """The realised gap at ideal gap ``d90``: linear interpolation over the grid; beyond its last
    point, the last point's ratio realised / ideal."""
    ok = np.isfinite(realised)
    x, y = gap_grid[ok], realised[ok]
    if x.size < 2 or not math.isfinite(d90):
        return math.nan
    if d90 <= x[-1]:
        return float(np.interp(d90, x, y))
    return float(d90 * y[-1] / x[-1])


def isotonic_threshold(gap_grid, share) -> float:
    """Nonparametric check: the pooled-adjacent-violators fit of ``share`` over ``gap_grid``,
    linearly interpolated where it first reaches ``LEVEL`` (NaN if it never does)."""
    x = np.asarray(gap_grid, dtype=float)
    y = np.asarray(share, dtype=float)
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size == 0:
        return math.nan
    blocks = [[v, 1.0] for v in y]
    vals = []
    for v, w in blocks:
        vals.append([v, w, 1])
        while len(vals) > 1 and vals[-2][0] > vals[-1][0]:
            v2, w2, c2 = vals.pop()
            v1, w1, c1 = vals.pop()
            vals.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    fit = np.concatenate([[v] * c for v, _, c in vals])
    above = np.flatnonzero(fit >= LEVEL)
    if above.size == 0:
        return math.nan
    i = above[0]
    if i == 0:
        return float(x[0])
    return float(np.interp(LEVEL, [fit[i - 1], fit[i]], [x[i - 1], x[i]]))


def fit_threshold(runs: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict:
    """The slack threshold of one cell (one setting, architecture and budget, from scratch).

    ``runs``: rows of :func:`with_outcomes` with columns ``seed, gap, gap_index, stuck, better,
    clear_better, realised``. The threshold is fitted by maximum likelihood (probit through 1/2 at
    zero gap, on a grid of ``tau``) from the non-stuck runs; its 95% interval is scipy's BCa
    bootstrap over seeds (a seed's runs at every gap resampled together). ``d90_real`` is the
    realised gap of trained networks at that ideal gap (same bootstrap).

    When every non-stuck run at every positive gap ends on the better solution the likelihood
    has no maximum inside (perfect separation) and the fit sits at the floor of the grid
    (``at_grid_floor``): the threshold is then only known to lie below the smallest positive
    gap, and the upper ends of both intervals are raised to that gap (and its realised gap).
    A threshold beyond the largest gap is flagged ``beyond_grid`` (an extrapolation)."""
    out = dict(n=len(runs), n_stuck=int(runs.stuck.sum()))
    nan = dict(tau=math.nan, d90_ideal=math.nan, d90_ideal_lo=math.nan, d90_ideal_hi=math.nan,
               d90_real=math.nan, d90_real_lo=math.nan, d90_real_hi=math.nan,
               d90_isotonic=math.nan, d90_clear=math.nan, fit_max_dev=math.nan,
               beyond_grid=False, at_grid_floor=False)
    learned = runs[~runs.stuck]
    seeds = np.array(sorted(runs.seed.unique()))
    if len(seeds) < 2 or len(learned) < max(2, MIN_LEARNED * len(runs)):
        return {**out, **nan, "status": "not learned"}
    grid = np.array(sorted(runs.gap.unique()), dtype=float)
    taus = tau_grid(grid)
    gi = {g: i for i, g in enumerate(grid)}
    S, G = len(seeds), len(grid)
    ll = np.zeros((S, len(taus)))
    ll_clear = np.zeros((S, len(taus)))
    rsum, rcnt = np.zeros((S, G)), np.zeros((S, G))
    for si, s in enumerate(seeds):
        r = learned[learned.seed == s]
        ll[si] = probit_loglik(r.gap.values, r.better.values, taus)
        ll_clear[si] = probit_loglik(r.gap.values, r.clear_better.values, taus)
        for g, v in zip(r.gap.values, r.realised.values):
            rsum[si, gi[g]] += v
            rcnt[si, gi[g]] += 1

    def stat_rows(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tau = taus[np.argmax(counts @ ll, axis=1)]
        d90 = Z_LEVEL * tau
        with np.errstate(invalid="ignore", divide="ignore"):
            curve = (counts @ rsum) / (counts @ rcnt)
        real = np.array([_realised_at(grid, c, d) for c, d in zip(curve, d90)])
        return d90, real

    def statistic(which: int):
        def f(x, axis=-1):
            x = np.asarray(x)
            flat = x.reshape(-1, x.shape[-1]).astype(int)
            counts = (flat[:, :, None] == np.arange(S)).sum(1).astype(float)
            return stat_rows(counts)[which].reshape(x.shape[:-1])
        return f

    idx = np.arange(S, dtype=float)
    with warnings.catch_warnings():         # degenerate resampling is handled by bca_interval
        warnings.simplefilter("ignore")
        d90, d_lo, d_hi = stats.bca_interval(idx, statistic(0), n_resamples=n_boot, seed=seed)
        real, r_lo, r_hi = stats.bca_interval(idx, statistic(1), n_resamples=n_boot, seed=seed)
    tau = d90 / Z_LEVEL
    floor = bool(tau <= taus[0] * 1.0001)
    if floor:
        g1 = grid[grid > 0].min()
        with np.errstate(invalid="ignore", divide="ignore"):
            r1 = float(np.nansum(rsum[:, gi[g1]]) / np.nansum(rcnt[:, gi[g1]]))
        d_hi, r_hi = max(d_hi, g1), max(r_hi, r1 if math.isfinite(r1) else r_hi)
    share = learned.groupby("gap").better.mean().reindex(grid)
    fitted = norm.cdf(grid / tau)
    pos = grid > 0
    dev = float(np.nanmax(np.abs(share.values[pos] - fitted[pos]))) if pos.any() else math.nan
    tau_clear = taus[np.argmax(ll_clear.sum(0))]
    return {**out, "status": "fitted", "tau": tau, "d90_ideal": d90, "d90_ideal_lo": d_lo,
            "d90_ideal_hi": d_hi, "d90_real": real, "d90_real_lo": r_lo, "d90_real_hi": r_hi,
            "d90_isotonic": isotonic_threshold(grid[pos], share.values[pos]),
            "d90_clear": threshold_from_tau(tau_clear), "fit_max_dev": dev,
            "beyond_grid": bool(d90 > grid.max()), "at_grid_floor": floor}


def thresholds(slack: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """:func:`fit_threshold` for every (setting, architecture, budget) of the scratch runs."""
    s = with_outcomes(slack[slack.start == "scratch"])
    rows = []
    for (setting, w, d, b), g in s.groupby(["setting", "width", "depth", "budget"], sort=True):
        if b == 0:
            continue
        rows.append(dict(setting=setting, width=w, depth=d, arch=arch_name(w, d), budget=b,
                         **fit_threshold(g, n_boot=n_boot)))
    return pd.DataFrame(rows)


def slack_label(lo: float, hi: float, ref: float = SLACK_REF) -> str:
    """Per cell: ``resolved`` if the threshold's interval lies below ``ref`` (training ends on the
    better solution in 90% of runs at gaps smaller than ``ref``), ``unresolved`` if it lies
    above, ``unclear`` if it straddles ``ref``, ``missing`` if there is no threshold."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return MISSING
    if hi < ref:
        return RESOLVED
    if lo > ref:
        return UNRESOLVED
    return UNCLEAR


# ---------------------------------------------------------------------------------------------
# the tax
def tax_pairs(tax: pd.DataFrame) -> pd.DataFrame:
    """One row per architecture, budget, seed and extra condition: the plain network's and the
    extra network's held-out loss (same initial weights), the tax (extra minus plain, nats) and
    why a pair is left out of the paired tax: the plain network learned nothing (``plain
    stuck``), the extra one learned nothing (``extra stuck``), or its check head did not compute
    the check (``check not computed``: it did not pay for the extra computation)."""
    keys = ["width", "depth", "budget", "seed"]
    plain = tax[tax.condition == "plain"][keys + ["loss"]]
    rows = []
    for cond in EXTRA:
        ex = tax[tax.condition == cond][keys + ["loss", "check_acc"]]
        j = plain.merge(ex, on=keys, how="inner", suffixes=("_plain", "_extra"))
        reason = np.where(j.loss_plain >= STUCK_LOSS, "plain stuck",
                          np.where(j.loss_extra >= STUCK_LOSS, "extra stuck",
                                   np.where(j.check_acc < CHECK_ACC, "check not computed", "")))
        rows.append(j.assign(condition=cond, tax=j.loss_extra - j.loss_plain, excluded=reason))
    return pd.concat(rows, ignore_index=True)


def tax_label(lo: float, hi: float) -> str:
    """Per cell: ``taxed`` if the paired interval lies above 0; ``untaxed`` if it lies below 0
    or inside +-TAX_NEGLIGIBLE; ``unclear`` otherwise; ``missing`` without an interval."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return MISSING
    if lo > 0:
        return TAXED
    if hi < 0 or (-TAX_NEGLIGIBLE <= lo and hi <= TAX_NEGLIGIBLE):
        return UNTAXED
    return UNCLEAR


def tax_cells(tax: pd.DataFrame) -> pd.DataFrame:
    """Per architecture, budget and extra condition: the paired tax over the pairs kept (mean,
    95% t-interval), the exclusions by reason, the mean over all pairs, the plain networks' mean
    loss and its spread over seeds (the operational slack), and the cell's label."""
    pairs = tax_pairs(tax)
    rows = []
    for (w, d, b, cond), g in pairs.groupby(["width", "depth", "budget", "condition"], sort=True):
        kept = g[g.excluded == ""]
        m, lo, hi = _interval(kept.tax)
        rows.append(dict(width=w, depth=d, arch=arch_name(w, d), budget=b, condition=cond,
                         n_pairs=len(g), n_used=len(kept),
                         n_plain_stuck=int((g.excluded == "plain stuck").sum()),
                         n_extra_stuck=int((g.excluded == "extra stuck").sum()),
                         n_check_failed=int((g.excluded == "check not computed").sum()),
                         tax=m, tax_lo=lo, tax_hi=hi, tax_all=float(g.tax.mean()),
                         plain_loss=float(g.loss_plain.mean()),
                         plain_sd=float(g.loss_plain.std(ddof=1)) if len(g) > 1 else math.nan,
                         extra_loss=float(g.loss_extra.mean()),
                         check_acc=float(g.check_acc.mean()), label=tax_label(lo, hi)))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# path dependence
PATH_COLUMNS = ["width", "depth", "arch", "budget", "d90_ideal", "gaps_used", "n", "n_switched",
                "switch_share", "switch_lo", "switch_hi", "scratch_share", "stay_at_zero", "label"]


def path_label(k: int, n: int) -> str:
    """From the share of pre-trained runs that switched to the better solution: ``not locked in``
    if its Wilson interval lies above 1/2, ``locked in`` if below, ``unclear`` otherwise."""
    if n == 0:
        return NOT_EVALUABLE
    _, lo, hi = stats.proportion_interval(k, n)
    return FREE if lo > 0.5 else LOCKED if hi < 0.5 else UNCLEAR


def path_cells(slack: pd.DataFrame, thr: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Per architecture at ``budget``: the share of runs pre-trained on the worse solution that
    end on the better one, pooled over the path gaps at or above the cell's slack threshold
    (``not evaluable`` when the threshold lies beyond every path gap), next to the share of
    scratch runs at the same gaps (paired seeds) and the share still on the pre-trained solution
    at zero gap."""
    s = with_outcomes(slack[slack.budget == budget])
    s = s[~s.stuck]
    rows = []
    for (w, d), g in s.groupby(["width", "depth"], sort=True):
        t = thr[(thr.width == w) & (thr.depth == d) & (thr.budget == budget)]
        d90 = float(t.d90_ideal.iloc[0]) if len(t) else math.nan
        path = g[g.start == "path"]
        pg = np.array(sorted(path.gap.unique()))
        use = pg[(pg > 0) & (pg >= d90)] if math.isfinite(d90) else np.array([])
        p_use = path[path.gap.isin(use)]
        sc_use = g[(g.start == "scratch") & g.gap.isin(use)]
        k, n = int(p_use.better.sum()), len(p_use)
        sh, lo, hi = _wilson(k, n)
        z = path[path.gap == 0]
        rows.append(dict(width=w, depth=d, arch=arch_name(w, d), budget=budget, d90_ideal=d90,
                         gaps_used=" ".join(f"{x:g}" for x in use), n=n, n_switched=k,
                         switch_share=sh, switch_lo=lo, switch_hi=hi,
                         scratch_share=float(sc_use.better.mean()) if len(sc_use) else math.nan,
                         stay_at_zero=float((~z.better).mean()) if len(z) else math.nan,
                         label=path_label(k, n)))
    return pd.DataFrame(rows, columns=PATH_COLUMNS)


# ---------------------------------------------------------------------------------------------
# the combination
def combined_label(tax_lo: float, tax_hi: float, thr_lo: float, thr_hi: float,
                   path: str) -> str:
    """Per cell: the speed argument ``bites`` if the tax's interval lies above the slack
    threshold's interval and the worse solution is not locked in by pre-training; ``blocked by
    path dependence`` if the tax is above but pre-training locks the worse solution in; ``below
    the threshold`` if the tax's interval lies below the threshold's; ``unclear`` otherwise."""
    vals = (tax_lo, tax_hi, thr_lo, thr_hi)
    if not all(math.isfinite(v) for v in vals):
        return MISSING
    if tax_lo > thr_hi:
        return BLOCKED if path == LOCKED else BITES
    if tax_hi < thr_lo:
        return BELOW
    return UNCLEAR


def side_by_side(tcells: pd.DataFrame, thr: pd.DataFrame, pcells: pd.DataFrame | None,
                 setting: str = "default") -> pd.DataFrame:
    """Per architecture, budget and extra condition: the tax next to the realised slack threshold
    and the cell's combined label (the path label is the final budget's, where it was measured)."""
    t = thr[thr.setting == setting][["width", "depth", "budget", "d90_real", "d90_real_lo",
                                     "d90_real_hi", "d90_ideal", "status"]]
    m = tcells.merge(t, on=["width", "depth", "budget"], how="left")
    plab = {}
    if pcells is not None and len(pcells):
        plab = {(r.width, r.depth): r.label for r in pcells.itertuples()}
    m["path"] = [plab.get((w, d), NOT_EVALUABLE) for w, d in zip(m.width, m.depth)]
    m["combined"] = [combined_label(a, b, c, e, p) for a, b, c, e, p in
                     zip(m.tax_lo, m.tax_hi, m.d90_real_lo, m.d90_real_hi, m.path)]
    m["ratio"] = m.tax / m.d90_real
    return m


# ---------------------------------------------------------------------------------------------
# verdicts
def verdict_tax(tcells: pd.DataFrame, condition: str, budget: int) -> tuple[str, str]:
    """The tax half: supports if more than half of the architectures are taxed, contradicts if
    more than half are untaxed, mixed otherwise."""
    c = tcells[(tcells.condition == condition) & (tcells.budget == budget)]
    v = majority(c.label, TAXED, UNTAXED)
    return v, f"{_counts(c.label)} of {len(c)} architectures"


def verdict_slack(thr: pd.DataFrame, budget: int, ref: float = SLACK_REF) -> tuple[str, str]:
    """The slack half, from scratch: per architecture, :func:`slack_label` of the ideal-gap
    threshold; supports if more than half are resolved, contradicts if more than half are
    unresolved, mixed otherwise."""
    c = thr[(thr.setting == "default") & (thr.budget == budget)]
    labels = [slack_label(lo, hi, ref) for lo, hi in zip(c.d90_ideal_lo, c.d90_ideal_hi)]
    return majority(labels, RESOLVED, UNRESOLVED), f"{_counts(labels)} of {len(c)} architectures"


def verdict_path(pcells: pd.DataFrame) -> tuple[str, str]:
    """The slack half, path dependence: supports (training gets the better solution after all)
    if more than half of the evaluable architectures are not locked in, contradicts if more than
    half are locked in, mixed otherwise (also with no evaluable architecture)."""
    ev = pcells[pcells.label != NOT_EVALUABLE]
    v = majority(ev.label, FREE, LOCKED)
    return v, f"{_counts(pcells.label)} of {len(pcells)} architectures"


def verdict_combined(sbs: pd.DataFrame, condition: str, budget: int) -> tuple[str, str]:
    """The combined argument: supports if the speed argument bites in more than half of the
    architectures, contradicts if in more than half the tax is below the threshold or the
    worse solution is locked in, mixed otherwise."""
    c = sbs[(sbs.condition == condition) & (sbs.budget == budget)]
    return (majority(c.combined, BITES, (BELOW, BLOCKED)),
            f"{_counts(c.combined)} of {len(c)} architectures")


# ---------------------------------------------------------------------------------------------
# everything the notebook glues
def _f(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else math.nan


def _fmt_interval(m, lo, hi, digits=3) -> str:
    if not math.isfinite(m):
        return "not estimated"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{m:.{digits}f} nats"
    return f"{m:.{digits}f} nats (95% interval {lo:.{digits}f} to {hi:.{digits}f})"


def _fmt_g(m, lo, hi) -> str:
    if not math.isfinite(m):
        return "not estimated"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{m:.2g} nats"
    return f"{m:.2g} nats (95% interval {lo:.2g} to {hi:.2g})"


def _archs_with(df: pd.DataFrame, col: str, value: str) -> str:
    a = df.loc[df[col] == value, "arch"].tolist()
    return ", ".join(a) if a else "none"


def settings_thresholds(slack: pd.DataFrame, settings: pd.DataFrame, ref: tuple[int, int],
                        n_seeds: int, n_boot: int) -> pd.DataFrame:
    """Thresholds at the reference architecture for every training setting, the default taken
    from the main runs with the same seeds (and therefore the same initial weights and data)."""
    w, d = ref
    base = slack[(slack.start == "scratch") & (slack.width == w) & (slack.depth == d)
                 & (slack.seed < n_seeds)]
    return thresholds(pd.concat([base, settings], ignore_index=True), n_boot=n_boot)


def task_checks(check: pd.DataFrame, gaps: pd.DataFrame) -> dict:
    """How far the sampled construction is from the one set: the largest absolute difference
    of each checked share, and the largest in binomial standard errors."""
    g = check.merge(gaps[["gap_index", "p_disagree", "bayes_reliance"]], on="gap_index",
                    suffixes=("", "_set"))
    n = g.n.astype(float)
    z = []
    for obs, exp, m in ((g.agree_better, g.expected_agree_better, n),
                        (g.agree_worse, g.expected_agree_worse, n),
                        (g.p_disagree, g.p_disagree_set, n),
                        (g.follow_better, g.bayes_reliance, n * g.p_disagree_set)):
        se = np.sqrt(exp * (1 - exp) / m)
        z.append(((obs - exp).abs() / se).max())
    return dict(task_dev_agree=float(max((g.agree_better - g.expected_agree_better).abs().max(),
                                         (g.agree_worse - g.expected_agree_worse).abs().max())),
                task_dev_disagree=float((g.p_disagree - g.p_disagree_set).abs().max()),
                task_dev_follow=float((g.follow_better - g.bayes_reliance).abs().max()),
                task_max_z=float(max(z)), task_samples=int(check.n.iloc[0]))


def coin_flip(pref: pd.DataFrame, budget: int) -> dict:
    """At zero gap (default setting, scratch, final budget): the share that ends on the
    designated "better" block, pooled and per architecture, and how many architectures have a
    Wilson interval that includes 1/2."""
    c = pref[(pref.setting == "default") & (pref.start == "scratch") & (pref.budget == budget)
             & (pref.gap == 0)]
    k, n = int(c.n_better.sum()), int(c.n_learned.sum())
    sh, lo, hi = _wilson(k, n)
    ok = int(((c.share_lo <= 0.5) & (c.share_hi >= 0.5)).sum())
    return dict(coin_k=k, coin_n=n, coin_archs_ok=ok, coin_archs=len(c),
                coin_txt=(f"{num(sh, '.2f')} (95% interval {num(lo, '.2f')} to {num(hi, '.2f')})"
                          if n else "n/a"))


def analyse(tables: dict, params: dict) -> Findings:
    """Every glued value and derived table of the chapter, from the saved tables."""
    need = ["gaps", "task_check", "tax", "slack", "settings"]
    missing = [n for n in need if n not in tables]
    if missing:
        raise KeyError(f"analysis of {CHAPTER} needs tables {missing}")
    budget = int(params["steps"])
    ref = (int(params["ref_arch"][0]), int(params["ref_arch"][1]))
    n_boot = int(params["n_boot"])
    gaps, slack, tax = tables["gaps"], tables["slack"], tables["tax"]
    pref = preference_cells(pd.concat([slack, tables["settings"]], ignore_index=True), gaps)
    thr = thresholds(slack, n_boot=n_boot)
    sthr = settings_thresholds(slack, tables["settings"], ref, int(params["setting_seeds"]), n_boot)
    tc = tax_cells(tax)
    pc = path_cells(slack, thr, budget)
    sbs = side_by_side(tc, thr, pc)
    out = Findings(tables=dict(preference=pref, thresholds=thr, settings_thresholds=sthr,
                               tax_cells=tc, path_cells=pc, side_by_side=sbs))
    glue = out.glue
    glue.update(task_checks(tables["task_check"], gaps))
    glue.update(coin_flip(pref, budget))
    glue.update(_design_glue(params, gaps, tc))
    v = {}
    for cond in EXTRA:
        v[f"tax_{cond}"] = verdict_tax(tc, cond, budget)
        v[f"combined_{cond}"] = verdict_combined(sbs, cond, budget)
    v["slack"] = verdict_slack(thr, budget)
    v["path"] = verdict_path(pc)
    for key, (lab, why) in v.items():
        glue[f"verdict_{key}"] = lab
        glue[f"reason_{key}"] = why
    for i, r in enumerate(SLACK_REF_ALT):
        glue[("verdict_slack_alt_low", "verdict_slack_alt_high")[i]] = verdict_slack(thr, budget, r)[0]
    glue.update(_tax_glue(tc, ref, budget))
    glue.update(_slack_glue(thr, pref, ref, budget))
    glue.update(_settings_glue(sthr, tc, ref, budget))
    glue.update(_path_glue(pc))
    glue.update(_combined_glue(sbs, budget))
    out.tables["ledger"] = ledger(glue, v, tc, thr, pc, sbs, ref, budget)
    # the chapter's overall label (read by the book where a chapter has no ledger rows, and by
    # the quick-book test): supports / contradicts only when every ledger row says so
    led = out.tables["ledger"]
    glue["verdict"] = stats.Verdict.combine(stats.Verdict(x, "") for x in led.verdict).label
    glue["verdict_reason"] = " ".join(f"{i.removeprefix('07-')}: {x}." for i, x in zip(led.id, led.verdict))
    out.glue = sanitise(glue)
    return out


def _design_glue(params: dict, gaps: pd.DataFrame, tc: pd.DataFrame) -> dict:
    archs = [arch_name(w, d) for w, d in params["archs"]]
    g0 = gaps[gaps.gap == 0].iloc[0]
    pos = gaps[gaps.gap > 0]
    return dict(n_archs=len(archs), archs_txt=", ".join(archs),
                gaps_txt=", ".join(f"{g:g}" for g in gaps.gap),
                budgets_txt=", ".join(f"{int(b):,}" for b in params["budgets"]),
                steps_txt=f"{int(params['steps']):,}", pretrain_txt=f"{int(params['pretrain_steps']):,}",
                seeds_txt=str(int(params["seeds"])), path_seeds_txt=str(int(params["path_seeds"])),
                tax_seeds_txt=str(int(params["tax_seeds"])),
                setting_seeds_txt=str(int(params["setting_seeds"])),
                lr_txt=f"{float(params['lr']):g}", batch_txt=str(int(params["batch"])),
                n_bits=int(params["n_bits"]), k_bits=int(params["k"]),
                k_check=int(params["k_check"]), k_product=int(params["k"]) + int(params["k_check"]),
                eps_better=float(params["eps_better"]),
                gap_max=float(gaps.gap.max()),
                single_gap_max=float(gaps.single_feature_gap.max()),
                single_ratio_median=float(np.median(pos.single_feature_gap / pos.gap)) if len(pos) else math.nan,
                eps_worse_max=float(gaps.eps_worse.max()),
                floor=float(g0.bayes_loss), single_loss=float(_single_loss(g0.eps_better)),
                ref_arch_txt=arch_name(*params["ref_arch"]), slack_ref=SLACK_REF,
                slack_ref_low=SLACK_REF_ALT[0], slack_ref_high=SLACK_REF_ALT[1],
                tax_negligible=TAX_NEGLIGIBLE, stuck_loss=STUCK_LOSS, check_acc_min=CHECK_ACC)


def _single_loss(eps: float) -> float:
    from .task import entropy
    return float(entropy(eps))


def num(x, spec: str = ".3g") -> str:
    """A number as text for the prose, ``n/a`` when it could not be estimated."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return f"{x:{spec}}" if math.isfinite(x) else "n/a"


def _range_txt(df: pd.DataFrame, col: str, spec: str = ".2g") -> str:
    """``from X nats (arch) to Y nats (arch)`` over the finite values of ``col``."""
    d = df[np.isfinite(df[col].astype(float))]
    if not len(d):
        return "not estimated at any architecture"
    lo, hi = d.loc[d[col].idxmin()], d.loc[d[col].idxmax()]
    return f"from {num(lo[col], spec)} nats ({lo.arch}) to {num(hi[col], spec)} nats ({hi.arch})"


def _tax_glue(tc: pd.DataFrame, ref, budget) -> dict:
    out = {}
    c = tc[tc.budget == budget]
    for cond in EXTRA:
        cc = c[c.condition == cond]
        r = cc[(cc.width == ref[0]) & (cc.depth == ref[1])]
        m, lo, hi = (r[["tax", "tax_lo", "tax_hi"]].iloc[0] if len(r) else (math.nan,) * 3)
        out[f"tax_{cond}_ref"], out[f"tax_{cond}_ref_lo"], out[f"tax_{cond}_ref_hi"] = _f(m), _f(lo), _f(hi)
        out[f"tax_{cond}_ref_txt"] = _fmt_interval(m, lo, hi)
        out[f"tax_{cond}_range_txt"] = _range_txt(cc, "tax")
        out[f"tax_{cond}_taxed_archs"] = _archs_with(cc, "label", TAXED)
        out[f"tax_{cond}_n_check_failed"] = int(cc.n_check_failed.sum())
        out[f"tax_{cond}_n_extra_stuck"] = int(cc.n_extra_stuck.sum())
    out["tax_n_plain_stuck"] = int(c[c.condition == "overhead"].n_plain_stuck.sum())
    out["tax_n_pairs"] = int(c[c.condition == "overhead"].n_pairs.sum())
    sd = c[c.condition == "overhead"].plain_sd
    out["op_slack_txt"] = f"{num(sd.min(), '.2g')} to {num(sd.max(), '.2g')} nats"
    return out


def _slack_glue(thr: pd.DataFrame, pref: pd.DataFrame, ref, budget) -> dict:
    out = {}
    t = thr[(thr.setting == "default") & (thr.budget == budget)]
    r = t[(t.width == ref[0]) & (t.depth == ref[1])]
    row = r.iloc[0] if len(r) else None
    for name in ("d90_ideal", "d90_real"):
        vals = [row[name], row[f"{name}_lo"], row[f"{name}_hi"]] if row is not None else [math.nan] * 3
        out[f"{name}_ref"], out[f"{name}_ref_lo"], out[f"{name}_ref_hi"] = map(_f, vals)
        out[f"{name}_ref_txt"] = _fmt_g(*vals)
    fitted = t[t.status == "fitted"]
    out["d90_range_txt"] = _range_txt(fitted, "d90_ideal")
    out["d90_beyond_archs"] = ", ".join(fitted.arch[fitted.beyond_grid.astype(bool)]) or "none"
    out["d90_floor_archs"] = ", ".join(fitted.arch[fitted.at_grid_floor.astype(bool)]) or "none"
    out["n_not_learned"] = int((t.status != "fitted").sum())
    out["slack_resolved_archs"] = ", ".join(
        a for a, lo, hi in zip(t.arch, t.d90_ideal_lo, t.d90_ideal_hi)
        if slack_label(lo, hi) == RESOLVED) or "none"
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (fitted.d90_real / fitted.d90_ideal).astype(float)
        iso = np.abs(np.log((fitted.d90_isotonic / fitted.d90_ideal).astype(float)))
        clear = (fitted.d90_clear / fitted.d90_ideal).astype(float)
    ratio, iso, clear = (v[np.isfinite(v)] for v in (ratio, iso, clear))
    out["real_ratio_txt"] = (f"{num(ratio.min(), '.2g')} to {num(ratio.max(), '.2g')}"
                             if len(ratio) else "n/a")
    out["fit_max_dev_txt"] = num(fitted.fit_max_dev.max(), ".2f") if len(fitted) else "n/a"
    out["iso_factor_txt"] = num(np.exp(iso.max()), ".2g") if len(iso) else "n/a"
    out["clear_ratio_txt"] = num(np.median(clear), ".2g") if len(clear) else "n/a"
    # commitment at zero gap: share of runs clearly on one block (reliance outside 0.4..0.6)
    z = pref[(pref.setting == "default") & (pref.start == "scratch") & (pref.budget == budget)
             & (pref.gap == 0)].copy()
    z["commit"] = z.share_clear_better + z.share_clear_worse
    z["arch"] = [arch_name(w, d) for w, d in zip(z.width, z.depth)]
    out["commit_range_txt"] = (_range_txt(z, "commit", ".2f").replace(" nats", "")
                               if len(z) else "not measured")
    # per budget at the reference architecture
    rb = thr[(thr.setting == "default") & (thr.width == ref[0]) & (thr.depth == ref[1])
             & (thr.status == "fitted")].sort_values("budget")
    out["ref_first_txt"] = (f"{num(rb.d90_ideal.iloc[0], '.2g')} nats after "
                            f"{int(rb.budget.iloc[0]):,} steps" if len(rb) else "not estimated")
    shrink = 0
    for _, g in thr[(thr.setting == "default") & (thr.status == "fitted")].groupby(["width", "depth"]):
        g = g.sort_values("budget")
        if len(g) > 1 and g.d90_ideal.iloc[-1] < g.d90_ideal.iloc[0]:
            shrink += 1
    out["n_archs_shrink"] = shrink
    return out


def _settings_glue(sthr: pd.DataFrame, tc: pd.DataFrame, ref, budget) -> dict:
    s = sthr[(sthr.budget == budget) & (sthr.status == "fitted")].copy()
    s["arch"] = s.setting
    tr = tc[(tc.budget == budget) & (tc.width == ref[0]) & (tc.depth == ref[1])
            & (tc.condition == "overhead")]
    tax_lo = float(tr.tax_lo.iloc[0]) if len(tr) else math.nan
    over = s[s.d90_real_hi >= tax_lo] if math.isfinite(tax_lo) else s.iloc[0:0]
    return dict(n_settings=int(sthr.setting.nunique()), n_settings_fitted=int(len(s)),
                settings_range_txt=_range_txt(s, "d90_real"),
                settings_reach_tax=", ".join(over.setting) or "none")


def _path_glue(pc: pd.DataFrame) -> dict:
    ev = pc[pc.label != NOT_EVALUABLE]
    k, n = int(ev.n_switched.sum()), int(ev.n.sum())
    sh, lo, hi = _wilson(k, n)
    return dict(path_share=_f(sh), path_lo=_f(lo), path_hi=_f(hi), path_k=k, path_n=n,
                path_share_txt=(f"{num(sh, '.2f')} (95% interval {num(lo, '.2f')} to "
                                f"{num(hi, '.2f')})" if n else "n/a"),
                path_locked_archs=_archs_with(pc, "label", LOCKED),
                path_free_archs=_archs_with(pc, "label", FREE),
                path_unclear_archs=_archs_with(pc, "label", UNCLEAR),
                path_n_evaluable=len(ev),
                path_stay_zero_txt=num(pc.stay_at_zero.mean(), ".2f") if len(pc) else "n/a")


def _combined_glue(sbs: pd.DataFrame, budget) -> dict:
    out = {}
    for cond in EXTRA:
        c = sbs[(sbs.condition == cond) & (sbs.budget == budget)]
        out[f"combined_{cond}_bites"] = int((c.combined == BITES).sum())
        out[f"combined_{cond}_bites_archs"] = _archs_with(c, "combined", BITES)
        out[f"combined_{cond}_below_archs"] = _archs_with(c, "combined", BELOW)
        out[f"combined_{cond}_blocked_archs"] = _archs_with(c, "combined", BLOCKED)
        out[f"combined_{cond}_unclear_archs"] = _archs_with(c, "combined", UNCLEAR)
        out[f"combined_{cond}_n"] = len(c)
        ratio = c.ratio[np.isfinite(c.ratio.astype(float))]
        out[f"combined_{cond}_ratio_txt"] = (f"{num(ratio.min(), '.2g')} to {num(ratio.max(), '.2g')}"
                                             if len(ratio) else "n/a")
    return out


def sanitise(glue: dict) -> dict:
    """Non-finite numbers (a quantity that could not be estimated) become the text ``n/a``;
    the prose shows such quantities only through text keys."""
    return {k: ("n/a" if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in glue.items()}


def ledger(glue: dict, v: dict, tc, thr, pc, sbs, ref, budget) -> pd.DataFrame:
    """One row per verdict of the chapter (see :data:`countingargs.report.LEDGER_COLUMNS`)."""
    refn = arch_name(*ref)
    rows = []
    quotes = {
        "overhead": ("using up cognitive resources", "Carlsmith, reply to Turner (report, section 4.4)"),
        "gated": ("SGD will punish the extra reasoning", "Carlsmith, reply to Pope (report, section 4.4)"),
    }
    for cond, what in (("overhead", "even one the output ignores"),
                       ("gated", "one the output must pass through")):
        q, src = quotes[cond]
        rows.append(report.ledger_row(
            id=f"07-tax-{cond}", chapter=CHAPTER,
            claim=f"Computing an extra quantity with the same layers, {what}, raises the main-task "
                  "loss of a network of fixed width and depth (the speed cost of a schemer's "
                  "extra reasoning).",
            who="Carlsmith", quote=q, source=src,
            version=f"tax half, {'pure overhead' if cond == 'overhead' else 'the output reads the check'}",
            claim_side=report.SCEPTIC,
            effect_name=f"main-task loss penalty at {refn} ({cond} minus plain, same initial weights, "
                        f"{budget} steps)",
            effect=glue[f"tax_{cond}_ref"], effect_lo=glue[f"tax_{cond}_ref_lo"],
            effect_hi=glue[f"tax_{cond}_ref_hi"], units="nats of held-out loss",
            verdict=v[f"tax_{cond}"][0],
            finding=f"The {cond} tax is {glue[f'tax_{cond}_ref_txt']} at {refn}; over the "
                    f"architectures it runs {glue[f'tax_{cond}_range_txt']}; "
                    f"{v[f'tax_{cond}'][1]}.",
            figure=FIG_TAX))
    rows.append(report.ledger_row(
        id="07-slack-scratch", chapter=CHAPTER,
        claim=f"Between two equally learnable solutions, training ends on the lower-loss one in "
              f"90% of runs once their loss gap is below {SLACK_REF:g} nats.",
        who="Carlsmith", quote="SGD will get the model that it prefers overall",
        source="Carlsmith, reply to Pope (report, section 1.5)",
        version="slack half, from scratch (ideal gap between the best solution and its mirror)",
        claim_side=report.SCEPTIC,
        effect_name=f"slack threshold at {refn}: the gap at which 90% of runs end on the better "
                    f"solution ({budget} steps)",
        effect=glue["d90_ideal_ref"], effect_lo=glue["d90_ideal_ref_lo"],
        effect_hi=glue["d90_ideal_ref_hi"], units="nats of held-out loss (ideal gap)",
        verdict=v["slack"][0],
        finding=f"The threshold is {glue['d90_ideal_ref_txt']} at {refn}; over the "
                f"architectures it runs {glue['d90_range_txt']}; {v['slack'][1]}.",
        figure=FIG_PREF))
    rows.append(report.ledger_row(
        id="07-slack-path", chapter=CHAPTER,
        claim="Pre-training on the worse of two solutions does not keep a network on it once "
              "the loss gap is one that training prefers from scratch.",
        who="Carlsmith", quote="path-dependence/slack at stake in training",
        source="Carlsmith, reply to Pope",
        version="slack half, path dependence (pre-trained on the worse solution)",
        claim_side=report.SCEPTIC,
        effect_name="share of pre-trained runs ending on the better solution at gaps at or above "
                    "each architecture's threshold (pooled)",
        effect=glue["path_share"], effect_lo=glue["path_lo"], effect_hi=glue["path_hi"],
        units="share of runs",
        verdict=v["path"][0],
        finding=f"{glue['path_k']} of {glue['path_n']} pre-trained runs switched to the better "
                f"solution; locked in at {glue['path_locked_archs']}; {v['path'][1]}.",
        figure=FIG_PATH))
    for cond in EXTRA:
        n = glue[f"combined_{cond}_n"]
        k = glue[f"combined_{cond}_bites"]
        sh, lo, hi = _wilson(k, n) if n else (math.nan,) * 3
        rows.append(report.ledger_row(
            id=f"07-combined-{cond}", chapter=CHAPTER,
            claim="The loss cost of extra reasoning exceeds the gap training needs to prefer the "
                  "better solution, and pre-training does not lock the worse one in, so training "
                  "would select against the extra reasoning.",
            who="Carlsmith", quote="the strongest single argument against scheming",
            source="Carlsmith, reply to Pope",
            version=f"combined argument, {cond} tax against the realised slack threshold, per "
                    "architecture",
            claim_side=report.SCEPTIC,
            effect_name="share of architectures where the tax lies above the slack threshold "
                        "without lock-in",
            effect=sh, effect_lo=lo, effect_hi=hi,
            units="share of architectures (Wilson interval; exact count in the finding)",
            verdict=v[f"combined_{cond}"][0],
            finding=f"The speed argument bites at {k} of {n} architectures "
                    f"({glue[f'combined_{cond}_bites_archs']}); the tax is below the threshold at "
                    f"{glue[f'combined_{cond}_below_archs']}; blocked by lock-in at "
                    f"{glue[f'combined_{cond}_blocked_archs']}.",
            figure=FIG_SIDE))
    return report.ledger_table(rows)
