"""Chapter 05 figures, drawn from the saved tables only (``python -m countingargs replot``)."""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...figures import figure
from .analysis import RATIOS, by_seed, ci, curve_of

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
    lines = [(("p2d/same", "d2p/same"), "weights: trained direction", colours[0], "-"),
             (("p2d/reversed", "d2p/reversed"), "weights: reversed", colours[1], "-"),
             (("twohop/composed-heldout-seen-city",), "weights: composed, seen bridge", colours[2], "--"),
             (("twohop/composed-heldout-unseen-city",), "weights: composed, unseen bridge", colours[3], "--"),
             (("context/p2d/same", "context/d2p/same"), "prompt: written direction", colours[4], ":"),
             (("context/p2d/reversed", "context/d2p/reversed"), "prompt: reversed", colours[5], ":")]
    _curves(ax, curve, lines, margin, "training step")
    return fig


def _curves(ax, curve: pd.DataFrame, lines, margin: float, xlabel: str) -> None:
    """Rank lift against training step: one thin line per seed and their mean, for each
    ``(conditions, label, colour, line style)`` whose conditions the table holds."""
    present = set(curve.condition)
    for conds, label, colour, ls in lines:
        if not set(conds) <= present:
            continue
        c = curve_of(curve, conds)
        ax.plot(c.index, c.to_numpy(), color=colour, lw=0.6, alpha=0.5, ls=ls)
        ax.plot(c.index, c.mean(axis=1), color=colour, lw=2, ls=ls, label=label)
    ax.axhline(0, color="k", lw=1)
    ax.axhspan(-margin, margin, color="grey", alpha=0.15, label=f"margin ±{margin}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rank lift (0.5 − normalised rank)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


@figure("reversal-ratio")
def ratio(tables: Mapping[str, pd.DataFrame], params: Mapping):
    """Per test, in the models trained on facts and prompts: the rank lift of the same inference
    from facts in the weights and from facts in the prompt (seeds as dots, means with 95%
    t-intervals), beside the prompt controls."""
    s = tables["summary_ratio"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    labels = []
    for i, (name, w_c, _, c_c, c_ctrl) in enumerate(RATIOS):
        for j, (conds, lab, colour) in enumerate(((w_c, "weights", colours[1]),
                                                   (c_c, "prompt", colours[4]),
                                                   (c_ctrl, "prompt control", colours[0]))):
            vals = by_seed(s, conds, "rank_lift_k").to_numpy()
            est, lo, hi = ci(vals)
            x = 4 * i + j
            ax.plot([x - 0.3, x + 0.3], [est, est], color=colour, lw=2.5,
                    label=lab if i == 0 else None)
            ax.errorbar(x, est, yerr=[[est - lo], [hi - est]], color=colour, capsize=4, lw=1.5)
            ax.scatter(x + np.linspace(-0.15, 0.15, len(vals)), vals, s=12, color=colour, zorder=3)
        labels.append((4 * i + 1, name))
    ax.axhline(0, color="k", ls="--", lw=1)
    ax.set_xticks([x for x, _ in labels], [lab for _, lab in labels])
    ax.set_ylabel(f"rank lift among {int(params['context_k'])} candidates\n(0 = chance, 0.5 = always first)")
    ax.set_ylim(-0.25, 0.55)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


@figure("reversal-twohop-long")
def twohop_long(tables: Mapping[str, pd.DataFrame], params: Mapping):
    """Rank lift of held-out compositions (seen and unseen bridge) and of the single hops during
    the long two-hop run."""
    curve = tables["checkpoints_long"]
    margin = float(params["margin"])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    lines = ((("twohop/hop1-heldout-unseen-city", "twohop/hop2-heldout-unseen-city"),
              "single hops, unseen-bridge persons", colours[0], "-"),
             (("twohop/composed-heldout-seen-city",), "composed, held out, seen bridge", colours[2], "--"),
             (("twohop/composed-heldout-unseen-city",), "composed, held out, unseen bridge", colours[3], "--"))
    _curves(ax, curve, lines, margin, "training step (two-hop facts only)")
    return fig
