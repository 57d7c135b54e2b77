"""Verdicts and glued numbers of chapter 01, computed from the saved tables only.

Tables (as written by :func:`experiment.run`): ``metrics`` (one row per student and checkpoint),
``curves``, ``matched`` (hard students at the distilled students' training CE), ``budget``
(hard students where each compute budget runs out), ``teachers``, ``split``.
:func:`analyse` returns every glued value and derived table.

The claim is tested in four versions, each with its own verdict and ledger row (no combined
label ranks one above the others):

* ``T``: training-label CE, distilled vs the hard student trained to convergence;
* ``H``: held-out (test) CE, distilled vs the hard student stopped at its best validation loss;
* ``M``: held-out CE at matched training CE (the hard student at the step where its training
  CE falls to the distilled student's final training CE);
* ``C``: compute view: at a fixed budget of parameter-epochs, the widest student (fewer epochs)
  vs the narrowest (more epochs), held-out CE, at the budgets that stop the widest student
  before it has converged (elsewhere both are trained out: a comparison of sizes, reported
  without a verdict).

Held-out CE against the *converged* hard student is reported as context only: on separable data
an unregularised student's test CE keeps rising with training time, so that gap depends on an
arbitrary stopping point.

A cell is one (training size, width) or, for ``C``, one (training size, budget). Its paired
difference over seeds (same training subset; for T/H/M also the same initial weights) gets a
95% Student-t interval; the cell supports when the interval lies above zero (favouring
distillation, or the bigger student), contradicts when below, mixed otherwise, and is *missing*
with fewer than two paired seeds. A version is supported (contradicted) when at least two thirds
of its planned cells support (contradict) it; otherwise mixed (missing cells count for neither).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ... import report
from ...report import Findings
from ...stats import CONTRADICTS, MIXED, SUPPORTS, Verdict, t_interval

KEYS = ["n_train", "width", "seed"]
MISSING = "missing"
LEVEL = 0.05                       # two-sided; the 95% intervals

#: measure -> (version, what the paired difference is); > 0 favours distillation
MEASURES = {
    "train_ce_vs_converged": ("T", "training CE: hard (converged) − distilled"),
    "test_ce_vs_early_stopped": ("H", "test CE: hard (early-stopped) − distilled"),
    "test_ce_loss_matched": ("M", "test CE: hard (at matched training CE) − distilled"),
    "test_ce_vs_converged": ("context", "test CE: hard (converged) − distilled"),
}
VERSIONS = {
    "T": "training-label CE against the converged hard student",
    "H": "held-out CE against the early-stopped hard student",
    "M": "held-out CE at matched training CE",
    "C": "held-out CE at a fixed compute budget, widest (stopped early) vs narrowest student",
}
QUOTE_LOSS = "substantially lower loss than supervised training to convergence"
QUOTE_COMPUTE = "done in practice to use compute effectively"
SOURCE = "Turner, reply to Hubinger ('loss just does not constrain training that tightly')"


# -- inputs -------------------------------------------------------------------------------------
def _require(tables: dict, *names: str) -> None:
    missing = [n for n in names if n not in tables]
    if missing:
        raise ValueError(f"chapter 01 analysis needs the tables {missing}; got {sorted(tables)}")


def _finite(df: pd.DataFrame, cols: list[str], what: str) -> pd.DataFrame:
    """Refuse NaN or infinite values in ``cols`` (a diverged run must not vanish silently)."""
    bad = ~np.isfinite(df[cols].to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        raise ValueError(f"{what}: non-finite values in {cols} for rows "
                         f"{df.loc[bad, [c for c in KEYS if c in df]].head(3).to_dict('records')}")
    return df


def best_temperature(metrics: pd.DataFrame) -> pd.Series:
    """Per (n_train, width), the distillation temperature with the lowest mean *validation*
    cross-entropy of the final distilled students (ties: the lowest temperature)."""
    dist = metrics[(metrics.checkpoint == "final") & (metrics.condition == "distill")]
    if dist.empty:
        raise ValueError("metrics has no final distilled students")
    _finite(dist, ["val_ce"], "distilled students")
    return (dist.groupby(["n_train", "width", "temperature"]).val_ce.mean().reset_index()
            .sort_values(["val_ce", "temperature"], kind="stable").groupby(["n_train", "width"]).head(1)
            .set_index(["n_train", "width"]).temperature.sort_index())


def _chosen(df: pd.DataFrame, best_t: pd.Series) -> pd.DataFrame:
    t = best_t.reindex(pd.MultiIndex.from_frame(df[["n_train", "width"]])).to_numpy()
    return df[np.isclose(df.temperature.to_numpy(), t)]


def students(tables: dict) -> dict[str, pd.DataFrame]:
    """The students compared, each indexed by (n_train, width, seed): ``hard`` (converged or
    at the cap), ``hard_es`` (early-stopped), ``distill`` (final, temperature chosen on
    validation) and ``matched`` (the hard student at the distilled student's final training CE,
    same temperature; unmatched seeds have ``matched == False`` and NaN values)."""
    _require(tables, "metrics", "matched")
    m = tables["metrics"]
    cols = ["train_ce", "val_ce", "test_ce"]
    hard = m[m.condition == "hard"]
    best_t = best_temperature(m)
    out = {"hard": hard[hard.checkpoint == "final"], "hard_es": hard[hard.checkpoint == "early_stopped"],
           "distill": _chosen(m[(m.condition == "distill") & (m.checkpoint == "final")], best_t)}
    for k, df in out.items():
        _finite(df, cols, f"{k} students")
    matched = _chosen(tables["matched"], best_t)
    _finite(matched[matched.matched], ["epoch", "train_ce", "level", "test_ce"], "loss-matched students")
    out["matched"] = matched
    return {k: df.set_index(KEYS).sort_index() for k, df in out.items()}


# -- cells --------------------------------------------------------------------------------------
def p_value(diff: np.ndarray) -> float:
    """Two-sided one-sample t-test of mean zero (the test behind the 95% t-interval: the interval
    excludes zero exactly when p < 0.05). All values equal: 0 if non-zero, else 1."""
    from scipy import stats as st

    d = np.asarray(diff, dtype=float)
    if np.all(d == d[0]):
        return 0.0 if d[0] != 0 else 1.0
    return float(st.ttest_1samp(d, 0.0).pvalue)


def paired_cell(a: pd.Series, b: pd.Series) -> dict:
    """Paired difference ``a - b`` over the seeds both have (index: seed): mean, 95% t-interval,
    p-value, verdict (> 0 supports); verdict ``missing`` with fewer than two pairs."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    d = (both.a - both.b).to_numpy()
    row = {"n_seeds": len(d), "a": float(both.a.mean()) if len(d) else math.nan,
           "b": float(both.b.mean()) if len(d) else math.nan}
    if len(d) < 2:
        return {**row, "diff": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan, "verdict": MISSING}
    est, lo, hi = t_interval(d)
    return {**row, "diff": est, "lo": lo, "hi": hi, "p": p_value(d),
            "verdict": Verdict.from_interval(lo, hi, favour="positive").label}


