"""Figures of chapter 07, drawn from saved tables only (``python -m countingargs replot``)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import norm

from ...figures import figure
from . import analysis as A

COND_STYLE = {"overhead": dict(marker="o", color="C0", label="tax: overhead (check ignored)"),
              "gated": dict(marker="s", color="C3", label="tax: gated (output reads the check)")}
THR_STYLE = dict(marker="D", color="C2", label="slack threshold (realised gap)")


def n_params(width: int, depth: int, n_bits: int, n_out: int = 1) -> int:
    """Parameters of one MLP ``n_bits -> width x depth -> n_out``."""
    sizes = [n_bits] + [width] * depth + [n_out]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def _archs(params) -> list[tuple[int, int]]:
    return sorted(((int(w), int(d)) for w, d in params["archs"]),
                  key=lambda a: (n_params(a[0], a[1], int(params["n_bits"])), a[1]))


def _arch_ticks(ax, archs, params):
    ax.set_xticks(range(len(archs)))
    ax.set_xticklabels([f"{w}x{d}\n{n_params(w, d, int(params['n_bits']))}" for w, d in archs],
                       fontsize=8)
    ax.set_xlabel("architecture (width x depth) and parameters")


def _yerr(m, lo, hi):
    m, lo, hi = (np.asarray(v, dtype=float) for v in (m, lo, hi))
    return np.vstack([np.where(np.isfinite(lo), m - lo, 0), np.where(np.isfinite(hi), hi - m, 0)])


def _symlog(ax, linthresh=1e-3):
    ax.set_yscale("symlog", linthresh=linthresh)
    ax.axhline(0, color="0.5", lw=0.8)


def _value_axis(ax, values, linthresh: float) -> str:
    """A log y axis when every finite value drawn is positive, else a symmetric-log one (so no
    point or interval end is dropped silently); returns the label suffix naming a symlog axis."""
    v = np.asarray(pd.concat([pd.Series(x, dtype=float) for x in values]), dtype=float)
    v = v[np.isfinite(v)]
    if len(v) and (v > 0).all():
        ax.set_yscale("log")
        return ""
    _symlog(ax, linthresh)
    return " (symmetric-log axis)"


def _note_if_empty(ax, *values) -> None:
    """Say so in the panel when none of ``values`` is finite (cells not learned, as at quick
    settings), instead of leaving an empty axis."""
    if not any(np.isfinite(np.asarray(v, dtype=float)).any() for v in values):
        ax.text(0.5, 0.5, "nothing to draw: no cell was learned\nwithin this step budget",
                transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.3")


def _gap_x(gaps: np.ndarray, g_min: float) -> np.ndarray:
    """x positions on a log axis, zero drawn half a decade left of the smallest positive gap."""
    g = np.asarray(gaps, dtype=float)
    return np.where(g > 0, g, g_min / 10 ** 0.75)


def _gap_axis(ax, g_min, g_max):
    ax.set_xscale("log")
    ax.set_xlim(g_min / 10 ** 1.0, g_max * 2)
    ticks = [g_min / 10 ** 0.75] + [10.0 ** e for e in range(int(math.floor(math.log10(g_min))),
                                                               int(math.ceil(math.log10(g_max))) + 1)
                                    if g_min <= 10.0 ** e <= g_max * 1.01]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0"] + [f"{t:g}" for t in ticks[1:]], fontsize=8)
    ax.minorticks_off()


def _share_panels(params):
    """One panel per architecture for shares against the gap: ``fig, axes, archs, g_min, g_max``."""
    archs = _archs(params)
    pos = np.array([g for g in params["gaps"] if g > 0])
    ncol = min(4, len(archs))
    nrow = math.ceil(len(archs) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.3 * nrow + 0.4), sharey=True,
                             squeeze=False, layout="constrained")
    return fig, axes, archs, pos.min(), pos.max()


def _finish_share_panels(fig, axes, n_used, g_min, g_max, ncol):
    for ax in axes.flat[:n_used]:
        _gap_axis(ax, g_min, g_max)
        ax.set_ylim(-0.02, 1.05)
    for ax in axes.flat[n_used:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("share on better")
    for ax in axes[-1, :]:
        ax.set_xlabel("gap (nats)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)
    return fig


@figure("speed-tax")
def tax(tables, params):
    """The tax per architecture at the final budget (paired t-intervals), with the spread of the
    plain networks' loss over seeds."""
    tc = tables["tax_cells"]
    budget = int(params["steps"])
    archs = _archs(params)
    fig, ax = plt.subplots(figsize=(7.5, 3.8), layout="constrained")
    for j, cond in enumerate(A.EXTRA):
        c = tc[(tc.condition == cond) & (tc.budget == budget)].set_index(["width", "depth"])
        c = c.reindex(archs)
        x = np.arange(len(archs)) + (j - 0.5) * 0.2
        ax.errorbar(x, c.tax, yerr=_yerr(c.tax, c.tax_lo, c.tax_hi), ls="none", capsize=3,
                    **COND_STYLE[cond])
    c = tc[(tc.condition == "overhead") & (tc.budget == budget)].set_index(["width", "depth"]).reindex(archs)
    ax.plot(np.arange(len(archs)) + 0.3, c.plain_sd, "x", color="0.4",
            label="spread of plain networks' loss over seeds (SD)")
    _note_if_empty(ax, tc[tc.budget == budget].tax)
    _symlog(ax)
    _arch_ticks(ax, archs, params)
    ax.set_ylabel("main-task loss penalty (nats, held-out)")
    ax.set_title(f"Tax of computing the check with the same layers, {budget} steps", fontsize=10)
    ax.legend(loc="upper right", frameon=False)
    return fig


