"""Chapter 05 analysis: verdicts and glued numbers, from the saved tables only.

Tables read (as saved by the notebook): ``summary`` (one row per seed x condition, see
:func:`experiment.summarise`), ``checkpoints`` (the same during training, with ``step``),
``design`` (one row per seed: sizes of the facts and the model) and ``paper_numbers`` (the
published results we compare with, transcribed with their source file).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ...report import Findings
from ...stats import CONTRADICTS, MIXED, SUPPORTS, Verdict, describe_interval, t_interval

#: the three tests: (name, conditions whose rank lift is pooled per seed, control conditions)
TESTS = (
    ("reversal", ("p2d/reversed", "d2p/reversed"),
     ("p2d/same", "d2p/same", "both/forward", "both/backward")),
    ("two-hop, seen bridge", ("twohop/composed-heldout-seen-city",),
     ("twohop/hop1-heldout-seen-city", "twohop/hop2-heldout-seen-city", "twohop/composed-trained")),
    ("two-hop, unseen bridge", ("twohop/composed-heldout-unseen-city",),
     ("twohop/hop1-heldout-unseen-city", "twohop/hop2-heldout-unseen-city",
      "twohop/composed-trained")),
)


def _need(tables: Mapping[str, pd.DataFrame], name: str, columns: tuple[str, ...]) -> pd.DataFrame:
    if name not in tables:
        raise ValueError(f"chapter 05 analysis needs the table {name!r}; got {sorted(tables)}")
    df = tables[name]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"table {name!r} lacks the columns {missing}")
    return df


def _by_seed(summary: pd.DataFrame, conditions, metric: str) -> pd.Series:
    """Per seed, the mean of ``metric`` over ``conditions``; refuses missing cells and NaNs."""
    conditions = list(conditions)
    sub = summary[summary.condition.isin(conditions)]
    missing = sorted(set(conditions) - set(sub.condition))
    if missing:
        raise ValueError(f"summary lacks the conditions {missing}")
    wide = sub.pivot(index="seed", columns="condition", values=metric)[conditions]
    if wide.isna().any().any():
        raise ValueError(f"summary has missing or NaN {metric!r} values for {conditions}")
    return wide.mean(axis=1)


def ci(values) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval over seeds (a percentile bootstrap under-covers with
    five seeds)."""
    return t_interval(np.asarray(values, dtype=float))


def no_inference_verdict(low: float, high: float, control_accuracy: float, margin: float = 0.05,
                         control_min: float = 0.9, what: str = "rank lift") -> Verdict:
    """The chapter's rule for one test of "no silent inference from stored facts".

    ``[low, high]``: 95% interval over seeds of the rank lift (0.5 - normalised rank; 0 is
    chance). Supports when ``high < margin`` (no lift beyond the margin), contradicts when
    ``low > margin``, mixed otherwise; always mixed when the controls failed
    (``control_accuracy < control_min``; pass the *lowest* control accuracy over seeds and
    control conditions, so one seed that failed to store its facts is not averaged away),
    because then the test says nothing.
    """
    if not (np.isfinite(low) and np.isfinite(high) and np.isfinite(control_accuracy)):
        raise ValueError(f"non-finite input: interval [{low}, {high}], controls {control_accuracy}")
    if low > high:
        raise ValueError(f"interval low {low} exceeds high {high}")
    span = f"[{low:.3f}, {high:.3f}]"
    if control_accuracy < control_min:
        return Verdict(MIXED, f"controls failed for the {what} (lowest accuracy "
                              f"{control_accuracy:.2f} < {control_min}), so the test is void")
    if high < margin:
        return Verdict(SUPPORTS, f"the 95% interval of the {what} {span} lies below the margin {margin}")
    if low > margin:
        return Verdict(CONTRADICTS, f"the 95% interval of the {what} {span} lies above the margin {margin}")
    return Verdict(MIXED, f"the 95% interval of the {what} {span} straddles the margin {margin}")


def verdict_table(summary: pd.DataFrame, margin: float = 0.05, control_min: float = 0.9) -> pd.DataFrame:
    """One row per test in :data:`TESTS`: the rank lift over seeds (mean and 95% t-interval),
    the top-1 accuracy of the test queries, the lowest accuracy of its controls (over seeds and
    control conditions), the verdict."""
    _need({"summary": summary}, "summary", ("seed", "condition", "accuracy", "top1", "rank_lift",
                                            "chance_top1"))
    rows = []
    for name, conds, controls in TESTS:
        missing = sorted(set(conds + controls) - set(summary["condition"]))
        if missing:
            raise ValueError(f"summary lacks the conditions {missing} needed by test {name!r}")
        lift = _by_seed(summary, conds, "rank_lift")
        est, lo, hi = ci(lift)
        ctrl_rows = summary[summary.condition.isin(controls)]["accuracy"]
        if ctrl_rows.isna().any():
            raise ValueError(f"summary has NaN control accuracies for test {name!r}")
        ctrl = float(ctrl_rows.min())
        v = no_inference_verdict(lo, hi, ctrl, margin, control_min, what=f"{name} rank lift")
        rows.append({"test": name, "n_seeds": int(lift.size), "rank_lift": est, "lift_lo": lo,
                     "lift_hi": hi, "top1": float(_by_seed(summary, conds, "top1").mean()),
                     "chance_top1": float(summary[summary.condition.isin(conds)]["chance_top1"].mean()),
                     "accuracy": float(_by_seed(summary, conds, "accuracy").mean()),
                     "control_accuracy": ctrl, "verdict": v.label, "reason": v.reason})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------
