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
    fig, ax = plt.subplots(1, 2, figsize=(8.5, 3.2), sharey=True)
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
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.3))
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
    prof = p.pivot(index="k", columns="seed", values="grad_per_path").sort_index()
    share = p.pivot(index="k", columns="seed", values="share").sort_index()
    npaths = p.groupby("k").n_paths.first().sort_index()
    kk = prof.index.values
    fig, ax = plt.subplots(1, 2, figsize=(8.5, 3.2))
    for s in prof.columns:
        ax[0].semilogy(kk, prof[s], color="C0", alpha=0.35, lw=1)
        ax[1].plot(kk, share[s], color="C0", alpha=0.35, lw=1)
    ax[0].semilogy(kk, prof.mean(1), color="C0", lw=2, label="mean over seeds")
    ax[1].plot(kk, share.mean(1), color="C0", lw=2, label="gradient share")
    ax[1].plot(kk, npaths / npaths.sum(), color="grey", ls="--", label="share of paths")
    ax[0].set(xlabel="path length k (residual branches used)", ylabel="gradient norm of one path",
              title="gradient per path")
    ax[1].set(xlabel="path length k", ylabel="share", title="total gradient by length")
    ax[0].legend()
    ax[1].legend()
    return fig


@figure("depth-volume")
def volume(tables, params):
    widths = params["bit_widths"]
    train_df, vol_df, r50_df = tables["bits_training"], tables["bits_volume"], tables["bits_r50"]
    summary = A.width_summary(tables, params)
    fig, ax = plt.subplots(1, len(widths) + 1, figsize=(3.6 * (len(widths) + 1), 3.2))
    ax = np.atleast_1d(ax)
    for j, width in enumerate(widths):
        both = A.both_reached(train_df, width)
        for task in ["parallel", "serial"]:
            v = vol_df[(vol_df.width == width) & (vol_df.task == task) & vol_df.seed.isin(both[both].index)]
            piv = v.pivot(index="seed", columns="radius", values="frac_kept")
            cis = np.array([A.ci(piv[r].values) for r in piv.columns])
            ax[j].semilogx(piv.columns, cis[:, 0], marker="o", color=COLORS[task], label=task)
            ax[j].fill_between(piv.columns, cis[:, 1], cis[:, 2], color=COLORS[task], alpha=0.25)
        ax[j].axhline(0.5, color="grey", lw=0.8, ls=":")
        ax[j].set(xlabel="perturbation radius r", ylabel="fraction keeping the loss",
                  title=f"width {width}, {int(both.sum())} seed pairs")
    ax[0].legend()
    for j, width in enumerate(widths):
        both = A.both_reached(train_df, width)
        r = r50_df[r50_df.width == width].pivot(index="seed", columns="task", values="r50")
        d = np.log(r["parallel"] / r["serial"])[both]
        ax[-1].scatter(np.full(len(d), j) + np.linspace(-0.15, 0.15, len(d)), d, s=10, alpha=0.6, color="C0")
        row = summary[summary.width == width].iloc[0]
        ax[-1].errorbar(j + 0.3, row.dlog_r50, yerr=[[row.dlog_r50 - row.dlog_r50_lo],
                                                     [row.dlog_r50_hi - row.dlog_r50]],
                        fmt="s", color="k", capsize=3)
    ax[-1].axhline(0, color="grey", lw=0.8)
    ax[-1].set_xticks(range(len(widths)), [f"width {w}" for w in widths])
    ax[-1].set(ylabel="log r50 parallel / serial", title="paired by seed")
    return fig


@figure("depth-placement-spread")
def placement_spread(tables, params):
    width, L = params["bit_widths"][0], params["bit_blocks"]
    train_df, place_df, share_df = tables["bits_training"], tables["bits_placement"], tables["bits_block_shares"]
    ref_m, _ = A.spread_reference(L)
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.3))
    for task in ["parallel", "serial"]:
        reached = train_df[(train_df.width == width) & (train_df.task == task)].set_index("seed").reached.astype(bool)
        p = place_df[(place_df.width == width) & (place_df.task == task)].set_index("seed")
        rel = p.relative_depth[reached].dropna()
        ax[0].hist(rel, bins=np.arange(-4, 4.01, 0.25), alpha=0.55, color=COLORS[task],
                   label=f"{task} (n = {len(rel)})", density=True)
    vals, probs = relative_depth_reference(L, ref_m)
    ax[0].plot(vals, probs * ref_m, drawstyle="steps-mid", color="k", lw=1,
               label=f"uniform placement, m = {ref_m}")  # probability / spacing 1/m = density
    ax[0].set(xlabel="relative depth: x1..4 work minus x5..8 work (blocks)", ylabel="density / probability",
              title=f"where the halves sit (width {width})")
    ax[0].legend(fontsize=7)
    for j, task in enumerate(["parallel", "serial"]):
        s = share_df[(share_df.width == width) & (share_df.task == task)]
        g = s.groupby("block")[["share_a", "share_b", "share_ab"]].mean()
        ax[j + 1].stackplot(g.index, g.share_a, g.share_b, g.share_ab,
                            labels=["x1..4 only", "x5..8 only", "both"], colors=["C0", "C2", "C7"], alpha=0.8)
        ax[j + 1].set(xlabel="block", ylabel="share of the block's write", title=f"{task} task", ylim=(0, 1))
    ax[1].legend(loc="lower left", fontsize=7)
    return fig