@figure("speed-preference")
def preference(tables, params):
    """Share of runs ending on the better solution against the gap, one panel per architecture,
    with the fitted probit curve and the threshold."""
    pref, thr = tables["preference"], tables["thresholds"]
    budget = int(params["steps"])
    fig, axes, archs, g_min, g_max = _share_panels(params)
    for ax, (w, d) in zip(axes.flat, archs):
        c = pref[(pref.setting == "default") & (pref.start == "scratch") & (pref.budget == budget)
                 & (pref.width == w) & (pref.depth == d)].sort_values("gap")
        x = _gap_x(c.gap.values, g_min)
        ax.errorbar(x, c.share, yerr=_yerr(c.share, c.share_lo, c.share_hi), fmt="o", ms=4,
                    capsize=2, color="C0", label="runs on the better solution")
        t = thr[(thr.setting == "default") & (thr.budget == budget) & (thr.width == w) & (thr.depth == d)]
        if len(t) and t.status.iloc[0] == "fitted":
            gg = np.geomspace(g_min / 3, g_max * 1.5, 200)
            ax.plot(gg, norm.cdf(gg / t.tau.iloc[0]), color="C1", lw=1.2, label="probit fit")
            ax.axvline(t.d90_ideal.iloc[0], color="C2", ls="--", lw=1, label="threshold (90%)")
        stuck = int(c.n_stuck.sum())
        ax.set_title(f"{w}x{d}" + (f" ({stuck} stuck)" if stuck else ""), fontsize=9)
        ax.axhline(A.LEVEL, color="0.6", lw=0.6, ls=":")
        ax.axhline(0.5, color="0.6", lw=0.6, ls=":")
    return _finish_share_panels(fig, axes, len(archs), g_min, g_max, ncol=3)


