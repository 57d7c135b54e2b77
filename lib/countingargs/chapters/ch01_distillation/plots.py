"""Figures of chapter 01, drawn from the saved tables only."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ...figures import figure
from ...stats import t_interval
from . import analysis


def _summary(df: pd.DataFrame, value: str) -> pd.DataFrame:
    out = []
    for (n, w), g in df.groupby(["n_train", "width"]):
        est, lo, hi = t_interval(g[value].to_numpy())
        out.append(dict(n_train=n, width=w, mean=est, lo=lo, hi=hi))
    return pd.DataFrame(out)


@figure("distill-loss-vs-size")
def loss_vs_size(tables: dict, params: dict):
    """Training and test CE of each kind of student against training-set size, one column per
    width."""
    s = analysis.students(tables["metrics"])
    widths = sorted(tables["metrics"].width.unique())
    series = {"hard, converged": s["hard"].reset_index(), "hard, early-stopped": s["hard_es"].reset_index(),
              "distilled (T chosen on validation)": s["distill"].reset_index()}
    fig, axes = plt.subplots(2, len(widths), figsize=(3.2 * len(widths), 5.6), sharex=True, squeeze=False)
    for j, w in enumerate(widths):
        for i, measure in enumerate(["train_ce", "test_ce"]):
            ax = axes[i, j]
            for k, (label, df) in enumerate(series.items()):
                sm = _summary(df[df.width == w], measure)
                off = 1 + 0.04 * (k - 1)
                ax.errorbar(sm.n_train * off, sm["mean"], yerr=[sm["mean"] - sm.lo, sm.hi - sm["mean"]],
                            marker="o", ms=4, capsize=2, label=label)
            if measure == "test_ce":
                t = tables["teachers"].groupby("n_train").test_ce.mean()
                ax.plot(t.index, t.values, "k--", lw=1, label="teacher ensemble")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{w} hidden units: {'training' if measure == 'train_ce' else 'test'} CE")
            if i == 1:
                ax.set_xlabel("training-set size")
            if j == 0:
                ax.set_ylabel("hard-label cross-entropy")
    handles, labels_ = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


@figure("distill-gap")
def gap(tables: dict, params: dict):
    """Paired differences hard - distilled per cell, one panel per measure."""
    cells = tables["cells"]
    widths = sorted(cells.width.unique())
    names = {"train_ce": "training CE: hard (converged) − distilled",
             "test_ce": "test CE: hard (converged) − distilled",
             "test_ce_vs_early_stopped": "test CE: hard (early-stopped) − distilled"}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharex=True)
    for ax, (measure, title) in zip(axes, names.items()):
        for k, w in enumerate(widths):
            c = cells[(cells.measure == measure) & (cells.width == w)]
            off = 1 + 0.04 * (k - 1)
            ax.errorbar(c.n_train * off, c["diff"], yerr=[c["diff"] - c.lo, c.hi - c["diff"]], marker="o",
                        ms=4, capsize=2, label=f"{w} hidden units")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=0.05)
        ax.set_title(title)
        ax.set_xlabel("training-set size")
    axes[0].set_ylabel("paired difference (> 0 favours distillation)")
    axes[0].legend()
    fig.tight_layout()
    return fig


@figure("distill-curves")
def curves(tables: dict, params: dict):
    """Training and validation CE during training at the smallest and largest training sizes."""
    cv, m = tables["curves"], tables["metrics"]
    best_t = analysis.best_temperature(m)
    hard_es = analysis.students(m)["hard_es"]
    widths = sorted(m.width.unique())
    sizes = sorted(m.n_train.unique())
    w_show = widths[len(widths) // 2]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, n in zip(axes, [sizes[0], sizes[-1]]):
        for cond, color in (("hard", "C0"), ("distill", "C2")):
            t = best_t.loc[(n, w_show)] if cond == "distill" else 1.0
            c = cv[(cv.n_train == n) & (cv.width == w_show) & (cv.condition == cond) & (cv.temperature == t)]
            for _, g in c.groupby("seed"):
                ax.plot(g.epoch, g.train_ce, color=color, lw=0.6, alpha=0.35)
                ax.plot(g.epoch, g.val_ce, color=color, lw=0.6, alpha=0.35, ls="--")
            # a frozen (converged) student keeps its last values: carry them forward
            mean = pd.DataFrame({col: c.pivot(index="epoch", columns="seed", values=col).ffill().mean(axis=1)
                                 for col in ("train_ce", "val_ce")})
            ax.plot(mean.index, mean.train_ce, color=color, lw=1.8, label=f"{cond}: training CE")
            ax.plot(mean.index, mean.val_ce, color=color, lw=1.8, ls="--", label=f"{cond}: validation CE")
        ax.axvline(hard_es.loc[(n, w_show)].epoch.median(), color="C3", lw=1,
                   label="hard: median early-stopping epoch")
        ax.set_yscale("log")
        ax.set_xscale("symlog", linthresh=100)
        ax.set_xlim(0, cv.epoch.max())
        ax.set_xlabel("epoch (full batch, symmetric-log scale)")
        ax.set_title(f"{n} training digits, {w_show} hidden units")
    axes[0].set_ylabel("hard-label cross-entropy")
    handles, labels_ = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="lower center", ncol=5, frameon=False, fontsize=7)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
