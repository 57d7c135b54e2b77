"""Verdicts and glued numbers of chapter 01, computed from the saved tables only.

Tables (as written by :func:`experiment.run`): ``metrics`` (one row per student and checkpoint),
``curves``, ``teachers``, ``split``. :func:`analyse` returns every glued value and derived table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...report import Findings
from ...stats import CONTRADICTS, MIXED, SUPPORTS, Verdict, t_interval

KEYS = ["n_train", "width", "seed"]
MEASURES = ("train_ce", "test_ce", "test_ce_vs_early_stopped", "test_acc")


def _require(tables: dict, *names: str) -> None:
    missing = [n for n in names if n not in tables]
    if missing:
        raise ValueError(f"chapter 01 analysis needs the tables {missing}; got {sorted(tables)}")


def best_temperature(metrics: pd.DataFrame) -> pd.Series:
    """Per (n_train, width), the distillation temperature with the lowest mean *validation*
    cross-entropy of the final distilled students (ties: the first in sorted order)."""
    dist = metrics[(metrics.checkpoint == "final") & (metrics.condition == "distill")]
    if dist.empty:
        raise ValueError("metrics has no final distilled students")
    return (dist.groupby(["n_train", "width", "temperature"]).val_ce.mean().reset_index()
            .sort_values("val_ce", kind="stable").groupby(["n_train", "width"]).head(1)
            .set_index(["n_train", "width"]).temperature.sort_index())


def students(metrics: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The three kinds of student compared, each indexed by (n_train, width, seed):
    ``hard`` (converged), ``hard_es`` (early-stopped), ``distill`` (temperature chosen on
    validation)."""
    final = metrics[metrics.checkpoint == "final"]
    dist = final[final.condition == "distill"]
    best_t = best_temperature(metrics)
    chosen = pd.concat([dist[(dist.n_train == n) & (dist.width == w) & (dist.temperature == t)]
                        for (n, w), t in best_t.items()])
    hard_es = metrics[(metrics.condition == "hard") & (metrics.checkpoint == "early_stopped")]
    return {"hard": final[final.condition == "hard"].set_index(KEYS).sort_index(),
            "hard_es": hard_es.set_index(KEYS).sort_index(),
            "distill": chosen.set_index(KEYS).sort_index()}


def cell_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (measure, width, n_train): the paired difference over seeds (hard minus
    distilled for losses, distilled minus hard for accuracy, so > 0 favours distillation), its
    95% Student-t interval over seeds and the cell's verdict."""
    s = students(metrics)
    best_t = best_temperature(metrics)
    rows = []
    for (n, w), t in best_t.items():
        h, e, d = s["hard"].loc[(n, w)], s["hard_es"].loc[(n, w)], s["distill"].loc[(n, w)]
        for measure, a, b in (("train_ce", h.train_ce, d.train_ce), ("test_ce", h.test_ce, d.test_ce),
                              ("test_ce_vs_early_stopped", e.test_ce, d.test_ce),
                              ("test_acc", d.test_acc, h.test_acc)):
            diff = (a - b).to_numpy()
            est, lo, hi = t_interval(diff)
            v = Verdict.from_interval(lo, hi, favour="positive", what=f"{measure} difference")
            rows.append(dict(n_train=n, width=w, temperature=t, measure=measure, diff=est, lo=lo,
                             hi=hi, verdict=v.label, n_seeds=len(diff)))
    return pd.DataFrame(rows).sort_values(["measure", "width", "n_train"], ignore_index=True)


def version_verdict(cells: pd.DataFrame, measure: str) -> tuple[str, int, int, int]:
    """A version of the claim is supported (contradicted) when at least two thirds of its cells
    support (contradict) it, otherwise mixed. Returns ``(label, supports, contradicts, cells)``."""
    sub = cells[cells.measure == measure]
    k = len(sub)
    if k == 0:
        raise ValueError(f"no cells for measure {measure!r}")
    sup, con = int((sub.verdict == SUPPORTS).sum()), int((sub.verdict == CONTRADICTS).sum())
    label = SUPPORTS if sup >= 2 * k / 3 else CONTRADICTS if con >= 2 * k / 3 else MIXED
    return label, sup, con, k


