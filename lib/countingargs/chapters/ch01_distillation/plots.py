"""Figures of chapter 01, drawn from the saved tables only. Cross-entropies are in nats."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, ScalarFormatter

from ...figures import figure
from ...stats import t_interval
from . import analysis

CE = "cross-entropy (nats)"
SERIES = {"hard": "hard, converged", "hard_es": "hard, early-stopped",
          "matched": "hard, at the distilled student's training CE", "distill": "distilled (T chosen on validation)"}


def _size_axis(ax, sizes) -> None:
    """Log x axis labelled with the training sizes themselves (no 2×10² ticks)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training-set size (digits)")


def _geo_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Geometric mean over seeds with the 95% t-interval of the mean log (for log axes: the
    interval stays positive)."""
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return (float(values[0]) if len(values) else np.nan), np.nan, np.nan
    return tuple(float(np.exp(v)) for v in t_interval(np.log(values)))


def _plain_log_y(ax) -> None:
    """Log y axis with plain numbers (0.2, 1) instead of 2×10⁻¹; minor ticks labelled at 2 and 5
    only when the axis spans less than two decades."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    lo, hi = ax.get_ylim()
    few = hi / lo < 100
    ax.yaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if few and round(v / 10 ** np.floor(np.log10(v))) in (2, 5) else ""))


def _legend_below(fig, ax, ncol: int, rect_bottom: float) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False)
    fig.tight_layout(rect=(0, rect_bottom, 1, 1))


@figure("distill-loss-vs-size")
def loss_vs_size(tables: dict, params: dict):
    """Training and test CE of each kind of student against training-set size, one column per
    width; geometric means over seeds with 95% t-intervals of the mean log."""
    s = analysis.students(tables)
    s["matched"] = s["matched"][s["matched"].matched]
    widths = sorted(tables["metrics"].width.unique())
    sizes = sorted(tables["metrics"].n_train.unique())
    fig, axes = plt.subplots(2, len(widths), figsize=(3.4 * len(widths) + 0.6, 6.0), sharex=True, squeeze=False)
    for j, w in enumerate(widths):
        for i, measure in enumerate(["train_ce", "test_ce"]):
            ax = axes[i, j]
            for k, (key, label) in enumerate(SERIES.items()):
                df = s[key].xs(w, level="width")[measure]
                st = np.array([_geo_ci(df.xs(n, level="n_train").to_numpy()) for n in sizes])
                x = np.array(sizes) * (1 + 0.035 * (k - 1.5))
                ax.errorbar(x, st[:, 0], yerr=[st[:, 0] - st[:, 1], st[:, 2] - st[:, 0]], marker="o", ms=3.5,
                            capsize=2, label=label)
            if measure == "test_ce":
                t = tables["teachers"].groupby("n_train").test_ce.mean()
                ax.plot(t.index, t.values, "k--", lw=1, label="teacher ensemble")
            _plain_log_y(ax)
            ax.set_title(f"{w} hidden units: {'training' if measure == 'train_ce' else 'test'} CE")
            _size_axis(ax, sizes)
            if i == 0:
                ax.set_xlabel("")
            if j == 0:
                ax.set_ylabel(f"hard-label {CE}")
    _legend_below(fig, axes[1, 0], 3, 0.09)
    return fig


@figure("distill-gap")
def gap(tables: dict, params: dict):
    """Paired differences hard − distilled per cell (nats), one panel per version; > 0
    favours distillation."""
    cells = analysis.cell_table(tables)
    widths = sorted(cells.width.unique())
    sizes = sorted(cells.n_train.unique())
    titles = {"train_ce_vs_converged": "T: training CE,\nhard (converged) − distilled",
              "test_ce_vs_early_stopped": "H: test CE,\nhard (early-stopped) − distilled",
              "test_ce_loss_matched": "M: test CE at equal training CE,\nhard − distilled",
              "test_ce_vs_converged": "context: test CE,\nhard (converged) − distilled"}
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.9))
    for ax, (measure, title) in zip(axes, titles.items()):
        for k, w in enumerate(widths):
            c = cells[(cells.measure == measure) & (cells.width == w)].dropna(subset=["diff"])
            x = c.n_train * (1 + 0.04 * (k - (len(widths) - 1) / 2))
            ax.errorbar(x, c["diff"], yerr=[c["diff"] - c.lo, c.hi - c["diff"]], marker="o", ms=4, capsize=2,
                        label=f"{w} hidden units")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(title)
        _size_axis(ax, sizes)
    axes[0].set_ylabel("paired difference (nats; > 0 favours distillation)")
    _legend_below(fig, axes[0], len(widths), 0.08)
    return fig