def _pairs(tables: dict) -> dict[str, tuple[pd.DataFrame, str, pd.DataFrame, str]]:
    s = students(tables)
    matched = s["matched"][s["matched"].matched]
    return {"train_ce_vs_converged": (s["hard"], "train_ce", s["distill"], "train_ce"),
            "test_ce_vs_early_stopped": (s["hard_es"], "test_ce", s["distill"], "test_ce"),
            "test_ce_loss_matched": (matched, "test_ce", s["distill"], "test_ce"),
            "test_ce_vs_converged": (s["hard"], "test_ce", s["distill"], "test_ce")}


def cell_table(tables: dict) -> pd.DataFrame:
    """One row per (measure, width, n_train): ``hard`` and ``distill`` means, the paired
    difference hard − distilled (nats, > 0 favours distillation) with its interval, p-value and
    verdict, the ratio of the means, and the seeds paired. Every planned cell is listed, a cell
    without two paired seeds as ``missing``."""
    best_t = best_temperature(tables["metrics"])
    rows = []
    for measure, (a, col_a, b, col_b) in _pairs(tables).items():
        for (n, w), t in best_t.items():
            get = lambda df, col: df[col].xs((n, w), level=["n_train", "width"]) \
                if (n, w) in df.index.droplevel("seed") else pd.Series(dtype=float)   # noqa: E731
            c = paired_cell(get(a, col_a), get(b, col_b))
            rows.append({"measure": measure, "version": MEASURES[measure][0], "n_train": n, "width": w,
                         "temperature": t, "hard": c.pop("a"), "distill": c.pop("b"), **c})
    cells = pd.DataFrame(rows)
    cells["ratio"] = cells.hard / cells.distill
    return cells.sort_values(["measure", "width", "n_train"], ignore_index=True)


