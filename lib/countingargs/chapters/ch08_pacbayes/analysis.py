"""Certificates, their slack, and the comparison with other chapters' effect sizes, from the
saved tables only (``networks``, ``priors``, ``effects``).

**Certificates.** Every certificate is recomputed here from its saved parts (Monte Carlo mean
loss and number of samples, KL, size of the bound set, the number of prior scales paid for) with
:mod:`.bounds`, for two estimators of the empirical risk kept apart: per-example draws (the
headline; ``repeats * n_bound`` independent losses) and shared draws (``draws`` whole networks).
Each holds with probability at least ``1 - delta - delta_mc``. The *slack* of a certificate is
the certificate minus the test value of the same stochastic classifier: error for the 0-1
certificate, bounded cross-entropy in nats for the cross-entropy certificate.

**Comparison rule.** A compared effect ``E`` (another chapter's difference between two
solutions, with its 95% interval ``[lo, hi]``, in the certificate's units) is set against the
slack ``S`` of the tightest certificate of the matching task (the configuration with the lowest
mean slack: the best case for the bound), with its 95% t-interval over seeds ``[S_lo, S_hi]``:

* *supports* Turner (the certificate cannot tell the two solutions apart) when
  ``S_lo > max(|lo|, |hi|)``: the slack is larger than any effect size the interval allows;
* *contradicts* when ``S_hi < min |E|`` over the interval (0 if the interval includes 0): the
  slack is smaller than every effect size the interval allows;
* *mixed* otherwise; *missing* when the effect has no interval.

A family of comparisons (one source file) supports (contradicts) when at least two thirds of its
comparisons do; otherwise mixed. Each family present gives one ledger row.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ... import report
from ...report import Findings
from ...stats import CONTRADICTS, MIXED, SUPPORTS, Verdict, t_interval
from . import bounds

MISSING = "missing"
NOT_COMPARABLE = "not comparable"
CHANCE = {"binary": 0.5, "ten": 0.9}
TASK_NAMES = {"binary": "binary (0-4 vs 5-9)", "ten": "10-class"}
CONFIG = ["task", "labels", "n_train", "width"]
QUOTE = "we definitely don't have the theoretical precision"
SOURCE = "Turner, reply to Hubinger (the PAC-Bayes remark: 'bounding MNIST test error to 2.7%')"

#: family -> (ledger id, reference task (None: every task), slack column, claim, version)
FAMILIES = {
    "01-accuracy": ("08-slack-vs-distillation-accuracy", "ten", "slack_err",
                    "A PAC-Bayes certificate computed on the same digits is too loose to tell apart the solutions "
                    "chapter 01 compares: its slack exceeds their differences in test accuracy.",
                    "A: 0-1 certificate slack (tightest 10-class configuration) vs chapter 01's per-cell test-accuracy "
                    "differences, distilled − early-stopped hard-label student"),
    "01-nats": ("08-slack-vs-distillation-nats", "ten", "slack_ce_nats",
                "A PAC-Bayes certificate of a bounded cross-entropy on the same digits is too loose to tell apart the "
                "solutions chapter 01 compares: its slack in nats exceeds their held-out cross-entropy differences.",
                "N: bounded-CE certificate slack in nats (tightest 10-class configuration) vs chapter 01's per-cell "
                "held-out CE differences (versions H and M)"),
    "07-nats": ("08-slack-vs-speed-nats", None, "slack_ce_nats",
                "A PAC-Bayes certificate of a bounded cross-entropy is too loose to resolve the effects chapter 07 "
                "measures (the speed tax and slack): its slack in nats exceeds them.",
                "S: bounded-CE certificate slack in nats (tightest configuration of either task) vs chapter 07's "
                "ledger effects in nats"),
}
UNITS = {"slack_err": "accuracy", "slack_err_draws": "accuracy", "slack_ce_nats": "nats"}


def _require(tables: dict, *names: str) -> None:
    missing = [n for n in names if n not in tables]
    if missing:
        raise ValueError(f"chapter 08 analysis needs the tables {missing}; got {sorted(tables)}")


# -- certificates ---------------------------------------------------------------------------------
def certified(tables: dict, params: dict) -> pd.DataFrame:
    """One row per selected posterior (one per seed and configuration) with its certificates
    (per-example and shared-draw estimators; 0-1 and bounded CE), slacks and test values."""
    _require(tables, "networks")
    net = tables["networks"]
    sel = net[net.selected.astype(bool)].copy()
    if sel.empty:
        raise ValueError("networks has no selected posterior")
    bad = ~np.isfinite(sel[["kl", "bound_err", "bound_ce", "bound_err_draws", "bound_ce_draws", "test_err",
                            "test_ce"]].to_numpy(dtype=float)).all(1)
    if bad.any():
        raise ValueError(f"non-finite values for {sel.loc[bad, CONFIG + ['seed']].head(3).to_dict('records')}")
    d, dm, pmin = float(params["delta"]), float(params["delta_mc"]), float(params["p_min"])
    nats = math.log(1 / pmin)
    args = (sel.kl.to_numpy(), sel.n_bound.to_numpy(), d, dm, sel.n_priors.to_numpy())
    n_ex = (sel.repeats * sel.n_bound).to_numpy()
    sel["cert_err"] = bounds.certificate(sel.bound_err.to_numpy(), n_ex, *args)
    sel["cert_ce_nats"] = nats * bounds.certificate(sel.bound_ce.to_numpy(), n_ex, *args)
    sel["cert_err_draws"] = bounds.certificate(sel.bound_err_draws.to_numpy(), sel.draws.to_numpy(), *args)
    sel["cert_ce_draws_nats"] = nats * bounds.certificate(sel.bound_ce_draws.to_numpy(), sel.draws.to_numpy(), *args)
    sel["mc_upper_err"] = bounds.mc_upper(sel.bound_err.to_numpy(), n_ex, dm)
    sel["test_ce_nats"] = nats * sel.test_ce
    sel["slack_err"] = sel.cert_err - sel.test_err
    sel["slack_err_draws"] = sel.cert_err_draws - sel.test_err
    sel["slack_ce_nats"] = sel.cert_ce_nats - sel.test_ce_nats
    sel["ratio_err"] = sel.cert_err / sel.test_err.where(sel.test_err > 0)
    if "priors" in tables:
        pri = tables["priors"].set_index(CONFIG + ["seed"])
        sel["prior_holdout"] = bounds.holdout(pri.prior_bound_err.reindex(pd.MultiIndex.from_frame(
            sel[CONFIG + ["seed"]])).to_numpy(), sel.n_bound.to_numpy(), d + dm)
    return sel.reset_index(drop=True)


def summary_table(cert: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: means over seeds with 95% t-intervals of the certificate, the test
    error and the slacks; how many certificates lie above the test value."""
    rows = []
    for key, g in cert.groupby(CONFIG, sort=True):
        row = dict(zip(CONFIG, key))
        row["n_seeds"] = len(g)
        for col in ("cert_err", "test_err", "slack_err", "cert_err_draws", "slack_err_draws", "cert_ce_nats",
                    "test_ce_nats", "slack_ce_nats", "test_err_mean", "kl"):
            m, lo, hi = t_interval(g[col].to_numpy()) if len(g) >= 2 else (float(g[col].iloc[0]), math.nan, math.nan)
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = m, lo, hi
        row["holds_err"] = int((g.cert_err >= g.test_err).sum())
        row["holds_err_draws"] = int((g.cert_err_draws >= g.test_err).sum())
        row["holds_ce"] = int((g.cert_ce_nats >= g.test_ce_nats).sum())
        row["chance"] = CHANCE[key[0]]
        rows.append(row)
    return pd.DataFrame(rows)