@figure("speed-reliance")
def reliance(tables, params):
    """(a) Graded reliance on the designated block at zero gap, one column per architecture (the
    coin flip, and whether runs commit to one block); (b) realised gap of trained networks
    against the ideal gap."""
    slack, pref = tables["slack"], tables["preference"]
    budget = int(params["steps"])
    archs = _archs(params)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained",
                               gridspec_kw=dict(width_ratios=[1.3, 1]))
    z = slack[(slack.start == "scratch") & (slack.budget == budget) & (slack.gap == 0)
              & (slack.loss < A.STUCK_LOSS)]
    rng = np.random.default_rng(0)
    for i, (w, d) in enumerate(archs):
        r = z[(z.width == w) & (z.depth == d)].reliance.values
        a.plot(i + rng.uniform(-0.18, 0.18, len(r)), r, "o", ms=3.5, alpha=0.7, color="C0")
    a.axhline(0.5, color="0.5", lw=0.8)
    for y in (A.CLEAR, 1 - A.CLEAR):
        a.axhline(y, color="0.6", lw=0.6, ls=":")
    _arch_ticks(a, archs, params)
    a.set_ylabel("reliance on the designated block")
    a.set_ylim(0, 1)
    a.set_title("(a) zero gap: one point per run", fontsize=10)
    c = pref[(pref.setting == "default") & (pref.start == "scratch") & (pref.budget == budget)
             & (pref.gap > 0)]
    for i, (w, d) in enumerate(archs):
        cc = c[(c.width == w) & (c.depth == d)].sort_values("gap")
        b.plot(cc.gap, cc.realised.clip(lower=1e-6), "o-", ms=3, color=f"C{i % 10}", label=f"{w}x{d}")
    pos = [g for g in params["gaps"] if g > 0]
    lim = [min(pos) / 2, max(pos) * 2]
    b.plot(lim, lim, color="0.5", lw=0.8, ls="--", label="realised = ideal")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlim(*lim)
    b.set_xlabel("ideal gap (nats)")
    b.set_ylabel("realised gap of trained networks (nats)")
    b.set_title("(b) the gap trained networks end with", fontsize=10)
    b.legend(fontsize=7, frameon=False, ncol=2, loc="upper left")
    return fig


