"""Chapter 05 analysis: verdicts, effect sizes and glued numbers, from the saved tables only.

Tables read (as saved by the notebook):

- ``summary``: one row per seed x condition of the main run, facts of the weights only (see
  :func:`experiment.summarise`: ``p2d/...``, ``d2p/...``, ``both/...``, ``twohop/...``);
- ``checkpoints``: the same during training, with ``step``;
- ``summary_ratio``: the same for the models trained on facts *and* on prompt episodes, with
  the prompt conditions (``context/...``); the ratio tests compare the two routes in these models;
- ``summary_long`` / ``checkpoints_long``: the two-hop-only run with more bridges, trained longer;
- ``design`` / ``design_ratio`` / ``design_long``: one row per seed, sizes of the facts, corpus
  and model;
- ``paper_numbers``: Berglund et al.'s results we compare with; ``literature``: the training
  regime of Wang et al.'s two-hop experiments; both transcribed with their source.

Three kinds of verdict, each about one version of Pope's claim (see the chapter):

1. *absolute* (:func:`no_inference_verdict`): a rank lift against a margin -- the reversal
   curse itself (the premise Pope cited), and composition through a bridge that training never
   used (his clarified claim that inference capabilities come from training);
2. *ratio* (:func:`ratio_verdict`): silent inference from the weights against inference from
   the same kind of facts written in the prompt, Pope's "relative power" of the hidden
   reasoner compared with what the model does in the open.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ... import report
from ...report import Findings
from ...stats import CONTRADICTS, MIXED, SUPPORTS, Verdict, describe_interval, t_interval

CHAPTER = "05_reversal"

#: the absolute tests: (name, conditions whose rank lift is pooled per seed, control conditions)
TESTS = (
    ("reversal", ("p2d/reversed", "d2p/reversed"),
     ("p2d/same", "d2p/same", "both/forward", "both/backward")),
    ("two-hop, seen bridge", ("twohop/composed-heldout-seen-city",),
     ("twohop/hop1-heldout-seen-city", "twohop/hop2-heldout-seen-city", "twohop/composed-trained")),
    ("two-hop, unseen bridge", ("twohop/composed-heldout-unseen-city",),
     ("twohop/hop1-heldout-unseen-city", "twohop/hop2-heldout-unseen-city",
      "twohop/composed-trained")),
)

#: the ratio tests: (name, weights conditions, weights controls, prompt conditions, prompt controls)
RATIOS = (
    ("reversal", ("p2d/reversed", "d2p/reversed"), ("p2d/same", "d2p/same"),
     ("context/p2d/reversed", "context/d2p/reversed"), ("context/p2d/same", "context/d2p/same")),
    ("two-hop, seen bridge", ("twohop/composed-heldout-seen-city",),
     ("twohop/hop1-heldout-seen-city", "twohop/hop2-heldout-seen-city"),
     ("context/twohop/external",), ("context/twohop/hop1", "context/twohop/hop2")),
    ("two-hop, unseen bridge", ("twohop/composed-heldout-unseen-city",),
     ("twohop/hop1-heldout-unseen-city", "twohop/hop2-heldout-unseen-city"),
     ("context/twohop/external",), ("context/twohop/hop1", "context/twohop/hop2")),
)

POPE_TWEET = "Pope, reply to Carlsmith (reposted tweet)"
POPE_CLARIFY = "Pope, later reply on the 'instrumental ghost'"


# ------------------------------------------------------------------------------------------
# Reading the tables
# ------------------------------------------------------------------------------------------
def _need(tables: Mapping[str, pd.DataFrame], name: str, columns: Sequence[str]) -> pd.DataFrame:
    if name not in tables:
        raise ValueError(f"chapter 05 analysis needs the table {name!r}; got {sorted(tables)}")
    df = tables[name]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"table {name!r} lacks the columns {missing}")
    return df


def by_seed(summary: pd.DataFrame, conditions, metric: str) -> pd.Series:
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


def lowest(summary: pd.DataFrame, conditions, metric: str = "accuracy") -> float:
    """The lowest value of ``metric`` over seeds and ``conditions`` (controls are checked by
    their minimum, so one seed that failed is not averaged away)."""
    conditions = list(conditions)
    sub = summary[summary.condition.isin(conditions)]
    missing = sorted(set(conditions) - set(sub.condition))
    if missing:
        raise ValueError(f"summary lacks the control conditions {missing}")
    if sub[metric].isna().any():
        raise ValueError(f"summary has NaN {metric!r} values for the controls {conditions}")
    return float(sub[metric].min())


def ci(values) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval over seeds (a percentile bootstrap under-covers with
    five seeds)."""
    return t_interval(np.asarray(values, dtype=float))


