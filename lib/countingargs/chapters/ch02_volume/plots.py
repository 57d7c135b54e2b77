"""Chapter 02 (volume): figures, drawn from the saved tables only."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats as st

from ...figures import figure
from . import analysis

SETTING_COLOURS = {"main": "C0", "second": "C1", "tanh": "C2", "pm1-relu": "C3", "pm1-tanh": "C4"}
SETTING_LABELS = {"main": "ReLU, {0,1}", "second": "tanh, large σ_w, {0,1}", "tanh": "tanh, {0,1}",
                  "pm1-relu": "ReLU, {−1,+1}", "pm1-tanh": "tanh, {−1,+1}"}


def _short(name: str, width: int = 18) -> str:
    return name if len(name) < width else name[:width - 4] + "…"


def _legend_below(ax, ncol=2, y=-0.2):
    """The legend under the axes (below the x label), where it cannot hide data."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, y), ncol=ncol, frameon=False)


@figure("volume-prior")
def prior(tables, params):
    """log P(f) against LZ complexity and number of ones, rank-frequency per seed, and the
    complexity of a random network's function against uniformly random functions and random
    functions with the same number of ones."""
    sc, top = tables["prior_scatter"], tables["prior_top"]
    rf, hist = tables["prior_rankfreq"], tables["prior_lz_hist"]
    L = 2 ** params["n_inputs"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.6))
    ax = axes[0, 0]
    ax.scatter(sc.lz, sc.logp, s=6, alpha=0.4)
    named = top[top.setting == "main"].drop_duplicates("rank").sort_values("rank").head(6)
    for j, r in enumerate(named.itertuples()):
        ax.annotate(_short(r.function), (r.lz, np.log10(r.p)), fontsize=7,
                    xytext=(6, 6 - 9 * (j % 2)), textcoords="offset points")
    ax.set(xlabel="Lempel-Ziv complexity of f", ylabel="log10 P(f)",
           title=f"ReLU, {{0,1}}: the {len(sc)} most frequent functions")
    ax = axes[0, 1]
    ax.scatter(sc.ones, sc.logp, s=6, alpha=0.4)
    ax.set(xlabel=f"number of ones of f (out of {L})", ylabel="log10 P(f)",
           title="same functions vs number of ones")
    ax = axes[1, 0]
    for setting in ("main", "second"):
        for j, (seed, d) in enumerate(rf[rf.setting == setting].groupby("seed")):
            ax.loglog(d["rank"], d.p, color=SETTING_COLOURS[setting], lw=0.8, alpha=0.6,
                      label=SETTING_LABELS[setting] if j == 0 else None)
    ax.set(xlabel="rank of f", ylabel="P(f)", title="rank-frequency, one line per seed")
    _legend_below(ax)
    ax = axes[1, 1]
    bins = np.linspace(0, hist.lz.max() + 10, 40)
    styles = [("main", "network", SETTING_COLOURS["main"], "-", "random network, " + SETTING_LABELS["main"]),
              ("main", "ones-matched", SETTING_COLOURS["main"], ":", "same number of ones, shuffled"),
              ("second", "network", SETTING_COLOURS["second"], "-", "random network, " + SETTING_LABELS["second"]),
              ("main", "uniform", "k", "-", "uniform random f")]
    for setting, source, colour, ls, label in styles:
        d = hist[(hist.setting == setting) & (hist.source == source)]
        ax.hist(d.lz, bins=bins, weights=d["count"], density=True, histtype="step", color=colour,
                ls=ls, label=label)
    ax.set(xlabel="Lempel-Ziv complexity", ylabel="density",
           title="complexity of a random network's function")
    _legend_below(ax, ncol=1)
    fig.tight_layout()
    return fig