@figure("speed-budget")
def budget(tables, params):
    """The realised slack threshold (left) and the overhead tax (right) against the step
    budget, one line per architecture."""
    thr, tc = tables["thresholds"], tables["tax_cells"]
    archs = _archs(params)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for i, (w, d) in enumerate(archs):
        t = thr[(thr.setting == "default") & (thr.width == w) & (thr.depth == d)
                & (thr.status == "fitted")].sort_values("budget")
        a.errorbar(t.budget * (1 + 0.03 * (i - len(archs) / 2)), t.d90_real,
                   yerr=_yerr(t.d90_real, t.d90_real_lo, t.d90_real_hi), marker="o", ms=3,
                   capsize=2, color=f"C{i % 10}", label=f"{w}x{d}")
        c = tc[(tc.width == w) & (tc.depth == d) & (tc.condition == "overhead")].sort_values("budget")
        b.errorbar(c.budget * (1 + 0.03 * (i - len(archs) / 2)), c.tax,
                   yerr=_yerr(c.tax, c.tax_lo, c.tax_hi), marker="o", ms=3, capsize=2,
                   color=f"C{i % 10}")
    bud = [int(x) for x in params["budgets"]]
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlim(min(bud) / 1.3, max(bud) * 1.3)
        ax.set_xticks(bud)
        ax.set_xticklabels([f"{x:,}" for x in bud], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("training steps")
    real = thr[(thr.setting == "default") & (thr.status == "fitted")]
    suffix = _value_axis(a, [real.d90_real, real.d90_real_lo, real.d90_real_hi], 1e-4)
    _symlog(b, 1e-3)
    _note_if_empty(a, real.d90_real)
    _note_if_empty(b, tc[tc.condition == "overhead"].tax)
    a.set_ylabel("nats (held-out loss)" + suffix)
    a.set_title("slack threshold (realised gap)", fontsize=10)
    b.set_title("tax (overhead; symmetric-log axis)", fontsize=10)
    a.legend(fontsize=7, frameon=False, ncol=2)
    return fig


@figure("speed-settings")
def settings(tables, params):
    """The realised slack threshold at the reference architecture for each training setting,
    next to that architecture's taxes."""
    s, tc = tables["settings_thresholds"], tables["tax_cells"]
    budget = int(params["steps"])
    w, d = (int(v) for v in params["ref_arch"])
    s = s[s.budget == budget]
    order = ["default"] + sorted(x for x in s.setting.unique() if x != "default")
    s = s.set_index("setting").reindex(order)
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    x = np.arange(len(order))
    ax.errorbar(x, s.d90_real, yerr=_yerr(s.d90_real, s.d90_real_lo, s.d90_real_hi), ls="none",
                capsize=3, **THR_STYLE)
    for cond in A.EXTRA:
        c = tc[(tc.width == w) & (tc.depth == d) & (tc.condition == cond) & (tc.budget == budget)]
        if len(c) and np.isfinite(c.tax.iloc[0]) and c.tax.iloc[0] > 0:
            ax.axhline(c.tax.iloc[0], color=COND_STYLE[cond]["color"], ls="--", lw=1,
                       label=COND_STYLE[cond]["label"] + f" at {w}x{d}")
    shown = [s.d90_real, s.d90_real_lo, s.d90_real_hi] + [ln.get_ydata() for ln in ax.get_lines()
                                                           if ln.get_linestyle() == "--"]
    suffix = _value_axis(ax, shown, 1e-4)
    _note_if_empty(ax, s.d90_real)
    ax.set_xticks(x)
    ax.set_xticklabels([o + ("\n(not learned)" if st != "fitted" else "")
                        for o, st in zip(order, s.status.fillna("missing"))],
                       rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("nats (held-out loss)" + suffix)
    ax.set_title(f"Slack threshold by training setting, {w}x{d}, {budget} steps", fontsize=10)
    fig.legend(loc="outside lower center", ncol=2, frameon=False, fontsize=7)
    return fig


@figure("speed-path")
def path(tables, params):
    """Share of runs on the better solution against the gap: from scratch and after
    pre-training on the worse solution, one panel per architecture."""
    pref = tables["preference"]
    budget = int(params["steps"])
    fig, axes, archs, g_min, g_max = _share_panels(params)
    for ax, (w, d) in zip(axes.flat, archs):
        for start, style in (("scratch", dict(color="C0", marker="o", mfc="C0")),
                             ("path", dict(color="C3", marker="o", mfc="white"))):
            c = pref[(pref.setting == "default") & (pref.start == start) & (pref.budget == budget)
                     & (pref.width == w) & (pref.depth == d)].sort_values("gap")
            if start == "path":
                c = c[c.gap.isin(params["path_gaps"])]
            ax.errorbar(_gap_x(c.gap.values, g_min), c.share,
                        yerr=_yerr(c.share, c.share_lo, c.share_hi), ms=4, capsize=2, lw=1,
                        label="from scratch" if start == "scratch" else "pre-trained on the worse",
                        **style)
        ax.axhline(0.5, color="0.6", lw=0.6, ls=":")
        ax.set_title(f"{w}x{d}", fontsize=9)
    return _finish_share_panels(fig, axes, len(archs), g_min, g_max, ncol=2)


@figure("speed-side-by-side")
def side(tables, params):
    """The tax and the realised slack threshold per architecture at the final budget."""
    sbs = tables["side_by_side"]
    budget = int(params["steps"])
    archs = _archs(params)
    fig, ax = plt.subplots(figsize=(7.5, 4.4), layout="constrained")
    for j, cond in enumerate(A.EXTRA):
        c = sbs[(sbs.condition == cond) & (sbs.budget == budget)].set_index(["width", "depth"]).reindex(archs)
        x = np.arange(len(archs)) + (j - 1) * 0.18
        ax.errorbar(x, c.tax, yerr=_yerr(c.tax, c.tax_lo, c.tax_hi), ls="none", capsize=3,
                    **COND_STYLE[cond])
        for xi, lab in zip(x, c.combined):
            if lab == A.BITES:
                ax.annotate("*", (xi, 1.0), xycoords=("data", "axes fraction"), ha="center",
                            va="top", color=COND_STYLE[cond]["color"], fontsize=12)
    c = sbs[(sbs.condition == "overhead") & (sbs.budget == budget)].set_index(["width", "depth"]).reindex(archs)
    x = np.arange(len(archs)) + 0.36
    ax.errorbar(x, c.d90_real, yerr=_yerr(c.d90_real, c.d90_real_lo, c.d90_real_hi), ls="none",
                capsize=3, **THR_STYLE)
    _note_if_empty(ax, sbs[sbs.budget == budget].tax, c.d90_real)
    _symlog(ax, 1e-4)
    _arch_ticks(ax, archs, params)
    ax.set_ylabel("nats (held-out loss)")
    ax.set_title(f"Tax and slack threshold side by side, {budget} steps "
                 "(* the speed argument bites)", fontsize=10)
    fig.legend(loc="outside lower center", ncol=3, frameon=False, fontsize=8)
    return fig
