"""Chapter 05 figures, drawn from the saved tables only (``python -m countingargs replot``)."""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...figures import figure
from .analysis import ci, curve_of

CURSE = [("p2d/same", "p2d\ntrained"), ("p2d/reversed", "p2d\nreversed"),
         ("d2p/same", "d2p\ntrained"), ("d2p/reversed", "d2p\nreversed"),
         ("both/forward", "both\nforward"), ("both/backward", "both\nbackward")]
TWOHOP = [("twohop/hop1-heldout-seen-city", "hop 1"), ("twohop/hop2-heldout-seen-city", "hop 2"),
          ("twohop/composed-trained", "composed\ntrained"),
          ("twohop/composed-heldout-seen-city", "composed\nheld out,\nseen bridge"),
          ("twohop/composed-heldout-unseen-city", "composed\nheld out,\nunseen bridge")]


def _panel(ax, by: pd.DataFrame, conds, metric, scale, chance, ylabel, bars=True) -> None:
    """Per condition: mean over seeds (bar or thick line), interval, and the seeds as dots."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (cond, _) in enumerate(conds):
        vals = by[metric][cond].to_numpy() * scale
        est, lo, hi = ci(vals)
        test = ("reversed" in cond) or ("heldout" in cond and "composed" in cond)
        colour = colours[1] if test else colours[0]
        if bars:
            ax.bar(i, est, color=colour, alpha=0.35, width=0.7)
        else:
            ax.plot([i - 0.3, i + 0.3], [est, est], color=colour, lw=2.5)
        ax.errorbar(i, est, yerr=[[est - lo], [hi - est]], color=colour, capsize=4, lw=1.5)
        jitter = np.linspace(-0.18, 0.18, len(vals))
        ax.scatter(i + jitter, vals, s=12, color=colour, zorder=3)
    if isinstance(chance, (int, float)):
        ax.axhline(chance, color="k", ls="--", lw=1, label="chance")
    else:
        for i, c in enumerate(chance):
            ax.hlines(c, i - 0.4, i + 0.4, color="k", ls="--", lw=1, label="chance" if i == 0 else None)
    ax.set_xticks(range(len(conds)), [lab for _, lab in conds], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")


def _accuracy_and_rank(by, conds, chance_acc):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.7))
    _panel(axes[0], by, conds, "accuracy", 100, chance_acc, "exact-match accuracy (%)")
    _panel(axes[1], by, conds, "rank", 1, 0.5,
           "normalised rank of correct answer\n(0 = first, 0.5 = chance)", bars=False)
    axes[1].set_ylim(-0.02, 1.0)
    axes[1].invert_yaxis()
    fig.tight_layout()
    return fig


@figure("reversal-curse")
def curse(tables: Mapping[str, pd.DataFrame], params: Mapping):
    """Accuracy and rank of trained and reversed questions in the three groups."""
    by = tables["summary"].pivot(index="seed", columns="condition")
    return _accuracy_and_rank(by, CURSE, 100 / int(params["n_per_group"]))


@figure("reversal-twohop")
def twohop(tables: Mapping[str, pd.DataFrame], params: Mapping):
    """Single hops, trained compositions and held-out compositions."""
    by = tables["summary"].pivot(index="seed", columns="condition")
    n_c = int(params["n_countries"])
    return _accuracy_and_rank(by, TWOHOP,
                              [100 / (n_c * int(params["cities_per_country"]))] + [100 / n_c] * 4)


@figure("reversal-training")
def training(tables: Mapping[str, pd.DataFrame], params: Mapping):
    """Rank lift over training steps for the trained direction, reversed questions and
    held-out compositions."""
    curve = tables["checkpoints"]
    margin = float(params["margin"])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = [(("p2d/same", "d2p/same"), "curse, trained direction", colours[0], "-"),
             (("p2d/reversed", "d2p/reversed"), "curse, reversed", colours[1], "-"),
             (("twohop/composed-heldout-seen-city",), "composed, held out, seen bridge", colours[2], "--"),
             (("twohop/composed-heldout-unseen-city",), "composed, held out, unseen bridge", colours[3], "--")]
    for conds, label, colour, ls in lines:
        c = curve_of(curve, conds)
        ax.plot(c.index, c.to_numpy(), color=colour, lw=0.6, alpha=0.5, ls=ls)
        ax.plot(c.index, c.mean(axis=1), color=colour, lw=2, ls=ls, label=label)
    ax.axhline(0, color="k", lw=1)
    ax.axhspan(-margin, margin, color="grey", alpha=0.15, label=f"margin ±{margin}")
    ax.set_xlabel("training step")
    ax.set_ylabel("rank lift (0.5 − normalised rank)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