@figure("volume-lz-matched")
def lz_matched(tables, params):
    """Per prior setting: mean LZ complexity of the networks' functions, of the same functions
    with shuffled bits, and of uniformly random functions; and the number of ones."""
    seeds, ones = tables["prior_seeds"], tables["prior_ones_hist"]
    settings = list(dict.fromkeys(seeds.setting))
    L = 2 ** params["n_inputs"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    for i, setting in enumerate(settings):
        d = seeds[seeds.setting == setting]
        for col, off, marker, colour, label in (("lz_mean_prior", -0.15, "o", "C0", "random network"),
                                                ("lz_mean_matched", 0.15, "^", "C1",
                                                 "same number of ones, bits shuffled")):
            e, lo, hi = analysis.interval(d[col])
            ax.errorbar(i + off, e, yerr=[[e - lo], [hi - e]], fmt=marker, color=colour,
                        capsize=3, label=label if i == 0 else None)
    u = seeds.lz_mean_uniform.dropna().mean()
    ax.axhline(u, color="k", ls=":", label="uniform random f")
    ax.set_xticks(range(len(settings)), [SETTING_LABELS.get(s, s).replace(", ", "\n") for s in settings],
                  fontsize=8)
    ax.set(xlabel="prior setting (activation, σ_w, input encoding)", ylabel="mean Lempel-Ziv complexity",
           title="complexity with and without the number of ones")
    _legend_below(ax, ncol=2, y=-0.36)
    ax = axes[1]
    edges = np.concatenate([[-0.5], np.arange(0.5, L - 0.5, 8), [L - 0.5, L + 0.5]])
    for setting in settings:
        d = ones[ones.setting == setting]
        h, _ = np.histogram(d.ones, bins=edges, weights=d["count"])
        ax.stairs(h / h.sum(), edges, color=SETTING_COLOURS.get(setting, "C5"),
                  label=SETTING_LABELS.get(setting, setting))
    ax.set(xlabel=f"number of ones of f (out of {L}; constants alone, the rest in bins of 8)",
           ylabel="share of random networks", yscale="log",
           title="how balanced a random network's function is")
    _legend_below(ax, ncol=2, y=-0.2)
    fig.tight_layout()
    return fig


@figure("volume-sgd-scatter")
def sgd_scatter(tables, params):
    """P_SGD(f|S) against P_B(f|S) in the scatter seed, one panel per target and optimiser of
    the main setting."""
    sc = tables["volume_vs_sgd_scatter"]
    sc = sc[sc.setting == "main"]
    targets, opts = list(dict.fromkeys(sc.target)), list(dict.fromkeys(sc.optimiser))
    fig, axes = plt.subplots(len(targets), len(opts), figsize=(3.2 * len(opts), 3.2 * len(targets)),
                             squeeze=False, sharex=True, sharey=True)
    for (i, tname), (j, oname) in ((a, b) for a in enumerate(targets) for b in enumerate(opts)):
        ax = axes[i, j]
        d = sc[(sc.target == tname) & (sc.optimiser == oname)]
        if d.empty:
            ax.set_visible(False)
            continue
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


def _cell_label(row) -> str:
    enc = " ±1" if row.setting != "main" else ""
    return f"{row.target}\n{row.optimiser}{enc}"


@figure("volume-sgd-summary")
def sgd_summary(tables, params):
    """Per cell: the rank correlation against its floor and ceiling, the literature's log-log
    correlation against its ceiling, the log2 ratio of top-10 shares against its null, and the
    accuracy off S of volume and SGD."""
    vs = analysis.top10_shares(tables["volume_vs_sgd"])
    lab = vs.apply(_cell_label, axis=1)
    order = list(dict.fromkeys(lab))
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.6))
    panels = [(axes[0, 0], "spearman", "spearman_null", "Spearman(log P_SGD, log P_B)"),
              (axes[0, 1], "lit", "lit_null", f"log-log correlation, seen ≥ {vs.k_lit.iloc[0]} times in both"),
              (axes[1, 0], "log2_ratio", "log2_ratio_null", "log2(SGD share / volume share), top 10")]
    for ax, col, null, ylabel in panels:
        for i, o in enumerate(order):
            d = vs[lab == o]
            lo, hi = d[null + "_lo"].mean(), d[null + "_hi"].mean()
            ax.fill_between([i - 0.3, i + 0.3], lo, hi, color="C1", alpha=0.25, lw=0,
                            label="exact volume sampling (95% range)" if i == 0 else None)
            ax.plot([i - 0.3, i + 0.3], [d[null].mean()] * 2, color="C1", lw=1.5)
            if col == "spearman":
                ax.plot(i, d.spearman_floor.mean(), "x", color="C3", ms=7,
                        label="SGD counts shuffled (floor)" if i == 0 else None)
            _points(ax, i, d[col], "C0", "SGD (per seed; black: mean, 95% interval)" if i == 0 else None)
        ax.set_xticks(range(len(order)), order, fontsize=7)
        ax.set(xlabel="target and optimiser", ylabel=ylabel)
        if col != "log2_ratio":
            low = np.nanmin(np.r_[vs[col].to_numpy(float), vs[null + "_lo"].to_numpy(float), 0.0])
            ax.set_ylim(max(-1.05, low - 0.1), 1.05)
    axes[1, 0].axhspan(-analysis.PROPORTION_MARGIN, analysis.PROPORTION_MARGIN, color="gray", alpha=0.1)
    ax = axes[1, 1]
    for i, o in enumerate(order):
        d = vs[lab == o]
        _points(ax, i - 0.2, d.acc_pb, "C2", "volume (P_B)" if i == 0 else None)
        _points(ax, i + 0.1, d.acc_sgd, "C0", "SGD" if i == 0 else None)
    ax.axhline(0.5, color="gray", ls=":", label="counting")
    ax.set_xticks(range(len(order)), order, fontsize=7)
    ax.set(xlabel="target and optimiser", ylabel="accuracy off S", ylim=(0, 1.02))
    for a in axes.ravel():
        _legend_below(a, ncol=2)
    fig.tight_layout()
    return fig


