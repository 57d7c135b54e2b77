"""Chapter 02 (volume): figures, drawn from the saved tables only."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats as st

from ...figures import figure
from . import analysis

SETTING_COLOURS = {"main": "C0", "second": "C1"}


def _short(name: str, width: int = 18) -> str:
    return name if len(name) < width else name[:width - 4] + "…"


@figure("volume-prior")
def prior(tables, params):
    """log P(f) against LZ complexity and number of ones, rank-frequency per seed, and the
    complexity of a random network's function against uniformly random functions."""
    sc, top = tables["prior_scatter"], tables["prior_top"]
    rf, hist = tables["prior_rankfreq"], tables["prior_lz_hist"]
    L = 2 ** params["n_inputs"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    ax = axes[0, 0]
    ax.scatter(sc.lz, sc.logp, s=6, alpha=0.4)
    named = top[top.setting == "main"].drop_duplicates("rank").sort_values("rank").head(6)
    for j, r in enumerate(named.itertuples()):
        ax.annotate(_short(r.function), (r.lz, np.log10(r.p)), fontsize=7,
                    xytext=(6, 6 - 9 * (j % 2)), textcoords="offset points")
    ax.set(xlabel="Lempel-Ziv complexity of f", ylabel="log10 P(f)",
           title=f"main setting: the {len(sc)} most frequent functions")
    ax = axes[0, 1]
    ax.scatter(sc.ones, sc.logp, s=6, alpha=0.4)
    ax.set(xlabel=f"number of ones of f (out of {L})", ylabel="log10 P(f)",
           title="same functions vs number of ones")
    ax = axes[1, 0]
    for (setting, seed), d in rf.groupby(["setting", "seed"], sort=False):
        first = seed == rf[rf.setting == setting].seed.min()
        ax.loglog(d["rank"], d.p, color=SETTING_COLOURS.get(setting, "C2"), lw=0.8, alpha=0.6,
                  label=setting if first else None)
    ax.set(xlabel="rank of f", ylabel="P(f)", title="rank-frequency, one line per seed")
    ax.legend(loc="lower left")
    ax = axes[1, 1]
    bins = np.linspace(0, hist.lz.max() + 10, 40)
    for (setting, source), d in hist.groupby(["setting", "source"], sort=False):
        if source == "uniform" and setting != "main":
            continue
        label = "uniform random f" if source == "uniform" else f"random network ({setting})"
        colour = "k" if source == "uniform" else SETTING_COLOURS.get(setting, "C2")
        ax.hist(d.lz, bins=bins, weights=d["count"], density=True, histtype="step",
                color=colour, label=label)
    ax.set(xlabel="Lempel-Ziv complexity", ylabel="density",
           title="complexity of a random network's function")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


@figure("volume-sgd-scatter")
def sgd_scatter(tables, params):
    """P_SGD(f|S) against P_B(f|S) in the scatter seed, one panel per target and optimiser."""
    sc = tables["volume_vs_sgd_scatter"]
    cells = sc.groupby(["target", "optimiser"], sort=False)
    fig, axes = plt.subplots(1, len(cells), figsize=(3.3 * len(cells), 3.5), squeeze=False,
                             sharex=True, sharey=True)
    for ax, ((tname, oname), d) in zip(axes[0], cells):
        floor_b, floor_s = 0.5 / d.total_b.iloc[0], 0.5 / d.total_sgd.iloc[0]
        x = np.where(d.n_b > 0, d.n_b / d.total_b, floor_b)
        y = np.where(d.n_sgd > 0, d.n_sgd / d.total_sgd, floor_s)
        ax.scatter(x, y, s=10, alpha=0.5)
        lim = [min(floor_b, floor_s) / 1.5, 1]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set(xscale="log", yscale="log", xlim=lim, ylim=lim, xlabel="P_B(f|S)",
               ylabel="P_SGD(f|S)", title=f"{tname}, {oname}")
        ax.label_outer()
    fig.tight_layout()
    return fig


def _points_with_interval(ax, x, values, colour, label=None, offset=0.0):
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    ax.scatter(np.full(len(v), x + offset), v, s=12, color=colour, alpha=0.7, label=label)
    if len(v) >= 2:
        e, lo, hi = analysis.interval(v)
        ax.errorbar(x + offset + 0.12, e, yerr=[[e - lo], [hi - e]], fmt="o", color="k", capsize=3)


@figure("volume-sgd-summary")
def sgd_summary(tables, params):
    """Per seed and cell: rank correlation, log2 ratio of top-10 shares, off-S accuracy."""
    vs = analysis.top10_shares(tables["volume_vs_sgd"])
    lab = vs.target + "\n" + vs.optimiser
    order = list(dict.fromkeys(lab))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for i, o in enumerate(order):
        _points_with_interval(axes[0], i, vs[lab == o].spearman, "C0")
        _points_with_interval(axes[1], i, vs[lab == o].log2_ratio, "C0")
        _points_with_interval(axes[2], i, vs[lab == o].acc_pb, "C1", "volume" if i == 0 else None, -0.2)
        _points_with_interval(axes[2], i, vs[lab == o].acc_sgd, "C0", "SGD" if i == 0 else None, 0.1)
    axes[0].axhline(0, color="gray", ls=":")
    axes[1].axhline(0, color="gray", ls=":")
    axes[1].axhspan(-1, 1, color="gray", alpha=0.15)
    axes[2].axhline(0.5, color="gray", ls=":", label="counting")
    axes[2].legend(loc="lower right")
    for ax, ylabel in zip(axes, ["Spearman(log P_SGD, log P_B)",
                                 "log2(SGD share / volume share), top 10", "accuracy off S"]):
        ax.set_xticks(range(len(order)), order, fontsize=7)
        ax.set(xlabel="target and optimiser", ylabel=ylabel)
    fig.tight_layout()
    return fig


@figure("volume-count-vs-volume")
def count_vs_volume(tables, params):
    """Distribution of the off-S error under counting, volume and each optimiser."""
    err = tables["offset_error"]
    targets = list(dict.fromkeys(err.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.5 * len(targets), 3.4), squeeze=False)
    n_test = int(err.n_test.iloc[0])
    grid = np.arange(n_test + 1) / n_test
    sources = list(dict.fromkeys(err.source))
    for ax, tname in zip(axes[0], targets):
        ax.plot(grid, st.binom.pmf(np.arange(n_test + 1), n_test, 0.5), "k:",
                label="counting (uniform over consistent f)")
        for j, src in enumerate(sources):
            d = err[(err.target == tname) & (err.source == src)]
            h = d.groupby("errors").share.mean().reindex(range(n_test + 1), fill_value=0.0)
            ax.plot(grid, h.to_numpy(), drawstyle="steps-mid", color=f"C{j + 1}", label=src)
        ax.set(xlabel="off-S error of f", ylabel="probability", title=f"target {tname}")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


@figure("volume-guess-check")
def guess_check(tables, params):
    """Draws per fitting network, and test accuracy of guess-and-check and SGD networks."""
    gc = tables["guess_and_check"]
    sizes = sorted(gc.k.unique())
    growth = analysis.draws_per_fit(gc)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    ax = axes[0]
    for s, d in gc.groupby("seed"):
        ax.semilogy(d.k, d.draws / d.accepted.clip(lower=1), "o-", color="C0", alpha=0.5, lw=0.8)
    ax.semilogy(growth.index, growth.values, "ks-", label="geometric mean over seeds")
    ax.set(xlabel="training points", ylabel="draws per network that fits",
           title="cost of guess-and-check")
    ax.legend(loc="upper left")
    ax = axes[1]
    cols = [("acc_gc", "guess-and-check"), ("acc_sgd_first_fit", "SGD, first fit"),
            ("acc_sgd_low_loss", f"SGD, loss ≤ {params['gc_loss_target']:g}")]
    for j, (col, name) in enumerate(cols):
        means, los, his = [], [], []
        for k in sizes:
            v = gc[gc.k == k][col].dropna()
            ax.scatter(np.full(len(v), k + 0.15 * (j - 1)), v, color=f"C{j}", s=10, alpha=0.5)
            e, lo, hi = analysis.interval(v) if len(v) >= 2 else (np.nan,) * 3
            means.append(e), los.append(e - lo), his.append(hi - e)
        ax.errorbar(np.array(sizes) + 0.15 * (j - 1), means, yerr=[los, his], color=f"C{j}",
                    capsize=3, label=name)
    ax.set(xlabel="training points", ylabel="test accuracy", title="test accuracy of networks that fit")
    ax.legend(fontsize=7, loc="lower right")
    for ax in axes:
        ax.set_xticks(sizes)
    fig.tight_layout()
    return fig
