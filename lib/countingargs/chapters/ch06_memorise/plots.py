"""Figures of chapter 06, drawn from the saved tables only."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
import pandas as pd

from ...figures import figure
from . import analysis as A

COND_COLOURS = {"memorise": "C1", "derive": "C0", "free": "C2"}


def _log2_axis(ax, Ks):
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(Ks), [str(int(k)) for k in Ks])
    ax.minorticks_off()


def _legend_below(fig, axes, ncol: int, dy: float, **kw):
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, dy),
               frameon=False, **kw)
    fig.tight_layout()
    return fig


def _routes(tables) -> pd.DataFrame:
    main = tables["main_networks"]
    return A.cell_routes(main[main.level == "main"])


@figure("memorise-routes")
def routes(tables, params):
    """Per difficulty k: what the free networks do as K grows (derive share, derivation index,
    held-out accuracy) and whether the derive-restricted networks generalise."""
    main = tables["main_networks"]
    main = main[main.level == "main"]
    cells = _routes(tables)
    ks = sorted(cells.k.unique())
    Ks = sorted(cells.K.unique())
    m = int(params["m"])
    fig, axes = plt.subplots(1, len(ks), figsize=(3.6 * len(ks), 3.4), sharey=True, squeeze=False)
    der = main[(main.condition == "derive") & main.reached.astype(bool)]
    der = der.groupby(["K", "k"]).heldout_acc.mean().reset_index()
    for ax, k in zip(axes[0], ks):
        c = cells[cells.k == k].sort_values("K")
        ax.axvspan(min(Ks) / 1.3, m, color="0.92", lw=0)
        ax.fill_between(c.K, c.derive_lo, c.derive_hi, color="C2", alpha=0.2, lw=0)
        ax.plot(c.K, c.derive_share, "o-", color="C2", label="share of free nets that derive")
        ax.errorbar(c.K, c.di, yerr=[c.di - c.di_lo.fillna(c.di), c.di_hi.fillna(c.di) - c.di],
                    fmt="s--", color="C4", ms=4, capsize=2, label="derivation index (mean)")
        ax.plot(c.K, c.heldout_acc, "^:", color="C3", ms=4, label="held-out accuracy, free")
        d = der[der.k == k].sort_values("K")
        ax.plot(d.K, d.heldout_acc, "v:", color="C0", ms=4, label="held-out accuracy, derive-only")
        ax.axhline(0.5, color="0.5", lw=0.8)
        _log2_axis(ax, Ks)
        ax.set_xlabel("training environments K (log scale)")
        ax.set_title(f"k = {k} (parity order of the derivation)")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("share / index / accuracy")
    axes[0][0].text(m, 0.02, f" K ≤ m = {m}", fontsize=7, ha="right", color="0.4")
    return _legend_below(fig, axes, 4, -0.08)


@figure("memorise-ablations")
def ablations(tables, params):
    """Graded reliance of the free networks: the loss each ablation costs (scrambling or
    zeroing the identifier or the description), per K and difficulty."""
    main = tables["main_networks"]
    free = main[(main.level == "main") & (main.condition == "free") & main.reached.astype(bool)]
    ks = sorted(free.k.unique())
    Ks = sorted(free.K.unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(3.6 * len(ks), 3.2), sharey=True, squeeze=False)
    styles = {"loss_scramble_id": ("C1", "-", "scramble identifier"),
              "loss_zero_id": ("C1", ":", "zero identifier"),
              "loss_scramble_desc": ("C0", "-", "scramble description"),
              "loss_zero_desc": ("C0", ":", "zero description")}
    for ax, k in zip(axes[0], ks):
        g = free[free.k == k]
        for col, (colour, ls, lab) in styles.items():
            cost = (g[col] - g["loss"]).groupby(g.K).mean()
            ax.plot(cost.index, cost.values, ls, marker="o", ms=3, color=colour, label=lab)
        _log2_axis(ax, Ks)
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_xlabel("training environments K (log scale)")
        ax.set_title(f"k = {k}")
    axes[0][0].set_ylabel("loss increase (half MSE)")
    return _legend_below(fig, axes, 4, -0.08)


#: row labels of the complexity figure (units in brackets)
SHORT = {"llc": "LLC", "fragility": "fragility (share)", "dist_init": "distance from init",
         "steps": "steps to the loss"}


@figure("memorise-complexity")
def complexity(tables, params):
    """Which route is simpler at matched training loss: the paired difference memorise - derive
    of each measure (positive: deriving is simpler or faster), per K and difficulty."""
    cplx = A.complexity_long(tables["main_networks"], tables["main_llc"], tables["main_volume"])
    ks = sorted(cplx.k.unique())
    Ks = sorted(cplx.K.unique())
    measures = list(A.MEASURES)
    fig, axes = plt.subplots(len(measures), len(ks), figsize=(3.5 * len(ks), 2.3 * len(measures)),
                             sharex=True, squeeze=False)
    for i, meas in enumerate(measures):
        levels = ["main", "alt"] if meas in ("llc", "dist_init", "steps") else ["main"]
        for level, marker, colour in zip(levels, ["o", "s"], ["C0", "C7"]):
            cells = A.cell_complexity(cplx, meas, level)
            for j, k in enumerate(ks):
                c = cells[cells.k == k].sort_values("K")
                ax = axes[i][j]
                lab = f"loss {'target' if level == 'main' else 'alternative level'}"
                ax.errorbar(c.K, c["diff"], yerr=[c["diff"] - c.diff_lo, c.diff_hi - c["diff"]],
                            fmt=marker + "-", color=colour, ms=4, capsize=2, label=lab)
                ax.axhline(0, color="0.3", lw=0.8)
                _log2_axis(ax, Ks)
                if i == 0:
                    ax.set_title(f"k = {k}")
                if j == 0:
                    ax.set_ylabel(f"{SHORT[meas]}:\nmemorise − derive", fontsize=8)
                if i == len(measures) - 1:
                    ax.set_xlabel("training environments K (log scale)")
    return _legend_below(fig, axes, 2, -0.03)


@figure("memorise-dual")
def dual(tables, params):
    """The dual problems with an explicit bias (coupled L2, long training): training loss
    against squared norm for each route as the weight decay varies, and where the free networks
    land (colour: derivation index)."""
    wd = tables["wd_networks"]
    wd = wd[wd.decay == "coupled"].copy()
    wd["di"] = A.derivation_index(wd.follow_desc, wd.heldout_acc)
    ks = sorted(wd.k.unique())
    Ks = sorted(wd.K.unique())
    fig, axes = plt.subplots(len(ks), len(Ks), figsize=(2.9 * len(Ks) + 1, 2.6 * len(ks) + 0.6),
                             squeeze=False, layout="constrained")
    sc = None
    for i, k in enumerate(ks):
        for j, K in enumerate(Ks):
            ax = axes[i][j]
            g = wd[(wd.k == k) & (wd.K == K)]
            for cond in ("memorise", "derive"):
                c = g[g.condition == cond].groupby("weight_decay")[["norm_sq", "loss"]].mean()
                ax.plot(c.norm_sq, c.loss, "o-", color=COND_COLOURS[cond], ms=4, label=f"{cond} only")
            f = g[g.condition == "free"]
            sc = ax.scatter(f.norm_sq, f.loss, c=f.di, cmap="viridis", vmin=0, vmax=1, s=14,
                            marker="x", label="free (colour: derivation index)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=8))
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                axis.set_minor_formatter(NullFormatter())
            ax.tick_params(labelsize=7)
            ax.set_title(f"K = {K}, k = {k}", fontsize=9)
            if j == 0:
                ax.set_ylabel("training loss")
            if i == len(ks) - 1:
                ax.set_xlabel("squared norm of the live weights")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False)
    if sc is not None:
        fig.colorbar(sc, ax=axes, shrink=0.6, label="derivation index of the free networks")
    return fig


@figure("memorise-robustness")
def robustness(tables, params):
    """Mean derivation index of the free networks per arm (optimiser, weight decay, width,
    identifier scale, loss level), per K and difficulty."""
    nets = pd.concat([tables["main_networks"], tables["side_networks"], tables["wd_networks"]],
                     ignore_index=True)
    cells = A.cell_routes(nets)
    cells["what"] = np.where(cells.level == "alt", cells.arm + " (alt. loss level)", cells.arm)
    ks = sorted(cells.k.unique())
    Ks = sorted(cells.K.unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(3.8 * len(ks), 3.4), sharey=True, squeeze=False)
    whats = sorted(cells.what.unique(), key=lambda w: (w != "main", w))
    for ax, k in zip(axes[0], ks):
        for n, w in enumerate(whats):
            c = cells[(cells.k == k) & (cells.what == w)].sort_values("K")
            ax.plot(c.K, c.di, marker="os^vD<>ph*"[n % 10], ms=4, lw=2.2 if w == "main" else 1,
                    color="k" if w == "main" else f"C{n % 10}", label=w)
        _log2_axis(ax, Ks)
        ax.set_title(f"k = {k}")
        ax.set_xlabel("training environments K")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("mean derivation index (free)")
    return _legend_below(fig, axes, 4, -0.16, fontsize=7)


@figure("memorise-llc-check")
def llc_check(tables, params):
    """The LLC estimator at this chapter's settings: toys with known coefficients, and the
    networks' LLC at the main and the alternative settings."""
    toys = tables["llc_toys"]
    sens = tables["llc_sensitivity"]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.5))
    ax = axes[0]
    t = toys.groupby("toy").agg(true=("true_lambda", "first"), est=("llc", "mean"),
                                sd=("llc", "std"), n=("llc", "size")).sort_values("true")
    x = np.arange(len(t))
    ax.bar(x - 0.2, t.true, 0.4, color="0.7", label="true λ")
    ax.bar(x + 0.2, t.est, 0.4, yerr=1.96 * t.sd / np.sqrt(t.n), color="C0", capsize=3,
           label="estimate (mean over chains)")
    ax.set_xticks(x, [s.replace("_", "\n") for s in t.index], fontsize=7)
    ax.set_ylabel("learning coefficient")
    ax.legend(fontsize=7)
    ax = axes[1]
    w = sens.pivot_table(index=["K", "k", "seed", "condition"], columns="setting", values="llc",
                         aggfunc="first").reset_index()
    for cond, colour in COND_COLOURS.items():
        g = w[w.condition == cond]
        ax.scatter(g["main"], g["alternative"], s=10, color=colour, label=cond)
    lim = [0, float(np.nanmax(w[["main", "alternative"]].values)) * 1.05]
    ax.plot(lim, lim, color="0.5", lw=0.8)
    ax.set_xlabel("LLC, main settings")
    ax.set_ylabel("LLC, alternative settings")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