def _points(ax, x, values, colour, label=None):
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    ax.scatter(np.full(len(v), x), v, s=12, color=colour, alpha=0.7, label=label, zorder=3)
    if len(v) >= 2:
        e, lo, hi = analysis.interval(v)
        ax.errorbar(x + 0.12, e, yerr=[[e - lo], [hi - e]], fmt="o", color="k", ms=4, capsize=3,
                    zorder=4)


@figure("volume-count-vs-volume")
def count_vs_volume(tables, params):
    """Distribution of the off-S error under counting, volume and each optimiser (main setting)."""
    err = tables["offset_error"]
    err = err[err.setting == "main"]
    targets = list(dict.fromkeys(err.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.8 * len(targets), 3.6), squeeze=False)
    n_test = int(err.n_test.iloc[0])
    grid = np.arange(n_test + 1) / n_test
    sources = list(dict.fromkeys(err.source))
    colours = {"volume": "C1", "sgd": "C0", "adam": "C2", "sgd-long": "C4"}
    spare = iter(["C5", "C6", "C7", "C8"])
    colours.update({s: next(spare, "C9") for s in sources if s not in colours})
    for ax, tname in zip(axes[0], targets):
        ax.plot(grid, st.binom.pmf(np.arange(n_test + 1), n_test, 0.5), "k:",
                label="counting (uniform over consistent f)")
        for src in sources:
            d = err[(err.target == tname) & (err.source == src)]
            h = d.groupby("errors").share.mean().reindex(range(n_test + 1), fill_value=0.0)
            ax.plot(grid, h.to_numpy(), drawstyle="steps-mid", color=colours[src],
                    label="volume (P_B)" if src == "volume" else src)
        ax.set(xlabel="off-S error of f (share of held-out inputs)", ylabel="probability",
               title=f"target {tname}")
        _legend_below(ax, ncol=2)
    fig.tight_layout()
    return fig


GC_COLOURS = {"guess-and-check": "k", "sgd-first-fit": "C0", "sgd-low-loss": "C1", "sgd-small-lr": "C2"}


@figure("volume-guess-check")
def guess_check(tables, params):
    """Cost of guess-and-check, the training-loss distributions of every method, and the
    test-accuracy differences to guess-and-check, unmatched and at matched training loss."""
    gc, nets = tables["guess_and_check"], tables["gc_networks"]
    cells = analysis.gc_cells(nets)
    sizes = sorted(gc.k.unique())
    growth = analysis.draws_per_fit(gc)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    ax = axes[0]
    for s, d in gc.groupby("seed"):
        ax.semilogy(d.k, d.draws / d.accepted.clip(lower=1), "o-", color="C0", alpha=0.5, lw=0.8,
                    label="one seed" if s == gc.seed.min() else None)
    ax.semilogy(growth.index, growth.values, "ks-", label="geometric mean over seeds")
    ax.set_xticks(sizes)
    ax.set(xlabel="training points", ylabel="draws per network that fits", title="cost of guess-and-check")
    _legend_below(ax)
    ax = axes[1]
    lo = max(float(nets.train_loss.quantile(0.001)), 1e-6)
    bins = np.geomspace(lo, nets.train_loss.max() * 1.01, 40)
    for m, d in nets.groupby("method", sort=False):
        ax.hist(d.train_loss.clip(lower=lo), bins=bins, weights=np.full(len(d), 1 / len(d)),
                histtype="step", color=GC_COLOURS.get(m, "C5"), lw=1.5, label=m)
    ax.set(xscale="log", xlabel="training loss (mean binary cross-entropy, nats)",
           ylabel="share of the method's networks", title="training loss of the networks compared")
    _legend_below(ax)
    ax = axes[2]
    for j, m in enumerate(analysis.GC_SGD):
        c = cells[cells.method == m]
        for col, off, marker, label in (("raw_diff", -0.12, "o", "unmatched"),
                                        ("matched_diff", 0.12, "s", "matched training loss")):
            ps, _ = analysis.per_seed_mean(c, c[col])
            if len(ps) >= 2:
                e, l, h = analysis.interval(ps.to_numpy())
                ax.errorbar(j + off, e, yerr=[[e - l], [h - e]], fmt=marker, capsize=3,
                            color=GC_COLOURS[m], mfc="white" if col == "raw_diff" else GC_COLOURS[m],
                            label=label if j == 0 else None)
    ax.axhspan(-analysis.GC_MARGIN, analysis.GC_MARGIN, color="gray", alpha=0.15)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xticks(range(len(analysis.GC_SGD)), list(analysis.GC_SGD), fontsize=8)
    ax.set_xlim(-0.5, len(analysis.GC_SGD) - 0.5)
    ax.set(xlabel="SGD variant", ylabel="test accuracy, SGD minus guess-and-check",
           title="mean over sizes per seed, 95% interval")
    _legend_below(ax)
    fig.tight_layout()
    return fig
