"""Figures of the llama chapter, each drawn from the saved tables only."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
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
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, fontsize=7)
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
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, fontsize=7)
    return fig


@figure("llama-width")
def width(tables, params):
    """R_C (left) and R_F (right) against the number of hidden units: n = 2 (mean over targets)
    and n = 3 (volume-weighted), exact where enumerated, sampled with 95% intervals beyond."""
    wt = analysis.width_table(tables["counting"], tables["sampled_counts"],
                              analysis.SIZE_BOOT)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for ax, ver in zip(axes, ("c", "f")):
        for k, n in enumerate(sorted(wt.n.unique())):
            stat = analysis.trend_statistic(int(n))
            key = f"{stat}_r{ver}"
            lab = f"n = {n}, " + ("mean over targets" if stat == "mean" else "volume-weighted")
            for src, off, face in (("exact", -0.06, f"C{k}"), ("sampled", 0.06, "white")):
                t = wt[(wt.n == n) & (wt.source == src)].sort_values("h")
                t = t[np.isfinite(t[key])]
                if t.empty:
                    continue
                err = np.vstack([t[key] - t[key + "_lo"], t[key + "_hi"] - t[key]])
                ax.errorbar(t.h + off, t[key], yerr=err if src == "sampled" else None,
                            fmt="o" if n == 2 else "s", ms=5, color=f"C{k}", mfc=face,
                            capsize=2, lw=1, label=f"{lab} ({src})")
        ax.axhline(0, color="grey", lw=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("hidden units H")
        ax.set_ylabel(f"$R_{ver.upper()}$ (log10 volume ratio)")
        ax.set_title("cancelled / not cancelled" if ver == "c"
                     else "any extra computation / straightforward")
    fig.tight_layout()
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(1.1, -0.16), ncol=4)
    return fig


@figure("llama-sampling")
def sampling(tables, params):
    """Random 7-bit networks: shares per sampling stream (left), features per network (right)."""
    sampled = tables["sampling_networks"]
    per_seed = analysis.seed_table(sampled)
    n_family = int(tables["sampling_counts"].family_size.iloc[0])
    cols = [("any_nonconst", "C2", "a non-constant unit (every g)"),
            ("any_fed", "C3", "a unit feeds the output (every g)"),
            ("any_llama", "C0", "a family feature, exactly"),
            ("any_fed_llama", "C1", "a family unit feeds the output"),
            ("any_decodable", "C7", "a family feature decodable (loose)")]
    groups = [("constant", "constant output\n(the target)"),
              ("nonconstant", "non-constant output\n(reference)")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    ax = axes[0]
    for i, (grp, _) in enumerate(groups):
        t = per_seed[per_seed.group == grp]
        pooled = sampled[sampled.group == grp]
        for j, (col, c, lab) in enumerate(cols):
            x = i + (j - 2) * 0.15
            ax.scatter(np.full(len(t), x), t[col], s=12, color=c, label=lab if i == 0 else None)
            share = (pooled.n_decodable > 0).mean() if col == "any_decodable" else pooled[col].mean()
            ax.plot([x - 0.06, x + 0.06], [share] * 2, color="k", lw=1.5)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xticks([0, 1], [lab for _, lab in groups])
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylabel("share of networks")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("dots: sampling streams; bars: all streams")
    ax = axes[1]
    sc = sampled[sampled.group == "constant"]
    bins = np.arange(-0.5, max(sc.n_decodable.max(), 3) + 1.5,
                     max(1, int(sc.n_decodable.max() // 30)))
    ax.hist(sc.n_decodable, bins=bins, color="C7", alpha=0.7,
            label="decodable from a layer (loose test)")
    ax.hist(sc.n_distinct_g, bins=bins, color="C0", alpha=0.9,
            label="computed exactly by a unit (strict test)")
    ax.set_xlabel(f"family features per network (of {n_family})")
    ax.set_ylabel("constant-output networks")
    ax.set_yscale("log")
    ax.legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    return fig


@figure("llama-llc-toys")
def llc_toys(tables, params):
    """Estimate / lambda of each toy at each of the chapter's settings, with the exact target of
    the settings (crosses) and the tolerance band."""
    s = analysis.toy_summary(tables["llc_toys"])
    toys = list(dict.fromkeys(s.sort_values(["true_lambda", "toy"]).toy))
    x0 = {t: i for i, t in enumerate(toys)}
    n_set = s.setting.nunique()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.axhspan(1 - analysis.TOY_TOL, 1 + analysis.TOY_TOL, color="grey", alpha=0.15, lw=0,
               label="tolerance")
    ax.axhline(1, color="grey", lw=1, ls=":")
    for k, (si, t) in enumerate(s.groupby("setting")):
        x = t.toy.map(x0).to_numpy() + (k - (n_set - 1) / 2) * 0.2
        lab = (f"step {t.step_size.iloc[0]:g}, loc. {t.localization.iloc[0]:g}, "
               f"burn-in {int(t.n_burnin.iloc[0])}" + (" (main)" if si == 0 else ""))
        ax.errorbar(x, t.llc_mean / t.true_lambda, yerr=1.96 * t.llc_se / t.true_lambda, fmt="o",
                    ms=4, color=f"C{k}", label=lab, capsize=2)
        ax.scatter(x, t.expected / t.true_lambda, marker="x", color=f"C{k}", s=30, zorder=3)
    lams = s.groupby("toy").true_lambda.first()
    ax.set_xticks(range(len(toys)), [f"{t}\n($\\lambda$ = {lams[t]:g})" for t in toys], fontsize=8)
    ax.set_ylabel("estimate / true $\\lambda$")
    ax.set_ylim(0, 1.4)
    ax.legend(fontsize=7, loc="lower right")
    return fig


@figure("llama-encoding")
def encoding(tables, params):
    """Held-out probe R^2 of the llama and of control features, per condition; values below
    :data:`analysis.R2_FLOOR` are drawn at the floor (their number is in the title)."""
    enc = tables["trained"]
    floor = analysis.R2_FLOOR
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for k, cond in enumerate(["plain", "llama"]):
        t = enc[(enc.condition == cond) & enc.reached]
        x = np.full(len(t), k) + np.linspace(-0.1, 0.1, len(t))
        for col, dx, c, m, lab in (("r2_controls", -0.15, "C7", "o", "controls (mean)"),
                                   ("r2_controls_q", -0.15, "C7", "^",
                                    "control groups, 95th percentile"),
                                   ("r2_llama", 0.15, "C3", "o", "the llama")):
            ax.scatter(x + dx, t[col].clip(lower=floor), s=10, color=c, marker=m,
                       label=lab if k == 0 else None)
    ax.axhline(float(enc.r2_input_llama.median()), color="C0", ls=":", lw=1,
               label="linear read-out of the pixels (median)")
    n_low = int((enc[["r2_llama", "r2_controls", "r2_controls_q"]] < floor).any(axis=1).sum())
    ax.set_ylim(floor - 0.05, 1.0)
    ax.set_title(f"{n_low} network(s) with a value below {floor:g}, drawn at {floor:g}")
    ax.set_xticks([0, 1], ["plain networks", "llama networks"])
    ax.set_ylabel("held-out probe $R^2$ (last hidden layer)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return fig


@figure("llama-trained")
def trained(tables, params):
    """Paired LLC differences per setting with their drift (left); surviving share against the
    radius relative to the balanced weight norm (right)."""
    llcs, vols = tables["llc"], tables["local_volume"]
    st = analysis.llc_setting_table(llcs)
    good = llcs[llcs.reached & ~llcs.diverged]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    for k, r in enumerate(st.itertuples()):
        w = good[good.setting == r.setting].pivot_table(index="seed", columns="condition",
                                                         values="llc").dropna()
        d = (w.llama - w.plain).to_numpy()
        ax.scatter(np.full(len(d), k) + np.linspace(-0.12, 0.12, len(d)), d, s=12,
                   color=f"C{k}", alpha=0.7)
        ax.errorbar([k + 0.25], [r.diff], yerr=[[r.diff - r.diff_lo], [r.diff_hi - r.diff]],
                    fmt="o", color="k", capsize=3, label="mean, 95% t-interval" if k == 0 else None)
        ax.scatter([k + 0.4], [r.drift], marker="x", color="C3", s=30,
                   label="mean drift during the draws" if k == 0 else None)
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks(range(len(st)), [f"step {r.step_size:g}\nloc. {r.localization:g}"
                                   + ("\n(main)" if r.setting == 0 else "")
                                   for r in st.itertuples()], fontsize=8)
    ax.set_xlim(-0.5, len(st) - 0.3)
    ax.set_ylabel("LLC(llama) - LLC(plain)")
    ax.set_title("dots: pairs")
    ax.legend(fontsize=7, loc="best")
    ax = axes[1]
    rel = vols[(vols.kind == "relative") & vols.reached]
    for k, cond in enumerate(["plain", "llama"]):
        t = rel[rel.condition == cond]
        for _, g in t.groupby("seed"):
            ax.plot(g.radius_rel, g.fraction, color=f"C{k}", lw=0.6, alpha=0.4)
        m = t.groupby(t.radius_rel.round(6)).fraction.mean()
        ax.plot(m.index, m.values, color=f"C{k}", lw=2, marker="o", label=cond)
    ax.set_xlabel("perturbation radius / balanced weight norm")
    ax.set_ylabel(f"share keeping loss within +{params['vol_tol']:g}")
    ax.legend()
    fig.tight_layout()
    return fig