def compute_table(tables: dict) -> pd.DataFrame:
    """One row per (n_train, budget): held-out CE of the narrowest and the widest hard student
    when the budget (parameter-epochs) runs out, the paired difference narrow − wide (> 0: the
    bigger student stopped early wins) with interval, p and verdict; the width with the lowest
    mean test CE at that budget (``best_width``), and where its training CE stands: its value,
    its converged value (final state of the same students) and their ratio, and the share of
    its students that had already stopped (converged) before the budget ran out.

    ``applies``: the cell tests version C only if the budget ran out before most (more than
    half) of the widest students had converged, i.e. the bigger student was stopped early."""
    _require(tables, "budget", "metrics")
    bud = _finite(tables["budget"], ["train_ce", "test_ce"], "budget probes")
    widths = sorted(bud.width.unique())
    if len(widths) < 2:
        raise ValueError(f"the compute view needs at least two widths, got {widths}")
    narrow, wide = widths[0], widths[-1]
    conv = students(tables)["hard"].train_ce
    rows = []
    for (n, b), g in bud.groupby(["n_train", "budget"]):
        by_w = {w: gw.set_index("seed") for w, gw in g.groupby("width")}
        c = paired_cell(by_w[narrow].test_ce, by_w[wide].test_ce)
        best = min(by_w, key=lambda w: by_w[w].test_ce.mean())
        gb = by_w[best]
        conv_best = conv.xs((n, best), level=["n_train", "width"]).reindex(gb.index)
        rows.append({"n_train": n, "budget": b, "narrow": narrow, "wide": wide,
                     "epochs_narrow": int(by_w[narrow].epoch.iloc[0]), "epochs_wide": int(by_w[wide].epoch.iloc[0]),
                     "narrow_test_ce": c.pop("a"), "wide_test_ce": c.pop("b"), **c,
                     "best_width": best, "best_epochs": int(gb.epoch.iloc[0]),
                     "best_test_ce": float(gb.test_ce.mean()), "best_train_ce": float(gb.train_ce.mean()),
                     "best_converged_train_ce": float(conv_best.mean()),
                     "best_stopped_share": float(gb.stopped.mean()),
                     "wide_stopped_share": float(by_w[wide].stopped.mean())})
    out = pd.DataFrame(rows)
    out["best_train_ratio"] = out.best_train_ce / out.best_converged_train_ce
    out["applies"] = out.wide_stopped_share <= 0.5
    return out


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries stay NaN and do not
    count): controls the family-wise error rate."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def with_holm(cells: pd.DataFrame, compute: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``p_holm`` and ``verdict_holm`` over the family of every cell that enters a verdict
    (versions T, H, M and the compute cells that apply; the context cells are not in it): a
    cell keeps a support or contradict verdict only if its Holm-adjusted p stays below 0.05."""
    fam_c, fam_k = (cells.version != "context").to_numpy(), compute.applies.to_numpy(dtype=bool)
    adj = holm(np.concatenate([cells.p.to_numpy()[fam_c], compute.p.to_numpy()[fam_k]]))
    cells, compute = cells.copy(), compute.copy()
    for df, fam, part in ((cells, fam_c, adj[:fam_c.sum()]), (compute, fam_k, adj[fam_c.sum():])):
        df["p_holm"] = np.nan
        df.loc[fam, "p_holm"] = part
        keep = df.p_holm < LEVEL
        df["verdict_holm"] = np.where(df.verdict == MISSING, MISSING, np.where(keep, df.verdict, MIXED))
        df.loc[~fam, "verdict_holm"] = ""
    return cells, compute


# -- versions -----------------------------------------------------------------------------------
def version_verdict(labels, planned: int) -> tuple[str, int, int, int]:
    """The rule for one version: ``supports`` when at least two thirds of its ``planned`` cells
    support, ``contradicts`` when two thirds contradict, otherwise ``mixed``. Returns
    ``(label, supports, contradicts, missing)``."""
    labels = list(labels)
    if planned < 1 or len(labels) != planned:
        raise ValueError(f"expected {planned} cell verdicts, got {len(labels)}")
    bad = set(labels) - {SUPPORTS, CONTRADICTS, MIXED, MISSING}
    if bad:
        raise ValueError(f"unknown cell verdicts {sorted(bad)}")
    sup, con, mis = labels.count(SUPPORTS), labels.count(CONTRADICTS), labels.count(MISSING)
    label = SUPPORTS if sup >= 2 * planned / 3 else CONTRADICTS if con >= 2 * planned / 3 else MIXED
    return label, sup, con, mis


def pooled_effect(tables: dict, version: str, compute: pd.DataFrame | None = None) -> tuple[float, float, float]:
    """One number per version for the ledger: each seed's paired difference averaged over the
    version's cells (for C the cells of ``compute`` that apply), then the mean over seeds with
    its 95% t-interval (nats)."""
    if version == "C":
        bud = tables["budget"]
        widths = sorted(bud.width.unique())
        p = bud[bud.width.isin([widths[0], widths[-1]])].pivot_table(
            index=["n_train", "budget", "seed"], columns="width", values="test_ce")
        use = compute[compute.applies].set_index(["n_train", "budget"]).index
        p = p[p.index.droplevel("seed").isin(use)]
        per_seed = (p[widths[0]] - p[widths[-1]]).groupby(level="seed").mean()
    else:
        measure = next(k for k, (v, _) in MEASURES.items() if v == version)
        a, col_a, b, col_b = _pairs(tables)[measure]
        d = (a[col_a] - b[col_b].reindex(a.index)).dropna()
        per_seed = d.groupby(level="seed").mean()
    if len(per_seed) < 2:
        return math.nan, math.nan, math.nan
    return t_interval(per_seed.to_numpy())


def _effect_text(eff: float, lo: float, hi: float) -> str:
    if not np.isfinite(eff):
        return "not computable (fewer than two seeds could be paired)"
    return f"{eff:.3f} nats [{lo:.3f}, {hi:.3f}]"


def _by_width(cells: pd.DataFrame, key: str = "verdict") -> str:
    parts = []
    for w, g in cells.groupby("width"):
        parts.append(f"{w} hidden units: {(g[key] == SUPPORTS).sum()} of {len(g)} sizes support, "
                     f"{(g[key] == CONTRADICTS).sum()} contradict")
    return "; ".join(parts)


def _nats(x: float) -> str:
    return f"{x:.3g} nats"


def _finding_compute(compute: pd.DataFrame) -> str:
    wide, narrow = int(compute.wide.iloc[0]), int(compute.narrow.iloc[0])
    app, rest = compute[compute.applies], compute[~compute.applies]
    sup, con = (app.verdict == SUPPORTS).sum(), (app.verdict == CONTRADICTS).sum()
    text = (f"In {len(app)} of {len(compute)} (size, budget) cells the budget ran out before most {wide}-unit "
            f"students had converged")
    if len(app):
        won = app[app.best_width == wide]
        text += (f"; there the 95% interval put the test CE of the {wide}-unit student (fewest epochs) below the "
                 f"{narrow}-unit one's in {sup} and above it in {con}, and the width with the lowest test CE was "
                 f"the widest in {len(won)} of {len(app)}")
        if len(won):
            text += (f", its training CE when the budget ran out a median {_nats(won.best_train_ce.median())}, "
                     f"{won.best_train_ratio.median():.3g} times its converged value "
                     f"({_nats(won.best_converged_train_ce.median())})")
    if len(rest):
        text += (f". In the other {len(rest)} cells the {wide}-unit students had mostly converged (a comparison "
                 f"of sizes, not of stopping early, with no verdict); its test CE was below the {narrow}-unit "
                 f"one's in {(rest.verdict == SUPPORTS).sum()} and above it in {(rest.verdict == CONTRADICTS).sum()}")
    return text + "."


def finding(version: str, cells: pd.DataFrame, compute: pd.DataFrame) -> str:
    """One sentence per version, written from the cells."""
    if version == "C":
        return _finding_compute(compute)
    c = cells[cells.version == version]
    tested = c[c.verdict != MISSING]
    sup, con, mis = (c.verdict == SUPPORTS).sum(), (c.verdict == CONTRADICTS).sum(), (c.verdict == MISSING).sum()
    what = {"T": ("training-label CE", "the converged hard student's"),
            "H": ("test CE", "the early-stopped hard student's"),
            "M": ("test CE", "the hard student's at the same training CE")}[version]
    if tested.empty:
        return f"No cell had two paired seeds ({mis} of {len(c)} missing)."
    return (f"The 95% interval put the distilled student's {what[0]} below {what[1]} in {sup} of {len(c)} "
            f"cells and above it in {con}" + (f" ({mis} without two paired seeds)" if mis else "")
            + f"; the paired difference hard − distilled ranged from {_nats(tested['diff'].min())} to "
            f"{_nats(tested['diff'].max())} (median {_nats(tested['diff'].median())}; median ratio hard/distilled "
            f"of the means {tested.ratio.median():.3g}); by width: {_by_width(c)}.")


# -- analyses (one per notebook cell) -------------------------------------------------------------
def convergence(tables: dict, params: dict) -> Findings:
    """How many students met the convergence criterion; the parameter count of each width; when
    the teachers' members stopped."""
    _require(tables, "metrics", "budget", "split", "teachers")
    teach = tables["teachers"]
    m = tables["metrics"]
    final = m[m.checkpoint == "final"]
    hard, dist = final[final.condition == "hard"], final[final.condition == "distill"]
    not_conv = hard[~hard.converged].groupby(["width", "n_train"]).size()
    seeds = int(hard.seed.nunique())
    n_par = tables["budget"].groupby("width").n_params.first()
    sizes = tables["split"].set_index("part")["size"]
    g = {"hard_converged_pct": 100 * float(hard.converged.mean()),
         "hard_epochs_max": int(hard.epochs_run.max()),
         "hard_epochs_median": float(hard.epochs_run.median()),
         "not_converged_cells": "none" if not len(not_conv) else "; ".join(
             f"{k} of {seeds} at width {w}, {n} digits" for (w, n), k in not_conv.items()),
         "dist_converged_pct": 100 * float(dist.converged.mean()),
         "cap_final_change": ("none" if hard.converged.all() else
                              f"{hard[~hard.converged].final_change.max():.2g} nats"),
         "n_seeds_used": seeds,
         "params_sentence": "; ".join(f"{w} hidden units: {p:,d} parameters" for w, p in n_par.items()),
         "n_params_widest": int(n_par.iloc[-1]), "n_params_narrowest": int(n_par.iloc[0]),
         "n_test": int(sizes["test"]), "n_val": int(sizes["validation"]),
         "teacher_es_median": float(teach.best_epoch_median.median()),
         "teacher_es_max": int(teach.best_epoch_max.max())}
    return Findings(glue=g)