def reference_slack(summary: pd.DataFrame, column: str, task: str | None) -> pd.Series:
    """The true-label configuration (of ``task``, or of any task) with the lowest mean
    ``column``: the tightest certificate, the best case for the bound."""
    s = summary[(summary.labels == "true") & ((summary.task == task) if task else True)]
    if s.empty:
        raise ValueError(f"no true-label configuration for task {task!r}")
    return s.sort_values([column] + CONFIG, kind="stable").iloc[0]


# -- the comparison with other chapters ------------------------------------------------------------
def compare(effect: float, lo: float, hi: float, s_lo: float, s_hi: float) -> str:
    """The rule for one comparison (see the module docstring)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return MISSING
    if lo > hi:
        raise ValueError(f"effect interval [{lo}, {hi}] is reversed")
    big = max(abs(lo), abs(hi))
    small = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
    if s_lo > big:
        return SUPPORTS
    if s_hi < small:
        return CONTRADICTS
    return MIXED


def family_verdict(labels: list[str]) -> str:
    """Two thirds of the comparisons support (contradict) -> supports (contradicts); else mixed."""
    n = len(labels)
    if n == 0:
        raise ValueError("a family needs at least one comparison")
    if labels.count(SUPPORTS) >= 2 * n / 3:
        return SUPPORTS
    if labels.count(CONTRADICTS) >= 2 * n / 3:
        return CONTRADICTS
    return MIXED


def _slack_column(family: str, units: str) -> str | None:
    want = FAMILIES[family][2]
    return want if UNITS[want] == units else None


def comparison_table(tables: dict, params: dict) -> pd.DataFrame:
    """One row per compared effect: the effect, the reference slack (primary estimator) and the
    verdict; for 0-1 comparisons also the verdict against the shared-draw certificate."""
    _require(tables, "effects")
    eff = tables["effects"]
    summ = summary_table(certified(tables, params))
    rows = []
    for r in eff[eff.status == "present"].itertuples():
        fam = FAMILIES.get(r.family)
        units = "nats" if "nat" in str(r.units).lower() else "accuracy" if str(r.units) == "accuracy" else str(r.units)
        col = _slack_column(r.family, units) if fam else None
        row = {"family": r.family, "cell": r.cell, "units": units, "effect": r.effect, "lo": r.lo, "hi": r.hi,
               "abs_max": max(abs(r.lo), abs(r.hi)) if np.isfinite(r.lo) else math.nan}
        if col is None:
            rows.append({**row, "verdict": NOT_COMPARABLE})
            continue
        ref = reference_slack(summ, col, fam[1])
        row.update({"slack_config": f"{ref.task}, n_train={int(ref.n_train)}, width={int(ref.width)}",
                    "slack": ref[col], "slack_lo": ref[f"{col}_lo"], "slack_hi": ref[f"{col}_hi"],
                    "verdict": compare(r.effect, r.lo, r.hi, ref[f"{col}_lo"], ref[f"{col}_hi"])})
        if col == "slack_err":
            ref_d = reference_slack(summ, "slack_err_draws", fam[1])
            row["verdict_draws"] = compare(r.effect, r.lo, r.hi, ref_d["slack_err_draws_lo"],
                                           ref_d["slack_err_draws_hi"])
        rows.append(row)
    cols = ["family", "cell", "units", "effect", "lo", "hi", "abs_max", "slack_config", "slack", "slack_lo",
            "slack_hi", "verdict", "verdict_draws"]
    return pd.DataFrame(rows).reindex(columns=cols)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _fmt(x: float, units: str) -> str:
    return f"{100 * x:.2f} points" if units == "accuracy" else f"{x:.3f} nats"


def family_rows(comp: pd.DataFrame, effects: pd.DataFrame) -> pd.DataFrame:
    """One row per family of :data:`FAMILIES`: whether its source was found, the counts and
    the verdict (``not available`` when absent or with nothing comparable)."""
    rows = []
    for fam, (rid, task, col, _, version) in FAMILIES.items():
        src = effects[effects.family == fam]
        status = "absent" if src.empty else "present" if (src.status == "present").any() else src.status.iloc[0]
        c = comp[(comp.family == fam) & (comp.verdict != NOT_COMPARABLE)]
        tested = c[c.verdict != MISSING]
        row = {"family": fam, "id": rid, "status": status, "file": src.file.iloc[0] if len(src) else "",
               "sha256": src.sha256.iloc[0] if len(src) else "", "compared": len(c), "tested": len(tested),
               "supports": int((c.verdict == SUPPORTS).sum()), "contradicts": int((c.verdict == CONTRADICTS).sum()),
               "missing": int((c.verdict == MISSING).sum()),
               "not_comparable": int(((comp.family == fam) & (comp.verdict == NOT_COMPARABLE)).sum())}
        if len(tested):
            row["verdict"] = family_verdict(list(tested.verdict))
            row["verdict_draws"] = (family_verdict(list(tested.verdict_draws)) if col == "slack_err" else "")
            med = float(tested.abs_max.median())
            row.update({"units": tested.units.iloc[0], "slack": float(tested.slack.iloc[0]),
                        "slack_lo": float(tested.slack_lo.iloc[0]), "slack_hi": float(tested.slack_hi.iloc[0]),
                        "slack_config": tested.slack_config.iloc[0], "median_abs_effect": med,
                        "max_abs_effect": float(tested.abs_max.max())})
        else:
            row["verdict"] = "not available"
        rows.append(row)
    return pd.DataFrame(rows)


def _finding(r) -> str:
    u = r.units
    text = (f"The tightest certificate ({r.slack_config}) exceeds the test value by {_fmt(r.slack, u)} "
            f"[{_fmt(r.slack_lo, u)}, {_fmt(r.slack_hi, u)}]; of {int(r.tested)} compared effects (median |effect| "
            f"{_fmt(r.median_abs_effect, u)}, largest {_fmt(r.max_abs_effect, u)}), the slack is larger than the whole "
            f"interval in {int(r.supports)} and smaller in {int(r.contradicts)}")
    if r.missing:
        text += f" ({int(r.missing)} without an interval)"
    if r.verdict_draws:
        text += f"; with the shared-draw certificate the family verdict is {r.verdict_draws}"
    return text + "."


# -- analyses (one per notebook cell) ------------------------------------------------------------
def setup(tables: dict, params: dict) -> Findings:
    """The design numbers the prose quotes."""
    _require(tables, "networks")
    net = tables["networks"]
    true = net[net.labels == "true"]
    d, dm = float(params["delta"]), float(params["delta_mc"])
    g = {"n_test": int(net.n_test.iloc[0]), "n_sizes_text": ", ".join(str(int(n)) for n in sorted(true.n_train.unique())),
         "widths_text": ", ".join(str(int(w)) for w in sorted(true.width.unique())),
         "n_seeds": int(net.seed.nunique()), "n_priors": int(net.n_priors.iloc[0]),
         "sigmas_text": ", ".join(f"{s:g}" for s in sorted(net.sigma_prior.unique())),
         "confidence_pct": 100 * (1 - d - dm), "delta": d, "delta_mc": dm,
         "p_min": float(params["p_min"]), "ce_max_nats": math.log(1 / float(params["p_min"])),
         "repeats": int(net.repeats.iloc[0]), "draws": int(net.draws.max()),
         "params_text": "; ".join(f"{int(w)} hidden units: {int(p):,d} (binary) to {int(q):,d} (10-class) parameters"
                                  for w, p, q in (net.groupby("width").n_params.agg(["min", "max"]).itertuples()))}
    return Findings(glue=g)


def certificates(tables: dict, params: dict) -> Findings:
    """The certificate table, the headline per task, what the certificate is made of."""
    cert = certified(tables, params)
    summ = summary_table(cert)
    g = {}
    for task in CHANCE:
        s = summ[(summ.task == task) & (summ.labels == "true")]
        if s.empty:
            continue
        ref = reference_slack(summ, "slack_err", task)
        c = cert[(cert.task == task) & (cert.labels == "true") & (cert.n_train == ref.n_train) & (cert.width == ref.width)]
        g.update({f"best_{task}_config": f"{int(ref.n_train)} training digits, {int(ref.width)} hidden units",
                  f"best_{task}_cert": float(ref.cert_err), f"best_{task}_test": float(ref.test_err),
                  f"best_{task}_slack": float(ref.slack_err), f"best_{task}_slack_lo": float(ref.slack_err_lo),
                  f"best_{task}_slack_hi": float(ref.slack_err_hi), f"best_{task}_ratio": float(c.ratio_err.mean()),
                  f"best_{task}_cert_draws": float(ref.cert_err_draws), f"best_{task}_slack_draws": float(ref.slack_err_draws),
                  f"best_{task}_ce_cert": float(ref.cert_ce_nats), f"best_{task}_ce_test": float(ref.test_ce_nats),
                  f"best_{task}_ce_slack": float(ref.slack_ce_nats),
                  f"best_{task}_mc_part": float((c.mc_upper_err - c.bound_err).mean()),
                  f"best_{task}_complexity_part": float((c.cert_err - c.mc_upper_err).mean()),
                  f"best_{task}_gap_part": float((c.bound_err - c.test_err).mean()),
                  f"worst_{task}_slack": float(s.slack_err.max())})
        small, large = s[s.n_train == s.n_train.min()], s[s.n_train == s.n_train.max()]
        g[f"slack_{task}_small_n"] = float(small.slack_err.mean())
        g[f"slack_{task}_large_n"] = float(large.slack_err.mean())
    tr = cert[cert.labels == "true"]
    g["kl_median"] = float(tr.kl.median())
    g["kl_max"] = float(tr.kl.max())
    g["sigma_selected_text"] = "; ".join(f"{s:g}: {n}" for s, n in tr.sigma_prior.value_counts().sort_index().items())
    if "prior_holdout" in cert:
        g["cert_minus_holdout_median"] = float((tr.cert_err - tr.prior_holdout).median())
    g["mean_vs_gibbs_median"] = float((tr.test_err - tr.test_err_mean).median())
    fixed = np.log(2 * np.sqrt(tr.n_bound) * tr.n_priors / float(params["delta"]))
    g["kl_share_pct"] = 100 * float((tr.kl / (tr.kl + fixed)).median())
    g["lit_n_ratio"] = float(params["literature_bound_n"]) / float(tr.n_bound.max())
    return Findings(glue=g, tables={"certified": cert, "summary": summ})


def validity(tables: dict, params: dict) -> Findings:
    """Does each certificate lie above the test value (it must, with high probability), and is
    the random-label control vacuous or near chance?"""
    cert = certified(tables, params)
    tr, rnd = cert[cert.labels == "true"], cert[cert.labels == "random"]
    g = {"n_certs": int(len(tr)), "holds_err": int((tr.cert_err >= tr.test_err).sum()),
         "holds_err_draws": int((tr.cert_err_draws >= tr.test_err).sum()),
         "holds_ce": int((tr.cert_ce_nats >= tr.test_ce_nats).sum()),
         "min_slack_err": float(tr.slack_err.min()), "min_slack_ce": float(tr.slack_ce_nats.min())}
    chance = rnd.task.map(CHANCE)
    g["n_random"] = int(len(rnd))
    g["random_above_chance"] = int((rnd.cert_err >= chance).sum())
    g["random_text"] = "; ".join(
        f"{TASK_NAMES[t]}: certificates {_pct(gr.cert_err.min())} to {_pct(gr.cert_err.max())} (chance {_pct(CHANCE[t])}), "
        f"test error {_pct(gr.test_err.mean())}" for t, gr in rnd.groupby("task")) or "not run"
    return Findings(glue=g)


def literature(tables: dict, params: dict) -> Findings:
    """The precision of the literature result Turner describes, set against chapter 01's
    accuracy differences (context, no verdict)."""
    b, t = float(params["literature_bound"]), float(params["literature_test_error"])
    g = {"lit_slack": b - t, "lit_ratio": b / t}
    eff = tables["effects"]
    acc = eff[(eff.family == "01-accuracy") & (eff.status == "present")].dropna(subset=["lo", "hi"])
    # the smallest distance of each interval from zero (0 where it covers zero)
    nearest = np.where((acc.lo <= 0) & (acc.hi >= 0), 0.0, np.minimum(acc.lo.abs(), acc.hi.abs()))
    n_res = int((nearest > b - t).sum())
    g["lit_resolves_text"] = (
        f"{n_res} of the {len(acc)} cells of chapter 01 {'has' if n_res == 1 else 'have'} a "
        "test-accuracy difference whose whole interval exceeds that slack" if len(acc) else
        "chapter 01's accuracy differences are not available in this run")
    return Findings(glue=g)


def comparison(tables: dict, params: dict) -> Findings:
    """The comparison with the other chapters: per-effect verdicts, one verdict and ledger row
    per family found, the chapter's verdict."""
    _require(tables, "effects")
    comp = comparison_table(tables, params)
    fams = family_rows(comp, tables["effects"])
    g, ledger = {}, []
    for r in fams.itertuples():
        key = r.family.replace("-", "_")
        g[f"status_{key}"] = (f"read from `{r.file}` (sha256 {r.sha256[:12]})" if r.status == "present"
                              else f"not available ({r.status}: `{r.file}`)")
        g[f"verdict_{key}"] = r.verdict
        if r.verdict == "not available":
            parts = [f"{int(r.not_comparable)} in other units" if r.not_comparable else "",
                     f"{int(r.missing)} in these units without an interval" if r.missing else ""]
            parts = [x for x in parts if x]
            why = (f"the file `{r.file}` was not found" if r.status == "absent"
                   else f"of its effects in `{r.file}`, {' and '.join(parts)}" if parts
                   else f"`{r.file}`: {r.status}")
            g[f"finding_{key}"] = f"No comparison: {why}."
            continue
        text = _finding(r)
        g[f"finding_{key}"] = text
        rid, _, _, claim, version = FAMILIES[r.family]
        ledger.append(report.ledger_row(
            id=rid, chapter="08_pacbayes", claim=claim, who="Turner", quote=QUOTE, source=SOURCE, version=version,
            claim_side=report.SCEPTIC, effect_name="slack of the tightest certificate minus the median |effect| of the "
            "compared cells", effect=r.slack - r.median_abs_effect, effect_lo=r.slack_lo - r.median_abs_effect,
            effect_hi=r.slack_hi - r.median_abs_effect, units=r.units, verdict=r.verdict, finding=text,
            figure="pacbayes-slack-vs-effects"))
    decided = fams[fams.verdict != "not available"]
    if decided.empty:
        g["verdict"] = MIXED
        g["verdict_reason"] = "no other chapter's results were found, so no comparison could be made"
    else:
        g["verdict"] = Verdict.combine(Verdict(v, "") for v in decided.verdict).label
        g["verdict_reason"] = "; ".join(f"{r.family}: {r.verdict} ({r.supports} of {r.tested} comparisons support, "
                                        f"{r.contradicts} contradict)" for r in decided.itertuples())
    g["n_families"] = int(len(decided))
    out = {"comparisons": comp, "families": fams}
    if ledger:      # no ledger file at all when nothing could be compared (the book then shows
        out["ledger"] = report.ledger_table(ledger)     # "not yet in the ledger", not a broken map)
    return Findings(glue=g, tables=out)


def analyse(tables: dict, params: dict) -> Findings:
    """Every glued value and derived table of the chapter."""
    return Findings.merge(setup(tables, params), certificates(tables, params), validity(tables, params),
                          literature(tables, params), comparison(tables, params))
