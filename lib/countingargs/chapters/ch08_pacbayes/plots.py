"""Figures of chapter 08, drawn from the saved tables only."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np

from ...figures import figure
from . import analysis

MARK = {"test_err": ("o", "full", "test error"), "cert_err": ("o", "none", "certificate (per-example draws)"),
        "cert_err_draws": ("x", "full", "certificate (shared draws)")}


@figure("pacbayes-certificates")
def certificates(tables: dict, params: dict):
    """Test error and certificates against training-set size, per task and width, with the
    random-label control at the right of each panel."""
    summ = analysis.summary_table(analysis.certified(tables, params))
    tasks = [t for t in analysis.CHANCE if t in set(summ.task)]
    widths = sorted(summ.width.unique())
    colours = dict(zip(widths, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        s = summ[(summ.task == task) & (summ.labels == "true")]
        sizes = sorted(s.n_train.unique())
        pos = {n: i for i, n in enumerate(sizes)}
        for j, w in enumerate(widths):
            sw = s[s.width == w].sort_values("n_train")
            x = np.array([pos[n] for n in sw.n_train]) + (j - (len(widths) - 1) / 2) * 0.12
            for col, (m, fill, label) in MARK.items():
                yerr = np.vstack([sw[col] - sw[f"{col}_lo"], sw[f"{col}_hi"] - sw[col]])
                ax.errorbar(x, sw[col], yerr=np.nan_to_num(yerr), marker=m, fillstyle=fill, color=colours[w],
                            ls="-" if col == "test_err" else ":", lw=1, capsize=2,
                            label=f"{label}, {w} hidden units")
        rnd = summ[(summ.task == task) & (summ.labels == "random")]
        ticks, labels = list(range(len(sizes))), [str(int(n)) for n in sizes]
        if len(rnd):
            xr = len(sizes) + 0.4
            for col, (m, fill, _) in MARK.items():
                r = rnd.iloc[0]
                ax.errorbar([xr], [r[col]], yerr=[[r[col] - r[f"{col}_lo"]], [r[f"{col}_hi"] - r[col]]],
                            marker=m, fillstyle=fill, color="0.3", capsize=2, lw=1)
            ax.axhline(analysis.CHANCE[task], color="0.4", ls="--", lw=1)
            ticks.append(xr)
            labels.append(f"random\nlabels ({int(rnd.n_train.iloc[0])})")
        ax.set_yscale("log")
        ax.set_xticks(ticks, labels)
        ax.set_xlabel("training-set size (digits; half for the prior)")
        ax.set_ylabel("error (share of test digits) / certified risk")
        ax.set_title(analysis.TASK_NAMES[task])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), frameon=False, fontsize=7)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(labels) - 1) // 3), 1, 1))
    return fig


def _effects_panel(ax, comp, fams, families, units, title, lit_slack=None):
    rows = comp[comp.family.isin(families) & (comp.units == units) & comp.verdict.isin(
        [analysis.SUPPORTS, analysis.CONTRADICTS, analysis.MIXED])].copy()
    if rows.empty:
        missing = fams[fams.family.isin(families)]
        text = "\n".join(f"{r.family}: {r.status} ({r.file})" for r in missing.itertuples())
        ax.text(0.5, 0.5, "no effects to compare\n" + text, ha="center", va="center", fontsize=7,
                transform=ax.transAxes, wrap=True)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
        return
    rows["small"] = np.where((rows.lo <= 0) & (rows.hi >= 0), 0.0, np.minimum(rows.lo.abs(), rows.hi.abs()))
    rows = rows.sort_values(["family", "abs_max"], kind="stable").reset_index(drop=True)
    y = np.arange(len(rows))
    for fam, g in rows.groupby("family", sort=False):
        inside = g.small == 0
        ax.hlines(g.index, g.small, g.abs_max, color="0.35", lw=1.2)
        mid = g.effect.abs()
        ax.plot(mid[~inside], g.index[~inside], "o", color="C0", ms=4, label="effect (interval excludes 0)")
        ax.plot(mid[inside], g.index[inside], "o", mfc="white", color="C0", ms=4,
                label="effect (interval includes 0)")
    for ref in rows.drop_duplicates("slack_config").itertuples():
        ax.axvspan(ref.slack_lo, ref.slack_hi, color="C1", alpha=0.25, label=f"slack ({ref.slack_config})")
        ax.axvline(ref.slack, color="C1", lw=1)
    if lit_slack is not None:
        ax.axvline(lit_slack, color="k", ls=":", lw=1, label="slack of the MNIST result Turner cites")
    names = {"01-accuracy": "ch. 01", "01-nats": "ch. 01", "07-nats": "ch. 07"}
    ax.set_yticks(y, [textwrap.fill(f"{names.get(r.family, r.family)}: {r.cell}", 40) for r in rows.itertuples()],
                  fontsize=6)
    ax.set_xlabel("|difference| in test accuracy (share of digits)" if units == "accuracy"
                  else "|difference| (nats)")
    ax.set_xlim(left=0)
    ax.set_title(title)


@figure("pacbayes-slack-vs-effects")
def slack_vs_effects(tables: dict, params: dict):
    """Other chapters' effect sizes (absolute values with intervals) against the slack band of
    the tightest certificate; 0-1 on the left, nats on the right."""
    comp = analysis.comparison_table(tables, params)
    fams = analysis.family_rows(comp, tables["effects"])
    n = max(4, len(comp))
    fig, axes = plt.subplots(1, 2, figsize=(10, 1.6 + 0.16 * n))
    lit = float(params["literature_bound"]) - float(params["literature_test_error"])
    _effects_panel(axes[0], comp, fams, ["01-accuracy"], "accuracy", "0-1 certificate vs accuracy differences",
                   lit_slack=lit)
    _effects_panel(axes[1], comp, fams, ["01-nats", "07-nats"], "nats", "cross-entropy certificate vs nats")
    keep = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            keep.setdefault(lab, h)
    if keep:
        fig.legend(keep.values(), keep.keys(), loc="lower center", ncol=min(3, len(keep)), frameon=False, fontsize=7)
    rows_legend = (len(keep) + 2) // 3
    fig.tight_layout(rect=(0, min(0.4, (0.15 + 0.18 * rows_legend) / fig.get_figheight()), 1, 1))
    return fig