def cells(tables: dict, params: dict) -> Findings:
    """The tested cells with their intervals, verdicts and the Holm-adjusted verdicts."""
    c, comp = with_holm(cell_table(tables), compute_table(tables))
    fam = pd.concat([c[c.version != "context"], comp[comp.applies]])
    decided = fam.verdict.isin([SUPPORTS, CONTRADICTS])
    g = {"n_family": int(len(fam)), "n_family_tested": int((fam.verdict != MISSING).sum()),
         "n_decided": int(decided.sum()),
         "n_decided_holm": int(fam.verdict_holm.isin([SUPPORTS, CONTRADICTS]).sum()),
         "n_cells": int((c.version == "T").sum()), "n_compute_cells": int(len(comp)),
         "n_compute_applies": int(comp.applies.sum())}
    return Findings(glue=g, tables={"cells": c, "compute_cells": comp})


def fair_baselines(tables: dict, params: dict) -> Findings:
    """Numbers for the prose on versions T, H, M and the converged context."""
    c = cell_table(tables)
    s = students(tables)
    conv = c[c.measure == "test_ce_vs_converged"]
    g = {"gap_test_conv_median": float(conv["diff"].median()), "ratio_test_conv_median": float(conv.ratio.median()),
         "by_width_test_conv": _by_width(conv)}
    # the data-size trend, on the fair baselines: is hard − distilled lower at the largest size?
    for key, measure in (("test_es", "test_ce_vs_early_stopped"), ("matched", "test_ce_loss_matched")):
        sub = c[(c.measure == measure) & (c.verdict != MISSING)]
        shrink = [int(gw.sort_values("n_train")["diff"].iloc[-1] < gw.sort_values("n_train")["diff"].iloc[0])
                  for _, gw in sub.groupby("width") if len(gw) >= 2]
        g[f"gap_shrinks_{key}"] = int(sum(shrink))
        g[f"gap_widths_{key}"] = int(len(shrink))
    # the converged baseline: held-out CE rises between the early-stopped and the final state
    rise = (s["hard"].test_ce - s["hard_es"].test_ce)
    g["test_rise_median"] = float(rise.median())
    g["test_rise_pct_positive"] = 100 * float((rise > 0).mean())
    # loss matching: how close, how many, when
    mt = s["matched"]
    ok = mt[mt.matched]
    g["matched_pct"] = 100 * float(mt.matched.mean())
    g["matched_missing"] = int((~mt.matched).sum())
    g["match_gap_median"] = float((ok.level - ok.train_ce).median())
    g["match_gap_max"] = float((ok.level - ok.train_ce).max())
    g["match_gap_rel_max_pct"] = 100 * float(((ok.level - ok.train_ce) / ok.level).max())
    g["match_step_drop_median"] = float((ok.prev_train_ce - ok.train_ce).median())
    es_epoch = s["hard_es"].epoch.reindex(ok.index)
    g["matched_before_es_pct"] = 100 * float((ok.epoch <= es_epoch).mean())
    g["matched_epoch_median"] = float(ok.epoch.median())
    g["n_small"], g["n_large"] = int(c.n_train.min()), int(c.n_train.max())
    return Findings(glue=g)