# ------------------------------------------------------------------------------------------
# Verdict rules
# ------------------------------------------------------------------------------------------
def no_inference_verdict(low: float, high: float, control_accuracy: float, margin: float = 0.05,
                         control_min: float = 0.9, what: str = "rank lift") -> Verdict:
    """The rule for an absolute test ("the model draws no such inference").

    ``[low, high]``: 95% interval over seeds of the rank lift (0.5 - normalised rank; 0 is
    chance). Supports when ``high < margin`` (no lift beyond the margin), contradicts when
    ``low > margin``, mixed otherwise; always mixed when the controls failed
    (``control_accuracy < control_min``; pass the *lowest* control accuracy over seeds and
    control conditions), because then the test says nothing.
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


def fieller_ratio(num: Sequence[float], den: Sequence[float], level: float = 0.95
                  ) -> tuple[float, float, float]:
    """Ratio of two paired means ``mean(num) / mean(den)`` with Fieller's interval.

    Returns ``(ratio, low, high)``; ``low``/``high`` are NaN when the interval is unbounded
    (the denominator's mean is not clearly away from zero) and ``ratio`` is NaN when
    ``mean(den) == 0``. The interval holds every ``rho`` for which the paired differences
    ``num - rho * den`` have a Student-t interval containing zero."""
    from scipy import stats as st

    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two or more paired values, got {a.size} and {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("fieller_ratio got a non-finite value")
    n = a.size
    ma, mb = a.mean(), b.mean()
    ratio = ma / mb if mb != 0 else float("nan")
    t2 = st.t.ppf(0.5 + level / 2, n - 1) ** 2
    v11, v22 = a.var(ddof=1) / n, b.var(ddof=1) / n
    v12 = np.cov(a, b, ddof=1)[0, 1] / n
    qa, qb, qc = mb ** 2 - t2 * v22, -2 * (ma * mb - t2 * v12), ma ** 2 - t2 * v11
    disc = qb ** 2 - 4 * qa * qc
    if qa <= 0 or disc < 0:
        return float(ratio), float("nan"), float("nan")
    r1, r2 = sorted(((-qb - math.sqrt(disc)) / (2 * qa), (-qb + math.sqrt(disc)) / (2 * qa)))
    return float(ratio), float(r1), float(r2)


def ratio_verdict(w: Sequence[float], c: Sequence[float], weights_control: float,
                  prompt_control: float, threshold: float = 0.5, control_min: float = 0.9,
                  prompt_control_min: float = 0.9, what: str = "ratio") -> Verdict:
    """The rule for a ratio test (Pope's "relative power" of the hidden reasoner).

    ``w``, ``c``: per seed (paired), the rank lift of the same kind of inference from facts in
    the weights and from facts written in the prompt, on candidate sets of the same size.
    The claim is that silent inference is much weaker: ``mean(w) < threshold * mean(c)``. The
    paired differences ``w - threshold * c`` get a Student-t interval: supports when it lies
    below 0, contradicts when it lies above 0, mixed otherwise (this is Fieller's interval of
    the ratio against ``threshold``). Mixed whatever the numbers when either set of controls
    failed (lowest accuracy over seeds below its minimum): then the model did not hold the facts
    in that place, and the ratio is not measured."""
    if not (np.isfinite(weights_control) and np.isfinite(prompt_control)):
        raise ValueError("control accuracies must be finite")
    if weights_control < control_min:
        return Verdict(MIXED, f"the weights controls failed (lowest accuracy {weights_control:.2f} "
                              f"< {control_min}), so the {what} is not measured")
    if prompt_control < prompt_control_min:
        return Verdict(MIXED, f"the prompt controls failed (lowest accuracy {prompt_control:.2f} "
                              f"< {prompt_control_min}): the models did not learn to read these "
                              f"facts from their prompt, so the {what} is not measured")
    w, c = np.asarray(w, dtype=float), np.asarray(c, dtype=float)
    _, lo, hi = t_interval(w - threshold * c)
    span = f"[{lo:.3f}, {hi:.3f}]"
    if hi < 0:
        return Verdict(SUPPORTS, f"weights minus {threshold:g} x prompt has the 95% interval {span}, "
                                 f"below 0: the {what} lies below {threshold:g}")
    if lo > 0:
        return Verdict(CONTRADICTS, f"weights minus {threshold:g} x prompt has the 95% interval "
                                    f"{span}, above 0: the {what} lies above {threshold:g}")
    return Verdict(MIXED, f"weights minus {threshold:g} x prompt has the 95% interval {span}, "
                          f"which includes 0")


# ------------------------------------------------------------------------------------------
# Derived tables
# ------------------------------------------------------------------------------------------
def verdict_table(summary: pd.DataFrame, margin: float = 0.05, control_min: float = 0.9,
                  tests=TESTS, run: str = "main") -> pd.DataFrame:
    """One row per absolute test: the rank lift over seeds (mean and 95% t-interval over 100 or
    all candidates), top-1 and accuracy of the test queries, the lowest accuracy of its
    controls (over seeds and control conditions), the verdict and its reason."""
    _need({"summary": summary}, "summary", ("seed", "condition", "accuracy", "top1", "rank_lift",
                                            "chance_top1"))
    rows = []
    for name, conds, controls in tests:
        lift = by_seed(summary, conds, "rank_lift")
        est, lo, hi = ci(lift)
        ctrl = lowest(summary, controls)
        v = no_inference_verdict(lo, hi, ctrl, margin, control_min, what=f"{name} rank lift")
        rows.append({"run": run, "test": name, "n_seeds": int(lift.size), "rank_lift": est,
                     "lift_lo": lo, "lift_hi": hi, "lift_min": float(lift.min()),
                     "lift_max": float(lift.max()),
                     "top1": float(by_seed(summary, conds, "top1").mean()),
                     "chance_top1": float(summary[summary.condition.isin(conds)]["chance_top1"].mean()),
                     "accuracy": float(by_seed(summary, conds, "accuracy").mean()),
                     "control_accuracy": ctrl, "verdict": v.label, "reason": v.reason})
    return pd.DataFrame(rows)


def ratio_table(summary: pd.DataFrame, threshold: float = 0.5, control_min: float = 0.9,
                prompt_control_min: float = 0.9) -> pd.DataFrame:
    """One row per ratio test: weights and prompt lifts (``rank_lift_k``, same candidate-set
    size) with t-intervals, the ratio with Fieller's interval, the lowest control accuracies,
    the verdict and its reason."""
    _need({"summary": summary}, "summary", ("seed", "condition", "accuracy", "rank_lift_k"))
    rows = []
    for name, w_c, w_ctrl, c_c, c_ctrl in RATIOS:
        w = by_seed(summary, w_c, "rank_lift_k")
        c = by_seed(summary, c_c, "rank_lift_k")
        w_est, w_lo, w_hi = ci(w)
        c_est, c_lo, c_hi = ci(c)
        ratio, r_lo, r_hi = fieller_ratio(w.to_numpy(), c.reindex(w.index).to_numpy())
        wc, pc = lowest(summary, w_ctrl), lowest(summary, c_ctrl)
        v = ratio_verdict(w.to_numpy(), c.reindex(w.index).to_numpy(), wc, pc, threshold,
                          control_min, prompt_control_min, what=f"{name} ratio")
        rows.append({"test": name, "n_seeds": int(w.size), "weights_lift": w_est,
                     "weights_lo": w_lo, "weights_hi": w_hi, "prompt_lift": c_est,
                     "prompt_lo": c_lo, "prompt_hi": c_hi, "ratio": ratio, "ratio_lo": r_lo,
                     "ratio_hi": r_hi, "weights_control": wc, "prompt_control": pc,
                     "verdict": v.label, "reason": v.reason})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------
# What the notebook glues
# ------------------------------------------------------------------------------------------
def design(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """Sizes of the experiments (from the ``design`` tables and the parameters)."""
    d = _need(tables, "design", ("seed", "n_persons", "n_composed", "n_heldout_seen",
                                 "n_heldout_unseen", "n_params", "corpus_size", "vocab_size"))
    dr = _need(tables, "design_ratio", ("n_context_facts", "n_context_persons", "n_episode_entities",
                                        "pretrain_steps", "n_bases", "context_questions",
                                        "pretrain_batch", "pretrain_lr", "context_twohop_share",
                                        "vocab_size", "n_params"))
    dl = _need(tables, "design_long", ("seed", "n_persons", "n_cities", "n_bridges_seen",
                                       "n_composed", "corpus_size"))
    first, fl, fr = d.iloc[0], dl.iloc[0], dr.iloc[0]
    n_cities = int(params["n_countries"]) * int(params["cities_per_country"])
    g = {
        "n_per_group": int(params["n_per_group"]), "n_templates": int(params["n_templates"]),
        "n_persons": int(first.n_persons), "n_cities": n_cities,
        "n_countries": int(params["n_countries"]), "n_composed": int(first.n_composed),
        "n_heldout_seen": int(first.n_heldout_seen), "n_heldout_unseen": int(first.n_heldout_unseen),
        "n_bridges": (n_cities - int(params["n_countries"]) * int(params["unseen_cities_per_country"])),
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
        "context_k": int(params["context_k"]), "context_batch": int(params["context_batch"]),
        "context_questions": int(fr.context_questions),
        "n_context_facts": int(fr.n_context_facts),
        "n_context_persons": int(fr.n_context_persons),
        "n_episode_entities": int(fr.n_episode_entities),
        "pretrain_steps": int(fr.pretrain_steps), "n_bases": int(fr.n_bases),
        "pretrain_batch": int(fr.pretrain_batch), "pretrain_lr": float(fr.pretrain_lr),
        "context_twohop_pct": 100 * float(fr.context_twohop_share),
        "ratio_steps": int(params["ratio_steps"]), "ratio_vocab_size": int(fr.vocab_size),
        "ratio_n_params": int(fr.n_params),
        "ratio_threshold": float(params["ratio_threshold"]),
        "long_steps": int(params["long_steps"]), "long_batch": int(params["long_batch"]),
        "long_n_persons": int(fl.n_persons), "long_n_cities": int(fl.n_cities),
        "long_n_bridges": int(fl.n_bridges_seen), "long_n_composed": int(fl.n_composed),
        "long_corpus_size": int(fl.corpus_size),
        "long_epochs": int(params["long_steps"]) * int(params["long_batch"]) / int(fl.corpus_size),
        "long_phi": int(fl.n_composed) / (int(fl.n_persons) + int(fl.n_cities)),
        "main_phi": int(first.n_composed) / (int(first.n_persons) + n_cities),
        # each two-hop sentence is repeated n_templates times per epoch in the main corpus
        "main_twohop_presentations": int(params["steps"]) * int(params["batch_size"])
        / int(first.corpus_size) * int(params["n_templates"]),
    }
    return Findings(glue=g)


#: glued with their 95% interval: (key, key_lo, key_hi, metric, conditions pooled per seed);
#: accuracies are glued in percent
WITH_INTERVAL = (
    ("p2d_same_accuracy", "p2d_same_accuracy_lo", "p2d_same_accuracy_hi", "accuracy", ("p2d/same",)),
    ("d2p_same_accuracy", "d2p_same_accuracy_lo", "d2p_same_accuracy_hi", "accuracy", ("d2p/same",)),
    ("p2d_rev_accuracy", "p2d_rev_accuracy_lo", "p2d_rev_accuracy_hi", "accuracy", ("p2d/reversed",)),
    ("d2p_rev_accuracy", "d2p_rev_accuracy_lo", "d2p_rev_accuracy_hi", "accuracy", ("d2p/reversed",)),
    ("p2d_rev_rank", "p2d_rev_rank_lo", "p2d_rev_rank_hi", "rank", ("p2d/reversed",)),
    ("d2p_rev_rank", "d2p_rev_rank_lo", "d2p_rev_rank_hi", "rank", ("d2p/reversed",)),
    ("comp_seen_accuracy", "comp_seen_accuracy_lo", "comp_seen_accuracy_hi", "accuracy",
     ("twohop/composed-heldout-seen-city",)),
    ("comp_unseen_accuracy", "comp_unseen_accuracy_lo", "comp_unseen_accuracy_hi", "accuracy",
     ("twohop/composed-heldout-unseen-city",)),
    ("comp_seen_rank", "comp_seen_rank_lo", "comp_seen_rank_hi", "rank",
     ("twohop/composed-heldout-seen-city",)),
    ("comp_unseen_rank", "comp_unseen_rank_lo", "comp_unseen_rank_hi", "rank",
     ("twohop/composed-heldout-unseen-city",)),
)
#: the same, read from the run trained on facts and prompts (``summary_ratio``)
RATIO_RUN_WITH_INTERVAL = (
    ("ctx_same_lift", "ctx_same_lift_lo", "ctx_same_lift_hi", "rank_lift_k",
     ("context/p2d/same", "context/d2p/same")),
    ("ctx_rev_lift", "ctx_rev_lift_lo", "ctx_rev_lift_hi", "rank_lift_k",
     ("context/p2d/reversed", "context/d2p/reversed")),
    ("ctx_composed_lift", "ctx_composed_lift_lo", "ctx_composed_lift_hi", "rank_lift_k",
     ("context/twohop/composed",)),
    ("ratio_run_rev_lift", "ratio_run_rev_lift_lo", "ratio_run_rev_lift_hi", "rank_lift",
     ("p2d/reversed", "d2p/reversed")),
    ("ratio_run_seen_lift", "ratio_run_seen_lift_lo", "ratio_run_seen_lift_hi", "rank_lift",
     ("twohop/composed-heldout-seen-city",)),
)
#: glued as a mean only (accuracy in percent): (key, condition)
ACCURACIES = (
    ("both_fwd_accuracy", "both/forward"), ("both_bwd_accuracy", "both/backward"),
    ("hop1_seen_accuracy", "twohop/hop1-heldout-seen-city"),
    ("hop1_unseen_accuracy", "twohop/hop1-heldout-unseen-city"),
    ("hop2_unseen_accuracy", "twohop/hop2-heldout-unseen-city"),
    ("comp_trained_accuracy", "twohop/composed-trained"),
)
#: the same, from the run trained on facts and prompts
RATIO_RUN_ACCURACIES = (
    ("ratio_run_p2d_same_accuracy", "p2d/same"), ("ratio_run_d2p_same_accuracy", "d2p/same"),
    ("ctx_p2d_same_accuracy", "context/p2d/same"), ("ctx_d2p_same_accuracy", "context/d2p/same"),
    ("ctx_p2d_rev_accuracy", "context/p2d/reversed"),
    ("ctx_d2p_rev_accuracy", "context/d2p/reversed"),
    ("ctx_hop1_accuracy", "context/twohop/hop1"), ("ctx_hop2_accuracy", "context/twohop/hop2"),
    ("ctx_composed_accuracy", "context/twohop/composed"),
    ("ctx_external_accuracy", "context/twohop/external"),
)


def conditions(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """Accuracy (%), normalised rank and rank lift of the conditions the prose quotes, with
    intervals (:data:`WITH_INTERVAL`, :data:`ACCURACIES` from the main run, the ``RATIO_RUN_``
    ones from the run trained on facts and prompts)."""
    g = {}
    for name, with_interval, accuracies in (("summary", WITH_INTERVAL, ACCURACIES),
                                            ("summary_ratio", RATIO_RUN_WITH_INTERVAL,
                                             RATIO_RUN_ACCURACIES)):
        s = _need(tables, name, ("seed", "condition", "accuracy", "rank", "rank_lift_k"))
        for key, key_lo, key_hi, metric, conds in with_interval:
            scale = 100 if metric == "accuracy" else 1
            g[key], g[key_lo], g[key_hi] = (scale * x for x in ci(by_seed(s, conds, metric)))
        for key, cond in accuracies:
            g[key] = 100 * float(by_seed(s, [cond], "accuracy").mean())
    g["chance_accuracy_prompt"] = 100 / int(params["context_k"])
    return Findings(glue=g)


def phrases(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """Where the intervals lie, in words computed from them (relative to the verdict margin)."""
    s = _need(tables, "summary", ("seed", "condition", "rank_lift"))
    sr = _need(tables, "summary_ratio", ("seed", "condition", "rank_lift_k"))
    sl = _need(tables, "summary_long", ("seed", "condition", "rank_lift"))
    m = float(params["margin"])

    def where(table, conds, metric="rank_lift"):
        _, lo, hi = ci(by_seed(table, conds, metric))
        return describe_interval(lo, hi, margin=m)

    return Findings(glue={
        "phrase_rev": where(s, ["p2d/reversed", "d2p/reversed"]),
        "phrase_seen": where(s, ["twohop/composed-heldout-seen-city"]),
        "phrase_unseen": where(s, ["twohop/composed-heldout-unseen-city"]),
        "phrase_ctx_same": where(sr, ["context/p2d/same", "context/d2p/same"], "rank_lift_k"),
        "phrase_ctx_rev": where(sr, ["context/p2d/reversed", "context/d2p/reversed"], "rank_lift_k"),
        "phrase_long_seen": where(sl, ["twohop/composed-heldout-seen-city"]),
        "phrase_long_unseen": where(sl, ["twohop/composed-heldout-unseen-city"]),
    })


def paper(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """The published numbers we set beside ours (means of the transcribed runs)."""
    p = _need(tables, "paper_numbers", ("task", "direction", "accuracy"))
    lit = _need(tables, "literature", ("quantity", "value"))
    d = _need(tables, "design", ("n_params",))

    def pct(task, direction):
        rows = p[(p.task == task) & (p.direction == direction)]
        if rows.empty:
            raise ValueError(f"paper_numbers has no rows for {task}/{direction}")
        return 100 * float(rows.accuracy.mean())

    def value(quantity):
        rows = lit[lit.quantity == quantity]
        if len(rows) != 1:
            raise ValueError(f"literature needs exactly one row for {quantity!r}")
        return float(rows.value.iloc[0])

    params_billion = value("davinci parameters (billions)")
    return Findings(glue={
        "paper_d2p_same": pct("DescriptionToName", "trained"),
        "paper_d2p_rev": pct("DescriptionToName", "reversed"),
        "paper_p2d_same": pct("NameToDescription", "trained"),
        "paper_p2d_rev": pct("NameToDescription", "reversed"),
        "paper_params_billion": params_billion,
        "scale_ratio_million": params_billion * 1e9 / int(d.n_params.iloc[0]) / 1e6,
        "wang_steps": value("Wang et al. maximum training steps"),
        "wang_batch": value("Wang et al. batch size"),
        "wang_entities": value("Wang et al. entities"),
        "wang_relations": value("Wang et al. relations"),
        "wang_phi_min": value("Wang et al. smallest inferred/atomic ratio"),
        "wang_phi_max": value("Wang et al. largest inferred/atomic ratio"),
    })


def curve_of(curve: pd.DataFrame, conds, metric: str = "rank_lift") -> pd.DataFrame:
    """A metric during training, mean over ``conds``: one column per seed, indexed by step."""
    sub = curve[curve.condition.isin(list(conds))].groupby(["step", "seed"])[metric].mean()
    return sub.unstack("seed")


def training(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """Numbers read off the training curves of both runs."""
    c = _need(tables, "checkpoints", ("step", "seed", "condition", "rank_lift", "n_queries"))
    cl = _need(tables, "checkpoints_long", ("step", "seed", "condition", "rank_lift"))
    mean = {k: curve_of(c, conds).mean(axis=1) for k, conds in
            (("rev", ("p2d/reversed", "d2p/reversed")), ("same", ("p2d/same", "d2p/same")),
             ("seen", ("twohop/composed-heldout-seen-city",)),
             ("unseen", ("twohop/composed-heldout-unseen-city",)))}
    after_init = mean["rev"][mean["rev"].index > 0]
    mid = mean["seen"].index[np.argmin(np.abs(mean["seen"].index - int(params["steps"]) / 2))]
    long = {k: curve_of(cl, conds).mean(axis=1) for k, conds in
            (("seen", ("twohop/composed-heldout-seen-city",)),
             ("unseen", ("twohop/composed-heldout-unseen-city",)))}
    return Findings(glue={
        "checkpoint_items": int(c[c.condition == "p2d/reversed"]["n_queries"].iloc[0]),
        "n_checkpoints": int(c.step.nunique()),
        "curve_rev_min": after_init.min(), "curve_rev_max": after_init.max(),
        "curve_same_final": mean["same"].iloc[-1],
        "curve_seen_mid": mean["seen"].loc[mid], "curve_seen_final": mean["seen"].iloc[-1],
        "curve_unseen_mid": mean["unseen"].loc[mid], "curve_unseen_final": mean["unseen"].iloc[-1],
        "long_n_checkpoints": int(cl.step.nunique()),
        "long_unseen_max": long["unseen"][long["unseen"].index > 0].max(),
        "long_seen_final": long["seen"].iloc[-1], "long_unseen_final": long["unseen"].iloc[-1]})


def _ledger_finding_absolute(row, version: str) -> str:
    return (f"{version}: rank lift {row.rank_lift:.3f} (95% t-interval {row.lift_lo:.3f} to "
            f"{row.lift_hi:.3f} over {row.n_seeds} seeds; 0 is chance, 0.5 always first), lowest "
            f"control accuracy {100 * row.control_accuracy:.0f}%: {row.verdict}.")


def _ratio_finding(row) -> str:
    if math.isfinite(row.ratio_lo):
        ratio = f"ratio {row.ratio:.2f} (Fieller 95% interval {row.ratio_lo:.2f} to {row.ratio_hi:.2f})"
    else:
        ratio = f"ratio {row.ratio:.2f} with an unbounded interval" if math.isfinite(row.ratio) \
            else "ratio undefined (no lift in the prompt)"
    return (f"{row.test}: silent lift from the weights {row.weights_lift:.3f}, lift from the prompt "
            f"{row.prompt_lift:.3f}, {ratio}; lowest prompt-control accuracy "
            f"{100 * row.prompt_control:.0f}%: {row.verdict}.")


def verdicts(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """Every verdict, the derived tables and the ledger rows."""
    s = _need(tables, "summary", ("seed", "condition", "rank_lift"))
    sr = _need(tables, "summary_ratio", ("seed", "condition", "rank_lift_k"))
    sl = _need(tables, "summary_long", ("seed", "condition", "rank_lift"))
    m, cmin = float(params["margin"]), float(params["control_min"])
    vt = pd.concat([verdict_table(s, m, cmin),
                    verdict_table(sl, m, cmin, tests=TESTS[1:], run="long")], ignore_index=True)
    rt = ratio_table(sr, float(params["ratio_threshold"]), cmin, cmin)
    rev, seen, unseen, lseen, lunseen = (vt.iloc[i] for i in range(5))
    rr, rs, ru = (rt.iloc[i] for i in range(3))
    g = {"lift_rev": rev.rank_lift, "lift_rev_lo": rev.lift_lo, "lift_rev_hi": rev.lift_hi,
         "verdict_rev": rev.verdict, "reason_rev": rev.reason,
         "control_rev": 100 * rev.control_accuracy,
         "lift_seen": seen.rank_lift, "lift_seen_lo": seen.lift_lo, "lift_seen_hi": seen.lift_hi,
         "control_seen": 100 * seen.control_accuracy,
         "seen_lift_min": seen.lift_min, "seen_lift_max": seen.lift_max,
         "lift_unseen": unseen.rank_lift, "lift_unseen_lo": unseen.lift_lo,
         "lift_unseen_hi": unseen.lift_hi, "verdict_unseen": unseen.verdict,
         "reason_unseen": unseen.reason,
         "control_unseen": 100 * unseen.control_accuracy,
         "lift_long_seen": lseen.rank_lift, "lift_long_seen_lo": lseen.lift_lo,
         "lift_long_seen_hi": lseen.lift_hi, "control_long_seen": 100 * lseen.control_accuracy,
         "lift_long_unseen": lunseen.rank_lift, "lift_long_unseen_lo": lunseen.lift_lo,
         "lift_long_unseen_hi": lunseen.lift_hi, "verdict_long_unseen": lunseen.verdict,
         "reason_long_unseen": lunseen.reason,
         "control_long_unseen": 100 * lunseen.control_accuracy,
         "ratio_rev": _ratio_text(rr), "verdict_ratio_rev": rr.verdict,
         "reason_ratio_rev": rr.reason, "ratio_seen": _ratio_text(rs),
         "verdict_ratio_seen": rs.verdict, "reason_ratio_seen": rs.reason,
         "ratio_unseen": _ratio_text(ru), "verdict_ratio_unseen": ru.verdict,
         "reason_ratio_unseen": ru.reason,
         "prompt_control_rev": 100 * rr.prompt_control,
         "ratio_weights_control_rev": 100 * rr.weights_control,
         "ratio_weights_control_twohop": 100 * rs.weights_control,
         "prompt_control_twohop": 100 * rs.prompt_control}
    ledger = report.ledger_table(ledger_rows(vt, rt, float(params["ratio_threshold"])))
    return Findings(glue=g, tables={"verdicts": vt, "ratios": rt, "ledger": ledger})


def _ratio_text(row) -> str:
    """The ratio with its Fieller interval, in words when the interval is unbounded."""
    if math.isfinite(row.ratio_lo):
        return f"{row.ratio:.2f} (95% interval {row.ratio_lo:.2f} to {row.ratio_hi:.2f})"
    return "not defined: the prompt lift is not clearly above zero (unbounded interval)"


def _untrained_route_row(row, rid: str, run: str, what: str, fig: str) -> dict:
    """The ledger row of Pope's clarified claim for one run."""
    return report.ledger_row(
        id=rid, chapter=CHAPTER,
        claim="A model does not silently compose stored facts along a route training never used.",
        who="Pope", quote="derive from being straightforwardly trained to learn such capabilities",
        source=POPE_CLARIFY,
        version=f"clarified claim, {run}: no composition through a bridge never used in a trained composition",
        claim_side=report.SCEPTIC, effect_name="rank lift of held-out compositions, unseen bridge",
        effect=row.rank_lift, effect_lo=row.lift_lo, effect_hi=row.lift_hi,
        units="rank lift (0 = chance, 0.5 = always first)", verdict=row.verdict,
        finding=_ledger_finding_absolute(row, what), figure=fig)


def ledger_rows(vt: pd.DataFrame, rt: pd.DataFrame, threshold: float) -> list[dict]:
    """One ledger row per verdict, each naming the version of Pope's claim it tests."""
    rev, _, unseen, _, lunseen = (vt.iloc[i] for i in range(5))
    rows = [
        report.ledger_row(
            id="05-reversal-from-weights", chapter=CHAPTER,
            claim="A model trained on 'A is B' does not thereby answer 'B is ?' (the reversal curse).",
            who="Pope (citing Berglund et al.)",
            quote="training on “A is B” doesn’t lead to models learning “B is A”",
            source=POPE_TWEET, version="the premise Pope cited: no reversal from facts stored in the weights",
            claim_side=report.SCEPTIC, effect_name="rank lift of reversed questions (100 candidates)",
            effect=rev.rank_lift, effect_lo=rev.lift_lo, effect_hi=rev.lift_hi,
            units="rank lift (0 = chance, 0.5 = always first)", verdict=rev.verdict,
            finding=_ledger_finding_absolute(rev, "reversed questions about facts in the weights"),
            figure="reversal-curse"),
        _untrained_route_row(unseen, "05-twohop-untrained-route", "standard run",
                             "composition through an unseen bridge", "reversal-twohop"),
        _untrained_route_row(lunseen, "05-twohop-untrained-route-long",
                             "long run with more bridges (two-hop facts only)",
                             "long run, composition through an unseen bridge", "reversal-twohop-long"),
    ]
    for r, rid in zip(rt.itertuples(), ("05-ratio-reversal", "05-ratio-twohop-seen",
                                        "05-ratio-twohop-unseen")):
        bounded = bool(np.isfinite(r.ratio_lo) and np.isfinite(r.ratio_hi))
        rows.append(report.ledger_row(
            id=rid, chapter=CHAPTER,
            claim="A model's silent inference from facts in its weights is weak compared with what it "
                  "does with the same kind of facts in its prompt.",
            who="Pope", quote="the relative power of the ‘instrumental ghost’", source=POPE_TWEET,
            version=f"the ratio Pope argued from ({r.test}): supported when it lies below {threshold:g}",
            claim_side=report.SCEPTIC, effect_name="weights lift / prompt lift (same candidate-set size)",
            # a ratio whose interval is unbounded (a prompt lift that may be zero) is not a
            # measurement: the ledger shows "not measured"; the finding keeps the point value
            effect=r.ratio if bounded else math.nan, effect_lo=r.ratio_lo if bounded else math.nan,
            effect_hi=r.ratio_hi if bounded else math.nan,
            units="ratio (0 = no silent inference, 1 = as much as in the prompt)", verdict=r.verdict,
            finding=_ratio_finding(r), figure="reversal-ratio"))
    return rows


def analyse(tables: Mapping[str, pd.DataFrame], params: Mapping) -> Findings:
    """Everything the notebook glues, from the saved tables."""
    return Findings.merge(design(tables, params), conditions(tables, params),
                          phrases(tables, params), paper(tables, params),
                          training(tables, params), verdicts(tables, params))