def overall_verdict(v_train: str, v_test: str) -> str:
    """Supports when version T holds; mixed when only version H does; contradicts otherwise."""
    return SUPPORTS if v_train == SUPPORTS else MIXED if v_test == SUPPORTS else CONTRADICTS


CONCLUSIONS = {
    SUPPORTS: ("The data support the strong version of the claim: distilled students end with lower "
               "cross-entropy on the very labels the label-trained students were trained to convergence on."),
    MIXED: ("The data support only the held-out version of the claim. Distilled students reach lower "
            "test loss than label-trained students of the same size, but not lower loss on the training "
            "labels: training to convergence does minimise the training loss here; what it fails to "
            "minimise is the loss on data it has not seen."),
    CONTRADICTS: ("The data support neither version: distillation did not lower the hard-label loss on the "
                  "training set or on held-out data at this scale."),
}


def verdicts(tables: dict, params: dict) -> Findings:
    """The per-cell table and the verdict of each version of the claim."""
    _require(tables, "metrics")
    cells = cell_table(tables["metrics"])
    vT, vH, vHes = (version_verdict(cells, m) for m in ("train_ce", "test_ce", "test_ce_vs_early_stopped"))
    overall = overall_verdict(vT[0], vH[0])
    g = {"verdict_train": vT[0], "cells_support_train": vT[1], "cells_contradict_train": vT[2],
         "verdict_test": vH[0], "cells_support_test": vH[1], "cells_contradict_test": vH[2],
         "verdict_test_es": vHes[0], "cells_support_test_es": vHes[1],
         "cells_contradict_test_es": vHes[2], "n_cells": vT[3], "verdict": overall}
    g["verdict_reason"] = (
        f"version T (training-label CE): {vT[0]} ({vT[1]} of {vT[3]} cells support, {vT[2]} contradict); "
        f"version H (test CE vs the converged student): {vH[0]} ({vH[1]} support, {vH[2]} contradict); "
        f"test CE vs the early-stopped student: {vHes[0]} ({vHes[1]} support, {vHes[2]} contradict)")
    g["conclusion"] = CONCLUSIONS[overall]
    test_gap = cells[cells.measure == "test_ce"].sort_values("n_train")
    g["gap_shrinks"] = sum(int(gr["diff"].iloc[-1] < gr["diff"].iloc[0])
                           for _, gr in test_gap.groupby("width"))
    g["n_widths"] = int(cells.width.nunique())
    g["n_small"], g["n_large"] = int(cells.n_train.min()), int(cells.n_train.max())
    return Findings(glue=g, tables={"cells": cells})


def convergence(tables: dict, params: dict) -> Findings:
    """How many students met the convergence criterion, and the chosen temperatures."""
    _require(tables, "metrics")
    m = tables["metrics"]
    final = m[m.checkpoint == "final"]
    hard = final[final.condition == "hard"]
    dist = final[final.condition == "distill"]
    not_conv = hard[~hard.converged].groupby(["width", "n_train"]).size()
    seeds = int(hard.seed.nunique())
    g = {"hard_converged_pct": 100 * float(hard.converged.mean()),
         "hard_epochs_max": int(hard.epochs_run.max()),
         "not_converged_cells": "none" if not len(not_conv) else "; ".join(
             f"{k} of {seeds} at width {w}, {n} digits" for (w, n), k in not_conv.items()),
         "dist_converged_pct": 100 * float(dist.converged.mean()),
         "max_final_change": float(hard.final_change.max())}
    return Findings(glue=g)


def early_stopping(tables: dict, params: dict) -> Findings:
    """Where the hard students' validation loss bottomed out, relative to their whole run."""
    _require(tables, "metrics")
    s = students(tables["metrics"])
    hard, es = s["hard"], s["hard_es"]
    widths = sorted(tables["metrics"].width.unique())
    g = {"es_epoch_median_pct": 100 * float((es.epoch / es.epochs_run).median()),
         "es_train_ce_ratio_median": float((es.train_ce / hard.train_ce).median()),
         "w_show": int(widths[len(widths) // 2]),
         "n_seeds_used": int(tables["metrics"].seed.nunique())}
    return Findings(glue=g)


def analyse(tables: dict, params: dict) -> Findings:
    """Every glued value and derived table of the chapter."""
    return Findings.merge(convergence(tables, params), verdicts(tables, params),
                          early_stopping(tables, params))