def compute_view(tables: dict, params: dict) -> Findings:
    """Numbers for the prose on the compute view (version C)."""
    comp = compute_table(tables)
    g = {"budgets_text": ", ".join(f"{b:,.0f}" for b in sorted(comp.budget.unique())),
         "compute_best_text": "; ".join(
             f"{int(n)} digits: " + ", ".join(f"{int(r.best_width)}" for r in gr.sort_values("budget").itertuples())
             for n, gr in comp.groupby("n_train"))}
    return Findings(glue=g)


def early_stopping(tables: dict, params: dict) -> Findings:
    """Where the hard students' validation loss bottomed out, relative to their whole run."""
    s = students(tables)
    hard, es = s["hard"], s["hard_es"]
    widths = sorted(tables["metrics"].width.unique())
    g = {"es_epoch_median_pct": 100 * float((es.epoch / es.epochs_run).median()),
         "es_train_ce_median": float(es.train_ce.median()),
         "conv_train_ce_median": float(hard.train_ce.median()),
         "dist_train_ce_median": float(s["distill"].train_ce.median()),
         "es_train_ce_ratio_median": float((es.train_ce / hard.train_ce).median()),
         "es_train_gap_median": float((es.train_ce - hard.train_ce).median()),
         "w_show": int(widths[len(widths) // 2])}
    return Findings(glue=g)


def verdicts(tables: dict, params: dict) -> Findings:
    """The verdict of each version (with and without Holm's correction), the ledger rows, and a
    summary line for the book's one-line-per-chapter ledger page."""
    c, comp = with_holm(cell_table(tables), compute_table(tables))
    rows, ledger, g = [], [], {}
    keys = {"T": "train", "H": "test_es", "M": "matched", "C": "compute"}
    for version, key in keys.items():
        sub = comp[comp.applies] if version == "C" else c[c.version == version]
        if len(sub):
            label, sup, con, mis = version_verdict(sub.verdict, len(sub))
            label_h, sup_h, con_h, _ = version_verdict(sub.verdict_holm, len(sub))
        else:                       # no budget stopped the widest student early: nothing to test
            label, sup, con, mis, label_h, sup_h, con_h = MIXED, 0, 0, 0, MIXED, 0, 0
        eff, lo, hi = pooled_effect(tables, version, comp)
        text = finding(version, c, comp)
        rows.append({"version": version, "tested": VERSIONS[version], "cells": len(sub), "supports": sup,
                     "contradicts": con, "missing": mis, "verdict": label, "supports_holm": sup_h,
                     "contradicts_holm": con_h, "verdict_holm": label_h, "effect": eff, "effect_lo": lo,
                     "effect_hi": hi})
        g.update({f"verdict_{key}": label, f"cells_support_{key}": sup, f"cells_contradict_{key}": con,
                  f"cells_missing_{key}": mis, f"verdict_holm_{key}": label_h, f"finding_{key}": text,
                  f"effect_{key}": _effect_text(eff, lo, hi)})
        ledger.append(_ledger_row(version, label, eff, lo, hi, text))
    versions = pd.DataFrame(rows)
    changed = versions[versions.verdict != versions.verdict_holm]
    g["holm_changes"] = ("none" if changed.empty else "; ".join(
        f"version {r.version}: {r.verdict} → {r.verdict_holm}" for r in changed.itertuples()))
    g["verdict_reason"] = "; ".join(f"version {r.version} ({r.tested}): {r.verdict} ({r.supports} of {r.cells} "
                                    f"cells support, {r.contradicts} contradict)" for r in versions.itertuples())
    # The book's ledger page has one line per chapter: it shows the combination that ranks no
    # version above another (all versions agree -> that label, otherwise mixed) next to
    # verdict_reason, which lists every version.
    g["verdict"] = Verdict.combine(Verdict(v, "") for v in versions.verdict).label
    return Findings(glue=g, tables={"versions": versions, "ledger": report.ledger_table(ledger)})


LEDGER = {
    "T": ("01-train-vs-converged",
          "A student trained on a teacher's soft labels ends with lower cross-entropy on the hard training labels "
          "than the same student trained on those labels until its loss stops moving.", QUOTE_LOSS, "distill-gap"),
    "H": ("01-heldout-vs-early-stopped",
          "A distilled student reaches lower held-out cross-entropy than the same student trained on the labels "
          "and stopped at its lowest validation loss.", QUOTE_LOSS, "distill-gap"),
    "M": ("01-heldout-loss-matched",
          "At the same training cross-entropy on the labels, the distilled student has lower held-out "
          "cross-entropy than the label-trained one: one training loss, reached by two runs, ends in different places.",
          QUOTE_LOSS, "distill-gap"),
    "C": ("01-compute-budget",
          "At a fixed compute budget (epochs × parameters), a bigger student stopped when the budget runs out "
          "reaches lower held-out loss than a smaller student trained for longer.", QUOTE_COMPUTE, "distill-compute"),
}


def _ledger_row(version: str, verdict: str, eff: float, lo: float, hi: float, text: str) -> dict:
    rid, claim, quote, fig = LEDGER[version]
    name = ("test CE narrowest − widest student at equal budget, mean over the (size, budget) cells that stop "
            "the widest early" if version == "C"
            else f"{MEASURES[next(k for k, (v, _) in MEASURES.items() if v == version)][1]}, mean over cells")
    return report.ledger_row(id=rid, chapter="01_distillation", claim=claim, who="Turner", quote=quote,
                             source=SOURCE, version=f"{version}: {VERSIONS[version]}",
                             claim_side=report.SCEPTIC, effect_name=name, effect=eff, effect_lo=lo,
                             effect_hi=hi, units="nats", verdict=verdict, finding=text, figure=fig)


def analyse(tables: dict, params: dict) -> Findings:
    """Every glued value and derived table of the chapter."""
    return Findings.merge(convergence(tables, params), cells(tables, params), fair_baselines(tables, params),
                          compute_view(tables, params), early_stopping(tables, params),
                          verdicts(tables, params))