def _filled_mean(c: pd.DataFrame, col: str, geometric: bool = False) -> pd.Series:
    """Mean over seeds per epoch (``geometric``: exp of the mean log); a student frozen at
    convergence keeps its last value."""
    wide = c.pivot(index="epoch", columns="seed", values=col).ffill()
    return np.exp(np.log(wide).mean(axis=1)) if geometric else wide.mean(axis=1)


@figure("distill-curves")
def curves(tables: dict, params: dict):
    """Training and validation CE during training at the smallest and largest training sizes."""
    cv, m = tables["curves"], tables["metrics"]
    best_t = analysis.best_temperature(m)
    s = analysis.students(tables)
    widths, sizes = sorted(m.width.unique()), sorted(m.n_train.unique())
    w_show = widths[len(widths) // 2]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.0), sharey=True)
    for ax, n in zip(axes, [sizes[0], sizes[-1]]):
        for cond, color in (("hard", "C0"), ("distill", "C2")):
            t = best_t.loc[(n, w_show)] if cond == "distill" else 1.0
            c = cv[(cv.n_train == n) & (cv.width == w_show) & (cv.condition == cond) & (cv.temperature == t)]
            for _, g in c.groupby("seed"):
                ax.plot(g.epoch, g.train_ce, color=color, lw=0.6, alpha=0.3)
                ax.plot(g.epoch, g.val_ce, color=color, lw=0.6, alpha=0.3, ls="--")
            for col, ls, what in (("train_ce", "-", "training"), ("val_ce", "--", "validation")):
                mean = _filled_mean(c, col)
                ax.plot(mean.index, mean.values, color=color, lw=1.8, ls=ls, label=f"{cond}: {what} CE")
        ax.axvline(s["hard_es"].loc[(n, w_show)].epoch.median(), color="C3", lw=1,
                   label="hard: median early-stopping epoch")
        mt = s["matched"].loc[(n, w_show)]
        ax.axvline(mt[mt.matched].epoch.median(), color="C4", lw=1, ls=":",
                   label="hard: median epoch at the distilled training CE")
        _plain_log_y(ax)
        ax.set_xscale("symlog", linthresh=100)
        ax.set_xlim(0, cv[(cv.n_train == n) & (cv.width == w_show)].epoch.max())
        ax.set_xlabel("epoch (full batch; linear to 100, log beyond)")
        ax.set_title(f"{n} training digits, {w_show} hidden units")
    axes[0].set_ylabel(f"hard-label {CE}")
    _legend_below(fig, axes[0], 3, 0.14)
    return fig


@figure("distill-compute")
def compute(tables: dict, params: dict):
    """Hard-label students against compute (parameter-epochs): test CE (top) and training CE
    (bottom), one line per width (geometric mean over seeds), markers where each budget runs out
    (geometric mean, 95% t-interval of the mean log; open where most of the widest students had
    already converged); one column per training size."""
    cv = tables["curves"]
    cv = cv[cv.condition == "hard"]
    bud = tables["budget"]
    applies = analysis.compute_table(tables).set_index(["n_train", "budget"]).applies
    n_par = bud.groupby("width").n_params.first()
    sizes, widths = sorted(bud.n_train.unique()), sorted(bud.width.unique())
    fig, axes = plt.subplots(2, len(sizes), figsize=(3.3 * len(sizes) + 0.6, 6.0), sharex=True, squeeze=False)
    for j, n in enumerate(sizes):
        for i, (col, what) in enumerate((("test_ce", "test"), ("train_ce", "training"))):
            ax = axes[i, j]
            for k, w in enumerate(widths):
                c = cv[(cv.n_train == n) & (cv.width == w)]
                mean = _filled_mean(c, col, geometric=True)
                mean = mean[mean.index > 0]                       # epoch 0 has no place on a log axis
                ax.plot(mean.index * n_par[w], mean.values, color=f"C{k}", lw=1.2,
                        label=f"{w} hidden units ({n_par[w]:,d} parameters)")
                for budget, g in bud[(bud.n_train == n) & (bud.width == w)].groupby("budget"):
                    m, lo, hi = _geo_ci(g[col].to_numpy())
                    ax.errorbar([budget], [m], yerr=[[m - lo], [hi - m]], fmt="o", ms=4, capsize=2, color=f"C{k}",
                                mfc=f"C{k}" if applies[(n, budget)] else "white")
            ax.set_xscale("log")
            _plain_log_y(ax)
            ax.set_title(f"{n} digits: {what} CE")
            if i == 1:
                ax.set_xlabel("compute (parameter-epochs)")
            if j == 0:
                ax.set_ylabel(f"hard-label {CE}")
    _legend_below(fig, axes[1, 0], len(widths), 0.08)
    return fig
