"""Figures of the llama chapter, each drawn from the saved tables only."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...figures import figure
from . import analysis


def _size_labels(sizes):
    order = sizes.sort_values(["n", "h"]).reset_index(drop=True)
    return order, [f"n={r.n}, H={r.h}" for r in order.itertuples()]


@figure("llama-counting")
def counting(tables, params):
    """Exact counts: class shares per target (left) and R_C, R_F per target (right), per size."""
    cnt = tables["counting"]
    order, labels = _size_labels(analysis.size_table(cnt))
    xs = np.arange(len(order))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    for k, (lab, c) in enumerate([("cancelled", "C3"), ("unread (spare capacity)", "C1")]):
        for i, r in enumerate(order.itertuples()):
            t = cnt[(cnt.n == r.n) & (cnt.h == r.h)]
            vals = t.share_cancelled if k == 0 else t.v_unread / t.v_total
            jitter = np.linspace(-0.12, 0.12, len(vals)) + (k - 0.5) * 0.3
            ax.scatter(i + jitter, vals, s=6, color=c, alpha=0.5, label=lab if i == 0 else None)
            ax.plot([i + (k - 0.5) * 0.3 - 0.15, i + (k - 0.5) * 0.3 + 0.15], [vals.mean()] * 2,
                    color="k", lw=1.5)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xticks(xs, labels, rotation=30, ha="right")
    ax.set_ylabel("share of the configurations implementing f")
    ax.set_title("share of each class, one dot per target f")
    ax.legend(loc="upper left")
    ax = axes[1]
    for i, r in enumerate(order.itertuples()):
        t = cnt[(cnt.n == r.n) & (cnt.h == r.h)]
        for col, c, off in (("log10_ratio_cancelled", "C3", -0.15), ("log10_ratio_free", "C0", 0.15)):
            v = t[col].dropna()
            ax.scatter(i + off + np.linspace(-0.08, 0.08, len(v)), v, s=6, color=c, alpha=0.5)
            ax.plot([i + off - 0.12, i + off + 0.12], [v.mean()] * 2, color="k", lw=1.5)
    ax.scatter([], [], color="C3", s=10, label="$R_C$: cancelled / not cancelled")
    ax.scatter([], [], color="C0", s=10, label="$R_F$: any extra / straightforward")
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks(xs, labels, rotation=30, ha="right")
    ax.set_ylabel("log10 volume ratio")
    ax.set_title("below 0: the llama class is smaller")
    ax.legend(loc="lower right")
    return fig


@figure("llama-sampling")
def sampling(tables, params):
    """Random 7-bit networks: shares per sampling stream (left), features per network (right)."""
    per_seed = analysis.seed_table(tables["sampling_networks"])
    sampled = tables["sampling_networks"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    for i, (grp, t) in enumerate(per_seed.groupby("group")):
        for j, (col, c, lab) in enumerate([("any_llama", "C0", "any exact llama unit"),
                                            ("any_fed_llama", "C3", "a llama unit feeds the output"),
                                            ("any_unfed_llama", "C1", "llama units feed nothing"),
                                            ("any_decodable", "C7", "some feature decodable (loose)")]):
            x = i + (j - 1.5) * 0.18
            ax.scatter(np.full(len(t), x), t[col], s=14, color=c, label=lab if i == 0 else None)
            ax.plot([x - 0.07, x + 0.07], [t[col].mean()] * 2, color="k", lw=1.5)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xticks([0, 1], ["constant output\n(the target)", "non-constant output\n(reference)"])
    ax.set_ylabel("fraction of networks")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7, loc="center right")
    ax.set_title("one dot per sampling seed")
    ax = axes[1]
    sc = sampled[sampled.group == "constant"]
    bins = np.arange(-0.5, max(sc.n_decodable.max(), 3) + 1.5,
                     max(1, int(sc.n_decodable.max() // 30)))
    ax.hist(sc.n_decodable, bins=bins, color="C7", alpha=0.7,
            label="decodable from a layer (loose test)")
    ax.hist(sc.n_distinct_g, bins=bins, color="C0", alpha=0.9,
            label="computed exactly by a unit (strict test)")
    ax.set_xlabel(f"family features per network (of {analysis._family_size(params)})")
    ax.set_ylabel("constant-output networks")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return fig


@figure("llama-llc-toys")
def llc_toys(tables, params):
    """Estimated against true learning coefficients of the toys, per setting."""
    s = analysis.toy_summary(tables["llc_toys"])
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for k, (setting, t) in enumerate(s.groupby("setting")):
        ax.errorbar(t.true_lambda + (k - 0.5) * 0.04, t.llc_mean, yerr=1.96 * t.llc_se, fmt="o",
                    ms=4, label=setting, color=f"C{k}")
    lim = [0, s.true_lambda.max() * 1.1]
    ax.plot(lim, lim, color="grey", lw=1, ls=":")
    ax.set_xlabel("true learning coefficient $\\lambda$")
    ax.set_ylabel("estimate (mean over chains)")
    ax.legend(fontsize=7)
    return fig


@figure("llama-encoding")
def encoding(tables, params):
    """Held-out probe R^2 of the llama and of control features, per condition."""
    enc = tables["trained"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for k, cond in enumerate(["plain", "llama"]):
        t = enc[(enc.condition == cond) & enc.reached]
        x = np.full(len(t), k) + np.linspace(-0.1, 0.1, len(t))
        ax.scatter(x - 0.15, t.r2_controls, s=10, color="C7",
                   label="controls (mean)" if k == 0 else None)
        ax.scatter(x - 0.15, t.r2_controls_q, s=10, color="C7", marker="^",
                   label="control groups, 95th percentile" if k == 0 else None)
        ax.scatter(x + 0.15, t.r2_llama, s=12, color="C3", label="the llama" if k == 0 else None)
    ax.axhline(float(enc.r2_input_llama.mean()), color="C0", ls=":", lw=1,
               label="linear read-out of the pixels (mean)")
    ax.set_xticks([0, 1], ["plain networks", "llama networks"])
    ax.set_ylabel("held-out probe $R^2$ (last hidden layer)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return fig


@figure("llama-trained")
def trained(tables, params):
    """LLC per setting and condition (left), surviving fraction against radius (right)."""
    llcs, vols = tables["llc"], tables["local_volume"]
    good = llcs[llcs.reached & ~llcs.diverged]
    wide = good.pivot_table(index=["setting", "seed"], columns="condition", values="llc").dropna()
    settings = good.groupby("setting")[["step_size", "localization"]].first()
    n_set = len(settings)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    for si, s in settings.iterrows():
        t = wide.loc[si]
        lab = f"step {s.step_size:g}, loc. {s.localization:g}" + (" (main)" if si == 0 else "")
        x = np.array([0, 1]) + (si - (n_set - 1) / 2) * 0.12
        for _, row in t.iterrows():
            ax.plot(x, [row.plain, row.llama], color=f"C{si}", lw=0.6, alpha=0.5)
        ax.scatter(x, [t.plain.mean(), t.llama.mean()], color=f"C{si}", s=25, zorder=3, label=lab)
    ax.set_xticks([0, 1], ["plain", "llama"])
    ax.set_ylabel("LLC estimate")
    ax.set_title("lines join the two networks of a seed")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    ax = axes[1]
    for k, cond in enumerate(["plain", "llama"]):
        t = vols[vols.reached & (vols.condition == cond)]
        for _, g in t.groupby("seed"):
            ax.plot(g.radius, g.fraction, color=f"C{k}", lw=0.6, alpha=0.4)
        m = t.groupby("radius").fraction.mean()
        ax.plot(m.index, m.values, color=f"C{k}", lw=2, marker="o", label=cond)
    ax.set_xlabel("perturbation radius (Euclidean, all parameters)")
    ax.set_ylabel(f"fraction keeping loss within +{params['vol_tol']:g}")
    ax.legend()
    return fig
