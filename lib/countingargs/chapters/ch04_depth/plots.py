"""Figures of chapter 04, each drawn from the saved tables only (``fn(tables, params) -> Figure``)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ...figures import figure
from . import analysis as A
from .experiment import relative_depth_reference

COLORS = {"residual": "C0", "plain": "C1", "parallel": "C0", "serial": "C3"}


@figure("depth-placements")
def placements(tables, params):
    p = tables["placements"]
    fig, ax = plt.subplots(1, 2, figsize=(8.5, 3.2), sharey=True, layout="constrained")
    for n in params["count_ns"]:
        s = p[p.n == n]
        ax[0].semilogy(s.L, s.ratio_disjoint, marker=".", label=f"n = {n}")
        ax[1].semilogy(s.L, s.ratio_shared, marker=".", label=f"n = {n}")
    ax[0].set_title("parallel chains on disjoint blocks")
    ax[1].set_title("parallel chains may share blocks")
    for a in ax:
        a.set_xlabel("blocks in the residual stream, L")
        a.axhline(1, color="grey", lw=0.8)
    ax[0].set_ylabel("placements: parallel / serial")
    ax[1].legend(title="total steps")
    return fig


@figure("depth-lesions")
def lesions(tables, params):
    single, rand_del, reorder = (tables["veit_single_deletion"], tables["veit_random_deletion"],
                                 tables["veit_reorder"])
    base = single[single.deleted_block == -1].groupby("arch").error.mean()
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.3), layout="constrained")
    for arch in ["residual", "plain"]:
        c = COLORS[arch]
        g = single[(single.arch == arch) & (single.deleted_block >= 0)].groupby("deleted_block").error
        ax[0].plot(g.mean().index, g.mean().values, marker="o", color=c, label=arch)
        ax[0].fill_between(g.mean().index, g.min().values, g.max().values, color=c, alpha=0.2)
        ax[0].axhline(base[arch], color=c, ls=":", lw=1)
        r = rand_del[rand_del.arch == arch].groupby(["k", "seed"]).error.mean().groupby("k")
        ax[1].plot(r.mean().index, r.mean().values, marker=".", color=c, label=arch)
        ax[1].fill_between(r.mean().index, r.min().values, r.max().values, color=c, alpha=0.2)
        o = reorder[reorder.arch == arch].groupby("swaps")
        ax[2].errorbar(o.kendall_tau.mean(), o.error.mean(), yerr=o.error.std(), marker="o",
                       color=c, label=arch, capsize=2)
    ax[0].set(xlabel="deleted block", ylabel="test error", title="delete one block")
    ax[1].set(xlabel="blocks deleted at random", ylabel="test error", title="delete several blocks")
    ax[2].set(xlabel="Kendall tau of block order (1 = intact)", ylabel="test error", title="reorder blocks")
    for a in ax[:2]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax[2].invert_xaxis()
    ax[0].legend()
    return fig


@figure("depth-paths")
def paths(tables, params):
    p = tables["veit_path_gradients"]
    npaths = p[p.state == "trained"].groupby("k").n_paths.first().sort_index()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for state, color in [("init", "C7"), ("trained", "C0")]:
        q = p[p.state == state]
        prof = q.pivot(index="k", columns="seed", values="grad_per_path").sort_index()
        share = q.pivot(index="k", columns="seed", values="share").sort_index()
        kk = prof.index.values
        for s in prof.columns:
            ax[0].semilogy(kk, prof[s], color=color, alpha=0.25, lw=0.8)
            ax[1].plot(kk, share[s], color=color, alpha=0.25, lw=0.8)
        label = "at initialisation" if state == "init" else "after training"
        ax[0].semilogy(kk, prof.mean(1), color=color, lw=2, label=label)
        ax[1].plot(kk, share.mean(1), color=color, lw=2, label=label)
    ax[1].plot(npaths.index, npaths / npaths.sum(), color="k", ls="--", lw=1, label="share of paths")
    ax[0].set(xlabel="path length k (residual branches used)", ylabel="gradient norm of one path",
              title="gradient per path")
    ax[1].set(xlabel="path length k", ylabel="share of the total gradient", title="total gradient by length")
    ax[0].legend()
    ax[1].legend()
    return fig


LABELS = {"serial": "serial chain", "parallel": "two chains, side by side",
          "staggered": "two chains, one after the other", "free": "no intermediate targets"}
CCOLORS = {"serial": "C3", "parallel": "C0", "staggered": "C2", "free": "C7"}


@figure("depth-volume")
def volume(tables, params):
    widths = params["bit_widths"]
    tr, vol = tables["parity_training"], tables["parity_volume"]
    w0 = widths[0]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained",
                           gridspec_kw={"width_ratios": [1.2, 1]})
    ok = tr[(tr.width == w0) & tr.reached.astype(bool)]
    for cond in A.CONDITIONS:
        seeds = ok[ok.condition == cond].seed
        v = vol[(vol.width == w0) & (vol.condition == cond) & vol.seed.isin(seeds)]
        piv = v.pivot(index="seed", columns="radius", values="frac_kept")
        cis = np.array([A.ci(piv[r].values) for r in piv.columns])
        ax[0].semilogx(piv.columns, cis[:, 0], marker="o", ms=3, color=CCOLORS[cond], label=LABELS[cond])
        ax[0].fill_between(piv.columns, np.clip(cis[:, 1], 0, 1), np.clip(cis[:, 2], 0, 1),
                           color=CCOLORS[cond], alpha=0.2)
    ax[0].axhline(0.5, color="grey", lw=0.8, ls=":")
    ax[0].set(xlabel="perturbation radius r", ylabel="fraction keeping the loss",
              title=f"8-bit parity, width {w0}")
    ax[0].legend(loc="lower left")
    comps = ["parallel", "staggered", "free"]
    for j, width in enumerate(widths):
        for i, cond in enumerate(comps):
            if (tr[(tr.width == width) & (tr.condition == cond)]).empty:
                continue
            e, lo, hi, n = A.volume_effect(tables, width, cond)
            x = i + (j - (len(widths) - 1) / 2) * 0.25
            ax[1].errorbar(x, e, yerr=[[e - lo], [hi - e]], fmt="os"[j % 2], color=CCOLORS[cond], capsize=3,
                           mfc="white" if j else CCOLORS[cond], label=f"width {width}" if i == 0 else None)
    ax[1].axhline(0, color="grey", lw=0.8)
    ax[1].set_xticks(range(len(comps)), ["side by side", "one after\nthe other", "no targets"])
    ax[1].set(ylabel="log r50 minus serial's (paired)", title="against the serial chain")
    ax[1].legend(loc="upper left")
    return fig


@figure("depth-llc")
def llc(tables, params):
    rec = A.toy_recovery(tables["llc_toys"])
    llc_df = tables["parity_llc"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
    toys = sorted(rec.toy.unique())
    for j, setting in enumerate(["main", "alt"]):
        r = rec[rec.setting == setting].set_index("toy").loc[toys]
        ax[0].bar(np.arange(len(toys)) + (j - 0.5) * 0.38, r.ratio, width=0.36,
                  yerr=r.chain_sd / r.true_lambda, capsize=2, color=f"C{j}",
                  label={"main": "main setting", "alt": "previous setting"}[setting])
    tol = params["llc_tolerance"]
    ax[0].axhspan(1 - tol, 1 + tol, color="grey", alpha=0.15, lw=0)
    ax[0].axhline(1, color="k", lw=0.8)
    ax[0].set_xticks(range(len(toys)), [t.replace("_", "\n") for t in toys], fontsize=8)
    ax[0].set(ylabel="estimate / true coefficient", title="toys with a known answer")
    ax[0].legend(loc="upper right")
    for j, setting in enumerate(["main", "alt"]):
        sub = llc_df[(llc_df.setting == setting) & ~llc_df.diverged.astype(bool)]
        piv = sub.pivot(index="seed", columns="condition", values="llc")
        d = (piv["serial"] - piv["parallel"]).dropna()
        ax[1].scatter(np.full(len(d), j) + np.linspace(-0.12, 0.12, len(d)), d, s=10, alpha=0.6, color=f"C{j}")
        e, lo, hi = A.ci(d.values)
        ax[1].errorbar(j + 0.25, e, yerr=[[e - lo], [hi - e]], fmt="s", color="k", capsize=3)
    ax[1].axhline(0, color="grey", lw=0.8)
    ax[1].set_xticks([0, 1], ["main setting", "previous setting"])
    ax[1].set(ylabel="LLC serial minus parallel (paired)", title="8-bit parity, per seed")
    return fig


@figure("depth-implementations")
def implementations(tables, params):
    pr = tables["parity_probes"]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2), sharey=True, layout="constrained")
    groups = [("parity of 2-4 bits (best)", lambda q: q[q.k.isin([2, 3, 4])].groupby(["seed", "position"]).best_r2.max(), "C1"),
              ("two complementary 4-bit halves", lambda q: q[q.k == 4].groupby(["seed", "position"]).pair_r2.max(), "C0"),
              ("parity of 5-7 bits (best)", lambda q: q[q.k.isin([5, 6, 7])].groupby(["seed", "position"]).best_r2.max(), "C3"),
              ("all 8 bits", lambda q: q[q.k == 8].groupby(["seed", "position"]).best_r2.max(), "k")]
    for ax, cond in zip(axes, A.CONDITIONS):
        q = pr[pr.condition == cond]
        for label, fn, color in groups:
            m = fn(q).groupby("position").mean()
            ax.plot(m.index, m.values, marker=".", color=color, label=label)
        ax.axhline(params["probe_threshold"], color="grey", ls=":", lw=0.8)
        ax.set(xlabel="stream position (blocks done)", title=LABELS[cond], ylim=(0, 1.02))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("probe R\u00b2 (mean over networks)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=4)
    return fig


@figure("depth-placement-spread")
def placement_spread(tables, params):
    L = params["bit_blocks"]
    halves = A.halves_shares(tables)
    rel = A.relative_depths(halves)
    null = A.swap_null(halves).ravel()
    ref_m, _ = A.spread_reference(L)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    bins = np.arange(-4, 4.01, 0.25)
    ax[0].hist(null, bins=bins, density=True, color="C7", alpha=0.5, label="smeared null (label swaps)")
    ax[0].hist(rel, bins=bins, density=True, color="C0", alpha=0.7, label=f"two-halves task (n = {len(rel)})")
    vals, probs = relative_depth_reference(L, ref_m)
    ax[0].plot(vals, probs * ref_m, drawstyle="steps-mid", color="k", lw=1,
               label=f"uniform placement, chains of {ref_m}")  # probability / spacing 1/m = density
    top = ax[0].get_ylim()[1]
    for cond, y in [("staggered", 1.15 * top), ("parallel", 1.08 * top)]:   # above the histograms
        r = A.relative_depths(A.control_shares(tables, params, cond))
        ax[0].scatter(r, np.full(len(r), y), s=8, alpha=0.6, color=CCOLORS[cond],
                      label=f"control: {LABELS[cond]}")
    ax[0].set(xlabel="relative depth: bits 1-4 work minus bits 5-8 work (blocks)", ylabel="density",
              title="where the two halves sit")
    g = halves.groupby("block")[["share_a", "share_b", "share_ab"]].mean()
    ax[1].stackplot(g.index, g.share_a, g.share_b, g.share_ab, labels=["bits 1-4 only", "bits 5-8 only", "both"],
                    colors=["C0", "C2", "C7"], alpha=0.8)
    ax[1].set(xlabel="block", ylabel="share of the block's write", title="two-halves task: work per block",
              ylim=(0, 1))
    ax[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    h0, l0 = ax[0].get_legend_handles_labels()
    h1, l1 = ax[1].get_legend_handles_labels()
    fig.legend(h0 + h1, l0 + l1, loc="outside lower center", ncol=4, fontsize=7)
    return fig