# What the notebook glues
# ------------------------------------------------------------------------------------------
def design(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """Sizes of the experiment (from the ``design`` table and the parameters)."""
    d = _need(tables, "design", ("seed", "n_persons", "n_composed", "n_heldout_seen",
                                 "n_heldout_unseen", "n_params", "corpus_size", "vocab_size"))
    first = d.iloc[0]
    g = {
        "n_per_group": int(params["n_per_group"]), "n_templates": int(params["n_templates"]),
        "n_persons": int(first.n_persons),
        "n_cities": int(params["n_countries"]) * int(params["cities_per_country"]),
        "n_countries": int(params["n_countries"]), "n_composed": int(first.n_composed),
        "n_heldout_seen": int(first.n_heldout_seen), "n_heldout_unseen": int(first.n_heldout_unseen),
        "n_layers": int(params["n_layers"]), "d_model": int(params["d_model"]),
        "n_heads": int(params["n_heads"]), "n_params": int(first.n_params),
        "corpus_size": int(first.corpus_size), "lr": float(params["lr"]),
        "batch_size": int(params["batch_size"]), "steps": int(params["steps"]),
        "epochs": int(params["steps"]) * int(params["batch_size"]) / int(first.corpus_size),
        "n_seeds": int(d.seed.nunique()),
        "n_curse_queries": int(params["n_per_group"]) * int(params["n_templates"]),
        "vocab_size": int(first.vocab_size),
        "chance_top1_country": 100 / int(params["n_countries"]),
        "n_candidates_curse": int(params["n_per_group"]),
        "margin": float(params["margin"]), "control_min": 100 * float(params["control_min"]),
    }
    return Findings(glue=g)


def conditions(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """Accuracy (%) and normalised rank of the conditions the prose quotes, with intervals."""
    s = _need(tables, "summary", ("seed", "condition", "accuracy", "rank"))

    def acc(cond):
        return tuple(100 * x for x in ci(_by_seed(s, [cond], "accuracy")))

    def rank(cond):
        return ci(_by_seed(s, [cond], "rank"))

    g = {}
    g["p2d_same_accuracy"], g["p2d_same_accuracy_lo"], g["p2d_same_accuracy_hi"] = acc("p2d/same")
    g["d2p_same_accuracy"], g["d2p_same_accuracy_lo"], g["d2p_same_accuracy_hi"] = acc("d2p/same")
    g["p2d_rev_accuracy"], g["p2d_rev_accuracy_lo"], g["p2d_rev_accuracy_hi"] = acc("p2d/reversed")
    g["d2p_rev_accuracy"], g["d2p_rev_accuracy_lo"], g["d2p_rev_accuracy_hi"] = acc("d2p/reversed")
    g["p2d_rev_rank"], g["p2d_rev_rank_lo"], g["p2d_rev_rank_hi"] = rank("p2d/reversed")
    g["d2p_rev_rank"], g["d2p_rev_rank_lo"], g["d2p_rev_rank_hi"] = rank("d2p/reversed")
    g["both_fwd_accuracy"] = acc("both/forward")[0]
    g["both_bwd_accuracy"] = acc("both/backward")[0]
    g["hop1_seen_accuracy"] = acc("twohop/hop1-heldout-seen-city")[0]
    g["hop1_unseen_accuracy"] = acc("twohop/hop1-heldout-unseen-city")[0]
    g["hop2_unseen_accuracy"] = acc("twohop/hop2-heldout-unseen-city")[0]
    g["comp_trained_accuracy"] = acc("twohop/composed-trained")[0]
    g["comp_seen_accuracy"], g["comp_seen_accuracy_lo"], g["comp_seen_accuracy_hi"] = \
        acc("twohop/composed-heldout-seen-city")
    g["comp_unseen_accuracy"], g["comp_unseen_accuracy_lo"], g["comp_unseen_accuracy_hi"] = \
        acc("twohop/composed-heldout-unseen-city")
    g["comp_seen_rank"], g["comp_seen_rank_lo"], g["comp_seen_rank_hi"] = \
        rank("twohop/composed-heldout-seen-city")
    g["comp_unseen_rank"], g["comp_unseen_rank_lo"], g["comp_unseen_rank_hi"] = \
        rank("twohop/composed-heldout-unseen-city")
    return Findings(glue=g)


def phrases(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    s = _need(tables, "summary", ("seed", "condition", "rank_lift"))
    m = float(params["margin"])
    out = {}
    for key, conds in (("phrase_rev", ["p2d/reversed", "d2p/reversed"]),
                       ("phrase_seen", ["twohop/composed-heldout-seen-city"]),
                       ("phrase_unseen", ["twohop/composed-heldout-unseen-city"])):
        _, lo, hi = ci(_by_seed(s, conds, "rank_lift"))
        out[key] = describe_interval(lo, hi, margin=m)
    return Findings(glue=out)


def paper(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """The published numbers we set beside ours (read from the transcribed table)."""
    p = _need(tables, "paper_numbers", ("model", "task", "direction", "mean_pct"))
    d = _need(tables, "design", ("n_params",))

    def pct(task, direction):
        row = p[(p.task == task) & (p.direction == direction)]
        if len(row) != 1:
            raise ValueError(f"paper_numbers needs exactly one row for {task}/{direction}")
        return float(row.mean_pct.iloc[0])

    return Findings(glue={
        "paper_d2p_same": pct("DescriptionToName", "trained"),
        "paper_d2p_rev": pct("DescriptionToName", "reversed"),
        "paper_p2d_same": pct("NameToDescription", "trained"),
        "paper_p2d_rev": pct("NameToDescription", "reversed"),
        "paper_params_billion": 175,
        "scale_ratio_million": 175e9 / int(d.n_params.iloc[0]) / 1e6})


def curve_of(curve: pd.DataFrame, conds) -> pd.DataFrame:
    """Rank lift during training, mean over ``conds``: one column per seed, indexed by step."""
    sub = curve[curve.condition.isin(list(conds))].groupby(["step", "seed"])["rank_lift"].mean()
    return sub.unstack("seed")


def training(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    c = _need(tables, "checkpoints", ("step", "seed", "condition", "rank_lift", "n_queries"))
    mean = {k: curve_of(c, conds).mean(axis=1) for k, conds in
            (("rev", ("p2d/reversed", "d2p/reversed")), ("same", ("p2d/same", "d2p/same")),
             ("seen", ("twohop/composed-heldout-seen-city",)),
             ("unseen", ("twohop/composed-heldout-unseen-city",)))}
    after_init = mean["rev"][mean["rev"].index > 0]
    mid = mean["seen"].index[np.argmin(np.abs(mean["seen"].index - int(params["steps"]) / 2))]
    return Findings(glue={
        "checkpoint_items": int(c[c.condition == "p2d/reversed"]["n_queries"].iloc[0]),
        "n_checkpoints": int(c.step.nunique()),
        "curve_rev_min": after_init.min(), "curve_rev_max": after_init.max(),
        "curve_same_final": mean["same"].iloc[-1],
        "curve_seen_mid": mean["seen"].loc[mid], "curve_seen_final": mean["seen"].iloc[-1],
        "curve_unseen_mid": mean["unseen"].loc[mid], "curve_unseen_final": mean["unseen"].iloc[-1]})


def verdicts(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    s = _need(tables, "summary", ("seed", "condition", "rank_lift"))
    vt = verdict_table(s, margin=float(params["margin"]), control_min=float(params["control_min"]))
    parts = [Verdict(r.verdict, f"{r.test}: {r.reason}") for r in vt.itertuples()]
    overall = Verdict.combine(parts)
    rev, seen, unseen = (vt.iloc[i] for i in range(3))
    seen_lifts = _by_seed(s, ["twohop/composed-heldout-seen-city"], "rank_lift")
    g = {"verdict": overall.label, "verdict_reason": overall.reason,
         "lift_rev": rev.rank_lift, "lift_rev_lo": rev.lift_lo, "lift_rev_hi": rev.lift_hi,
         "verdict_rev": rev.verdict, "control_rev": 100 * rev.control_accuracy,
         "lift_seen": seen.rank_lift, "lift_seen_lo": seen.lift_lo, "lift_seen_hi": seen.lift_hi,
         "verdict_seen": seen.verdict, "control_seen": 100 * seen.control_accuracy,
         "lift_unseen": unseen.rank_lift, "lift_unseen_lo": unseen.lift_lo,
         "lift_unseen_hi": unseen.lift_hi, "verdict_unseen": unseen.verdict,
         "control_unseen": 100 * unseen.control_accuracy,
         "seen_lift_min": seen_lifts.min(), "seen_lift_max": seen_lifts.max()}
    return Findings(glue=g, tables={"verdicts": vt})


def analyse(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """Everything the notebook glues, from the saved tables."""
    return Findings.merge(design(tables, params), conditions(tables, params),
                          phrases(tables, params), paper(tables, params),
                          training(tables, params), verdicts(tables, params))
