"""Verdicts, effect sizes and glued numbers of chapter 06, from saved tables only.

Tables (as saved by the notebook):

- ``main_networks``: one row per network of the main arm (``level`` main and alt), with the
  diagnostics of :func:`experiment.diagnose`, ``dist_init``, ``norm_sq``, ``reached``, ``steps``;
- ``main_llc`` (per network and level) and ``main_volume`` (per network and radius);
- ``side_networks``: the other frozen arms (Adam; widths; identifier scales);
- ``wd_networks``: the long-training arms with weight decay (SGD with L2, AdamW);
- ``llc_toys`` and ``llc_sensitivity``: the estimator checks.

The rules below are the ones stated in the notebook before any code; the thresholds are module
constants, not parameters, so no profile can move them.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ... import report, stats
from ...report import Findings
from ...stats import CONTRADICTS, MIXED, SUPPORTS, Verdict

CHAPTER = "06_memorise"
G_HI, G_LO = 0.75, 0.25     # follow_desc above / below: the description / the identifier leads
GEN_ACC = 0.9               # held-out accuracy of a network that derives (chance is 0.5)
MEM_ACC = 0.6               # held-out accuracy below which a network derived nothing
DEPTH_MARGIN = 0.05         # derivation-index difference too small to matter (Pope's row)
DUAL_MARGIN = 0.10          # relative excess of the regularised objective that still counts as "at the optimum"
MAIN_MEASURE = "llc"
#: complexity measures: column, what a larger value means, label
MEASURES = {
    "llc": "local learning coefficient (SGLD)",
    "fragility": "1 - local volume (share of random steps that raise the loss)",
    "dist_init": "distance from the initial weights",
    "steps": "steps to reach the matched loss",
}
DERIVES, NOT_DERIVES, UNCLEAR = "derives", "does not derive", "unclear"
DERIVE_SIMPLER, MEMORISE_SIMPLER, NO_DIFF, MISSING = ("derive simpler", "memorise simpler",
                                                      "no clear difference", "missing")
FIG_ROUTES, FIG_COMPLEXITY, FIG_DUAL, FIG_ROBUST = ("memorise-routes", "memorise-complexity",
                                                    "memorise-dual", "memorise-robustness")
SOURCE = "LessWrong thread on Carlsmith's report summary (text in notes/000_97dd18eff6661fdc.txt)"


# ---------------------------------------------------------------------------------------------
# routes of single networks
def route_class(follow_desc, heldout_acc) -> np.ndarray:
    """``derive`` (generalises to held-out environments and the description leads), ``memorise``
    (held-out accuracy near chance: the training answers are stored, under whichever key), or
    ``mixed``."""
    g = np.asarray(follow_desc, dtype=float)
    h = np.asarray(heldout_acc, dtype=float)
    out = np.where(h < MEM_ACC, "memorise", "mixed").astype(object)
    out[(h >= GEN_ACC) & (g >= G_HI)] = "derive"
    return out


def memory_key(follow_desc) -> np.ndarray:
    """Which input a network follows when the two disagree: identifier, description or both."""
    g = np.asarray(follow_desc, dtype=float)
    out = np.full(g.shape, "both", dtype=object)
    out[g <= G_LO] = "identifier"
    out[g >= G_HI] = "description"
    return out


def derivation_index(follow_desc, heldout_acc) -> np.ndarray:
    """Graded: ``follow_desc * clip((heldout_acc - 1/2) / (1/2), 0, 1)``; 0 for a memoriser
    (by either key), 1 for a network that derives and relies on the derivation."""
    g = np.asarray(follow_desc, dtype=float)
    h = np.clip((np.asarray(heldout_acc, dtype=float) - 0.5) / 0.5, 0.0, 1.0)
    return g * h


def with_routes(nets: pd.DataFrame) -> pd.DataFrame:
    out = nets.copy()
    out["route"] = route_class(out.follow_desc, out.heldout_acc)
    out["key"] = memory_key(out.follow_desc)
    out["di"] = derivation_index(out.follow_desc, out.heldout_acc)
    return out


# ---------------------------------------------------------------------------------------------
# cells
_interval = stats.finite_t_interval   # a mean with its t interval, over the finite values


def behaviour_label(k: int, n: int) -> str:
    """From the derive share ``k / n`` and its Wilson interval: derives if it lies above 1/2,
    does not derive if below 1/2."""
    if n == 0:
        return MISSING
    _, lo, hi = stats.proportion_interval(k, n)
    return DERIVES if lo > 0.5 else NOT_DERIVES if hi < 0.5 else UNCLEAR


def cell_routes(nets: pd.DataFrame, by=("arm", "level", "K", "k")) -> pd.DataFrame:
    """Free networks per cell: how many reached the loss, the derive share with its Wilson
    interval and label, the mean derivation index and the route counts (networks that reached
    the matched loss; in arms trained for a fixed budget, every network)."""
    free = with_routes(nets[nets.condition == "free"])
    rows = []
    for key, g in free.groupby(list(by), sort=True):
        done = g.reached.astype(bool) | ~g.frozen.astype(bool) if "frozen" in g else g.reached.astype(bool)
        ok = g[done]
        n = len(ok)
        nd = int((ok.route == "derive").sum())
        share, lo, hi = stats.proportion_interval(nd, n) if n else (math.nan,) * 3
        di, di_lo, di_hi = _interval(ok.di)
        rows.append(dict(zip(by, key), n=len(g), n_reached=n, n_derive=nd,
                         n_memorise=int((ok.route == "memorise").sum()),
                         n_mixed=int((ok.route == "mixed").sum()),
                         derive_share=share, derive_lo=lo, derive_hi=hi,
                         behaviour=behaviour_label(nd, n), di=di, di_lo=di_lo, di_hi=di_hi,
                         follow_desc=float(ok.follow_desc.mean()) if n else math.nan,
                         heldout_acc=float(ok.heldout_acc.mean()) if n else math.nan))
    return pd.DataFrame(rows)


def complexity_long(nets: pd.DataFrame, llc: pd.DataFrame | None = None,
                    volume: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per network and level with every complexity measure (``llc`` and ``fragility``
    NaN where not measured)."""
    keys = ["level", "K", "k", "seed", "condition"]
    out = nets.copy()
    if llc is not None and len(llc):
        out = out.merge(llc[keys + ["llc", "llc_diverged"]], on=keys, how="left")
    else:
        out["llc"], out["llc_diverged"] = math.nan, False
    if volume is not None and len(volume):
        frag = 1.0 - volume.groupby(["K", "k", "seed", "condition"]).fraction.mean()
        frag = frag.rename("fragility").reset_index()
        frag["level"] = "main"
        out = out.merge(frag, on=keys, how="left")
    else:
        out["fragility"] = math.nan
    out.loc[out.llc_diverged.fillna(False).astype(bool), "llc"] = math.nan
    return out


def cell_complexity(cplx: pd.DataFrame, measure: str, level: str = "main") -> pd.DataFrame:
    """Per ``(K, k)``: the paired difference memorise - derive of ``measure`` over the seeds
    where both restricted networks reached the loss (positive: deriving is simpler / faster),
    its t interval, the label, and whether the derive-restricted networks generalise."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; valid: {sorted(MEASURES)}")
    t = cplx[(cplx.level == level) & cplx.condition.isin(["memorise", "derive"])]
    rows = []
    for (K, k), g in t.groupby(["K", "k"], sort=True):
        w = g.pivot_table(index="seed", columns="condition", values=measure, aggfunc="first")
        r = g.pivot_table(index="seed", columns="condition", values="reached", aggfunc="first")
        both = r.reindex(columns=["memorise", "derive"]).fillna(False).astype(bool).all(axis=1)
        w = w.reindex(columns=["memorise", "derive"])[both].dropna()
        diff = (w.memorise - w.derive).values
        est, lo, hi = _interval(diff) if len(diff) >= 2 else (math.nan,) * 3
        label = (MISSING if not np.isfinite(lo) else DERIVE_SIMPLER if lo > 0
                 else MEMORISE_SIMPLER if hi < 0 else NO_DIFF)
        der = g[(g.condition == "derive") & g.reached.astype(bool)]
        gen = float(der.heldout_acc.mean()) if len(der) else math.nan
        rows.append({"measure": measure, "level": level, "K": int(K), "k": int(k),
                     "n_pairs": int(len(diff)), "n_seeds": int(len(r)),
                     "memorise": float(w.memorise.mean()) if len(w) else math.nan,
                     "derive": float(w.derive.mean()) if len(w) else math.nan,
                     "diff": est, "diff_lo": lo, "diff_hi": hi, "label": label,
                     "derive_heldout": gen, "derive_generalises": bool(gen >= GEN_ACC)})
    return pd.DataFrame(rows)


def crossover(cells: pd.DataFrame, derive_label: str = DERIVE_SIMPLER,
              need_generalise: bool = True) -> pd.DataFrame:
    """Per difficulty ``k``: ``K*``, the smallest ``K`` of the grid from which every larger
    ``K`` is labelled ``derive_label`` (and, if asked, its derive networks generalise); NaN
    when the largest ``K`` is not (no crossover in the range)."""
    rows = []
    for k, g in cells.groupby("k", sort=True):
        g = g.sort_values("K")
        ok = (g.label == derive_label).values
        if need_generalise and "derive_generalises" in g:
            ok = ok & g.derive_generalises.astype(bool).values
        kstar = math.nan
        for i in range(len(g) - 1, -1, -1):
            if not ok[i]:
                break
            kstar = float(g.K.iloc[i])
        rows.append({"k": int(k), "K_star": kstar, "K_max": int(g.K.max())})
    return pd.DataFrame(rows)


def behaviour_crossover(routes: pd.DataFrame) -> pd.DataFrame:
    """``K*`` of behaviour: the smallest ``K`` from which SGD derives in every larger cell."""
    cells = routes.rename(columns={"behaviour": "label"})
    return crossover(cells, derive_label=DERIVES, need_generalise=False)


# ---------------------------------------------------------------------------------------------
# verdicts
def verdict_premise(cc: pd.DataFrame, routes: pd.DataFrame) -> tuple[Verdict, dict]:
    """Hubinger's premise. C+ = cells where the derive route is simpler by the measure of ``cc``
    (interval of memorise - derive above 0) and the derive-restricted networks generalise. In
    each, SGD derives (Wilson interval of the derive share above 1/2), does not (below 1/2) or is
    unclear. Supports: SGD derives in more than half of C+; contradicts: C+ is empty (deriving
    never wins in the range) or SGD does not derive in more than half of C+; mixed otherwise."""
    plus = cc[(cc.label == DERIVE_SIMPLER) & cc.derive_generalises.astype(bool)][["K", "k"]]
    b = plus.merge(routes[["K", "k", "behaviour", "derive_share"]], on=["K", "k"], how="left")
    b["behaviour"] = b.behaviour.fillna(MISSING)
    n = len(b)
    nd, nn = int((b.behaviour == DERIVES).sum()), int((b.behaviour == NOT_DERIVES).sum())
    info = {"n_cells": n, "n_derives": nd, "n_not": nn, "n_unclear": n - nd - nn, "n_grid": int(len(cc))}
    if n == 0:
        return Verdict(CONTRADICTS, "deriving is simpler (and generalises) in no cell of the range"), info
    what = f"in {nd} of {n} cells where deriving is simpler SGD derives, in {nn} it does not"
    if nd > n / 2:
        return Verdict(SUPPORTS, what), info
    if nn > n / 2:
        return Verdict(CONTRADICTS, what), info
    return Verdict(MIXED, what), info


def _counts(info: dict) -> dict:
    """The cell counts of a premise verdict, as its robustness row shows them."""
    return {k: v for k, v in info.items() if k != "n_grid"}


def verdict_speed(cc_simple: pd.DataFrame, cc_speed: pd.DataFrame,
                  routes: pd.DataFrame) -> tuple[Verdict, dict]:
    """The speed reading. D = cells where the simpler route (by ``cc_simple``) and the faster
    route (``cc_speed``, steps) are both clear and differ. In each, SGD followed speed or
    simplicity (its behaviour label; unclear cells count for neither). Supports (SGD follows
    speed) if the Wilson interval of the share following speed lies above 1/2; contradicts if
    below 1/2; mixed otherwise, or when no such cell exists."""
    clear = [DERIVE_SIMPLER, MEMORISE_SIMPLER]
    a = cc_simple[cc_simple.label.isin(clear)][["K", "k", "label"]].rename(columns={"label": "simpler"})
    f = cc_speed[cc_speed.label.isin(clear)][["K", "k", "label"]].rename(columns={"label": "faster"})
    d = a.merge(f, on=["K", "k"])
    d = d[d.simpler != d.faster].merge(routes[["K", "k", "behaviour"]], on=["K", "k"], how="left")
    took = d.behaviour.map({DERIVES: DERIVE_SIMPLER, NOT_DERIVES: MEMORISE_SIMPLER})
    n_speed, n_simple = int((took == d.faster).sum()), int((took == d.simpler).sum())
    info = {"n_cells": int(len(d)), "n_speed": n_speed, "n_simple": n_simple, "n_grid": int(len(cc_simple)),
            "share": math.nan, "lo": math.nan, "hi": math.nan}
    if n_speed + n_simple == 0:
        return Verdict(MIXED, f"untestable here: {len(d)} cells where the simpler and the faster "
                              "route differ, none with a clear choice by SGD"), info
    share, lo, hi = stats.proportion_interval(n_speed, n_speed + n_simple)
    info.update(share=share, lo=lo, hi=hi)
    what = (f"where the simpler and the faster route differ, SGD took the faster one in {n_speed} "
            f"and the simpler one in {n_simple} cells (share {share:.2f}, Wilson interval "
            f"[{lo:.2f}, {hi:.2f}])")
    label = SUPPORTS if lo > 0.5 else CONTRADICTS if hi < 0.5 else MIXED
    return Verdict(label, what), info


def depth_effect(free: pd.DataFrame) -> tuple[np.ndarray, int, int]:
    """Per seed: mean derivation index over the ``K`` grid at the easiest ``k`` minus at the
    hardest ``k`` (reached networks; the same seeds start from the same weights)."""
    free = with_routes(free[(free.condition == "free") & free.reached.astype(bool)])
    k_lo, k_hi = int(free.k.min()), int(free.k.max())
    per = free.groupby(["seed", "k"]).di.mean().unstack()
    if k_lo == k_hi or k_lo not in per or k_hi not in per:
        return np.array([]), k_lo, k_hi
    return (per[k_lo] - per[k_hi]).dropna().values, k_lo, k_hi


def verdict_depth(free: pd.DataFrame) -> tuple[Verdict, dict]:
    """Pope's speed-cost counter: the crossover moves to larger K as the derivation gets harder,
    so the mean derivation index over the grid falls with ``k``. Supports if the t interval of
    the paired difference (easiest - hardest ``k``) lies above the margin; contradicts if it lies
    below zero or inside +-margin; mixed otherwise."""
    d, k_lo, k_hi = depth_effect(free)
    info = {"k_lo": k_lo, "k_hi": k_hi, "n": int(len(d))}
    if len(d) < 2:
        info.update(effect=math.nan, lo=math.nan, hi=math.nan)
        return Verdict(MIXED, f"fewer than two seeds with both k = {k_lo} and k = {k_hi}"), info
    est, lo, hi = stats.t_interval(d)
    info.update(effect=est, lo=lo, hi=hi)
    v = Verdict.from_interval(lo, hi, favour="positive", margin=DEPTH_MARGIN,
                              what=f"derivation index at k = {k_lo} minus k = {k_hi}")
    return v, info


def dual_cells(wd: pd.DataFrame) -> pd.DataFrame:
    """Coupled-L2 arms: per (arm, K, k) and seed, the regularised objective J = loss +
    weight_decay/2 |theta|^2 of the three networks, and the free network's relative excess over
    the better restricted one."""
    t = wd[wd.decay == "coupled"].copy()
    t["J"] = t.loss + 0.5 * t.weight_decay * t.norm_sq
    w = t.pivot_table(index=["arm", "weight_decay", "K", "k", "seed"], columns="condition",
                      values="J", aggfunc="first").reset_index()
    free = with_routes(t[t.condition == "free"])[["arm", "K", "k", "seed", "route", "di"]]
    w = w.merge(free, on=["arm", "K", "k", "seed"], how="left")
    w["best"] = np.where(w.memorise <= w.derive, "memorise", "derive")
    w["excess"] = w.free / w[["memorise", "derive"]].min(axis=1) - 1.0
    return w


def verdict_dual(wd: pd.DataFrame) -> tuple[Verdict, dict]:
    """Hubinger's dual-problem frame with an explicit bias (L2): does SGD end at (or below) the
    better restricted route's regularised objective? Per seed, the mean relative excess over the
    cells; supports if the t interval lies below the margin, contradicts if above it, mixed
    otherwise."""
    cells = dual_cells(wd)
    per_seed = cells.groupby("seed").excess.mean().dropna().values
    info = {"n_cells": int(cells[["arm", "K", "k"]].drop_duplicates().shape[0]),
            "n_seeds": int(len(per_seed)),
            "match": int((cells.route == cells.best).sum()), "n_nets": int(len(cells))}
    if len(per_seed) < 2:
        info.update(effect=math.nan, lo=math.nan, hi=math.nan)
        return Verdict(MIXED, "fewer than two seeds in the weight-decay arms"), info
    est, lo, hi = stats.t_interval(per_seed)
    info.update(effect=est, lo=lo, hi=hi)
    what = (f"the free network's regularised objective differs from the better restricted "
            f"route's by a mean fraction {est:+.3g} (interval [{lo:+.3g}, {hi:+.3g}])")
    if hi < DUAL_MARGIN:
        return Verdict(SUPPORTS, f"{what}, below the margin {DUAL_MARGIN:+g}"), info
    if lo > DUAL_MARGIN:
        return Verdict(CONTRADICTS, f"{what}, above the margin {DUAL_MARGIN:+g}"), info
    return Verdict(MIXED, f"{what}, which straddles the margin {DUAL_MARGIN:+g}"), info


def dual_table(wd: pd.DataFrame) -> pd.DataFrame:
    """Per coupled-L2 cell (decay, K, k): the mean loss, squared norm and objective of each
    route, which route dominates (lower loss *and* lower norm: both dual formulations pick it at
    any level), which has the lower objective, and where the free networks land."""
    t = wd[wd.decay == "coupled"].copy()
    t["J"] = t.loss + 0.5 * t.weight_decay * t.norm_sq
    t["route"] = route_class(t.follow_desc, t.heldout_acc)
    mean = t.groupby(["arm", "weight_decay", "K", "k", "condition"])[["loss", "norm_sq", "J"]].mean()
    mean = mean.unstack("condition")
    mean.columns = [f"{a}_{b}" for a, b in mean.columns]
    mean = mean.reset_index()
    lm, ld = mean.loss_memorise, mean.loss_derive
    nm, nd = mean.norm_sq_memorise, mean.norm_sq_derive
    mean["dominant"] = np.where((ld <= lm) & (nd <= nm), "derive",
                                np.where((lm <= ld) & (nm <= nd), "memorise", "neither"))
    mean["lower_objective"] = np.where(mean.J_derive <= mean.J_memorise, "derive", "memorise")
    free = t[t.condition == "free"].groupby(["arm", "K", "k"]).route
    counts = free.value_counts().unstack(fill_value=0).reindex(columns=["derive", "memorise", "mixed"],
                                                               fill_value=0)
    counts.columns = [f"free_{c}" for c in counts.columns]
    return mean.merge(counts.reset_index(), on=["arm", "K", "k"], how="left")


def verdict_memorisation(nets: pd.DataFrame, m: int) -> tuple[Verdict, dict]:
    """"Complete memorisation is highly unlikely": among reached free networks with more
    environments than description bits (K > m, where a description cannot serve as a linear
    key), the share that derived nothing (held-out accuracy below MEM_ACC). Supports if its
    Wilson interval lies below 1/4; contradicts if above 1/2; mixed otherwise."""
    free = with_routes(nets[(nets.condition == "free") & nets.reached.astype(bool) & (nets.K > m)])
    n, k = int(len(free)), int((free.route == "memorise").sum())
    info = {"n": n, "n_memorise": k, "share": math.nan, "lo": math.nan, "hi": math.nan}
    if n == 0:
        return Verdict(MIXED, f"no reached free network with K > {m}"), info
    share, lo, hi = stats.proportion_interval(k, n)
    info.update(share=share, lo=lo, hi=hi)
    what = f"{k} of {n} free networks with K > {m} derived nothing (Wilson interval [{lo:.2f}, {hi:.2f}])"
    label = SUPPORTS if hi < 0.25 else CONTRADICTS if lo > 0.5 else MIXED
    return Verdict(label, what), info


# ---------------------------------------------------------------------------------------------
# the whole analysis
def _fmt_k(kstar: float) -> str:
    return "none in the range" if not np.isfinite(kstar) else f"{int(kstar)}"


def analyse(tables: dict, params: dict) -> Findings:
    """Every glued value and derived table of the chapter, from the saved tables."""
    need = ["main_networks", "main_llc", "main_volume", "side_networks", "wd_networks",
            "llc_toys", "llc_sensitivity"]
    missing = [n for n in need if n not in tables]
    if missing:
        raise KeyError(f"analysis of {CHAPTER} needs tables {missing}")
    m = int(params["m"])
    main = tables["main_networks"]
    cplx = complexity_long(main, tables["main_llc"], tables["main_volume"])
    routes_all = cell_routes(pd.concat([main, tables["side_networks"], tables["wd_networks"]],
                                       ignore_index=True))
    routes = routes_all[(routes_all.arm == "main") & (routes_all.level == "main")]
    cc = {meas: cell_complexity(cplx, meas, "main") for meas in MEASURES}
    cc_alt = {meas: cell_complexity(cplx, meas, "alt") for meas in ("llc", "dist_init", "steps")}
    cells = pd.concat(list(cc.values()) + list(cc_alt.values()), ignore_index=True)

    v_premise, i_premise = verdict_premise(cc[MAIN_MEASURE], routes)
    v_speed, i_speed = verdict_speed(cc[MAIN_MEASURE], cc["steps"], routes)
    routes_alt = routes_all[(routes_all.arm == "main") & (routes_all.level == "alt")]
    v_speed_alt, i_speed_alt = verdict_speed(cc_alt[MAIN_MEASURE], cc_alt["steps"], routes_alt)
    main_free = main[main.level == "main"]
    v_depth, i_depth = verdict_depth(main_free)
    v_dual, i_dual = verdict_dual(tables["wd_networks"])
    v_mem, i_mem = verdict_memorisation(main_free, m)

    # the premise under other measures, the other loss level and the other arms
    rob = []
    for meas, c in list(cc.items()) + [(f"{k} (alt level)", v) for k, v in cc_alt.items()]:
        if meas.startswith("steps"):
            continue
        v, i = verdict_premise(c, routes)
        rob.append({"what": f"simplicity measure: {meas}", "verdict": v.label, **_counts(i)})
    for arm, g in routes_all.groupby("arm", sort=True):
        for level, gl in g.groupby("level"):
            if arm == "main" and level == "main":
                continue
            v, i = verdict_premise(cc[MAIN_MEASURE], gl)
            what = f"behaviour of arm {arm}" + (" at the alternative loss level" if level == "alt" else "")
            rob.append({"what": what, "verdict": v.label, **_counts(i)})
    rob = pd.DataFrame(rob)

    xs = []
    for meas, c in list(cc.items()) + [(f"{k}@alt", v) for k, v in cc_alt.items()]:
        x = crossover(c, need_generalise=not meas.startswith("steps"))
        x.insert(0, "what", meas)
        xs.append(x)
    xm = crossover(cc["steps"], derive_label=MEMORISE_SIMPLER, need_generalise=False)
    xm.insert(0, "what", "memorise faster")
    xs.append(xm)
    xb = behaviour_crossover(routes)
    xb.insert(0, "what", "SGD derives")
    xs.append(xb)
    cross = pd.concat(xs, ignore_index=True)

    verdicts = {"premise": v_premise, "speed": v_speed, "depth": v_depth, "dual": v_dual,
                "memorisation": v_mem}
    g = _glue(params, main, cplx, routes, cc, cross, i_premise, i_speed, i_depth, i_dual, i_mem,
              verdicts, rob, tables)
    g["verdict_speed_alt"] = v_speed_alt.label
    g["speed_alt_followed"], g["speed_alt_simple"] = i_speed_alt["n_speed"], i_speed_alt["n_simple"]
    led = ledger(verdicts, i_premise, i_speed, i_depth, i_dual, i_mem, g)
    dual_summary = dual_table(tables["wd_networks"])
    return Findings(glue=g, tables={"route_cells": routes_all, "complexity_cells": cells,
                                    "crossovers": cross, "premise_robustness": rob,
                                    "dual_cells": dual_summary, "ledger": led})


def _by_k(ks, fn, missing=-1.0) -> tuple:
    """``fn(k)`` for the difficulties 1, 2, 3 the prose names (``missing`` where ``k`` was not run)."""
    return tuple(fn(k) if k in ks else missing for k in (1, 2, 3))


def _glue(params, main, cplx, routes, cc, cross, i_premise, i_speed, i_depth, i_dual, i_mem,
          verdicts, rob, tables) -> dict:
    """Every glued value, under a literal key (searchable from the prose)."""
    g: dict = {}
    m, ks = int(params["m"]), sorted(int(k) for k in params["ks"])
    g["verdict"] = verdicts["premise"].label
    g["verdict_reason"] = verdicts["premise"].reason
    g["verdict_premise"], g["reason_premise"] = verdicts["premise"].label, verdicts["premise"].reason
    g["verdict_speed"], g["reason_speed"] = verdicts["speed"].label, verdicts["speed"].reason
    g["verdict_depth"], g["reason_depth"] = verdicts["depth"].label, verdicts["depth"].reason
    g["verdict_dual"], g["reason_dual"] = verdicts["dual"].label, verdicts["dual"].reason
    g["verdict_memorisation"] = verdicts["memorisation"].label
    g["reason_memorisation"] = verdicts["memorisation"].reason
    g["premise_cells"] = i_premise["n_cells"]
    g["premise_derives"] = i_premise["n_derives"]
    g["premise_not"] = i_premise["n_not"]
    per_k = {k: verdict_premise(cc[MAIN_MEASURE][cc[MAIN_MEASURE].k == k], routes[routes.k == k])
             for k in ks}     # the same rule, one difficulty at a time
    g["premise_k1"], g["premise_k2"], g["premise_k3"] = _by_k(ks, lambda k: per_k[k][0].label, "not run")
    g["premise_cells_k1"], g["premise_cells_k2"], g["premise_cells_k3"] = _by_k(
        ks, lambda k: per_k[k][1]["n_cells"], -1)
    g["premise_derives_k1"], g["premise_derives_k2"], g["premise_derives_k3"] = _by_k(
        ks, lambda k: per_k[k][1]["n_derives"], -1)
    g["say_premise"] = "; ".join(
        f"at k = {k} deriving is never the simpler route with generalising derive-only networks "
        "in the range" if i["n_cells"] == 0 else
        f"at k = {k} SGD derives in {i['n_derives']} and does not in {i['n_not']} of the "
        f"{i['n_cells']} cells where deriving is simpler" for k, (_, i) in per_k.items())
    n_seeds = int(params["seeds"])
    need = next((j for j in range(n_seeds + 1) if stats.proportion_interval(j, n_seeds)[1] > 0.5), None)
    g["needs_txt"] = (f"at least {need} of {n_seeds} seeds" if need is not None
                      else f"more than the {n_seeds} seeds of this profile")
    g["speed_cells"] = i_speed["n_cells"]
    g["speed_followed"] = i_speed["n_speed"]
    g["speed_simple"] = i_speed["n_simple"]
    g["say_speed"] = (f"where the simpler and the faster route differ ({i_speed['n_cells']} cells), "
                      f"SGD took the faster one in {i_speed['n_speed']} and the simpler one in "
                      f"{i_speed['n_simple']}" if i_speed["n_cells"] else
                      "the simpler and the faster route never differ clearly")
    e = i_depth["effect"]
    g["say_depth"] = ("the two difficulties could not be compared" if not np.isfinite(e) else
                      f"the mean derivation index is {'lower' if e > 0 else 'higher'} at "
                      f"k = {i_depth['k_hi']} than at k = {i_depth['k_lo']} by {abs(e):.2f}")
    g["depth_k_lo"], g["depth_k_hi"] = i_depth["k_lo"], i_depth["k_hi"]
    g["depth_effect"], g["depth_lo"], g["depth_hi"] = (_num(i_depth[x]) for x in ("effect", "lo", "hi"))
    g["dual_effect"], g["dual_lo"], g["dual_hi"] = (_num(i_dual[x]) for x in ("effect", "lo", "hi"))
    g["dual_match"], g["dual_nets"] = i_dual["match"], i_dual["n_nets"]
    g["mem_n"], g["mem_k"] = i_mem["n"], i_mem["n_memorise"]
    g["mem_share"], g["mem_lo"], g["mem_hi"] = (_num(i_mem[x]) for x in ("share", "lo", "hi"))
    # matching and stuck runs
    mm = main[main.level == "main"]
    ok = mm.reached.astype(bool)
    g["n_networks"] = int(len(mm))
    g["n_stuck"] = int((~ok).sum())
    g["loss_free"], g["loss_memorise"], g["loss_derive"] = (
        _num(mm[(mm.condition == c) & ok].loss.mean()) for c in ("free", "memorise", "derive"))
    g["stuck_free"], g["stuck_memorise"], g["stuck_derive"] = (
        int((~ok[mm.condition == c]).sum()) for c in ("free", "memorise", "derive"))

    def kstar(what):
        def one(k):
            row = cross[(cross.what == what) & (cross.k == k)]
            return _fmt_k(float(row.K_star.iloc[0])) if len(row) else "not measured"
        return _by_k(ks, one, "not run")

    g["kstar_llc_k1"], g["kstar_llc_k2"], g["kstar_llc_k3"] = kstar("llc")
    g["kstar_llc_alt_k1"], g["kstar_llc_alt_k2"], g["kstar_llc_alt_k3"] = kstar("llc@alt")
    g["kstar_volume_k1"], g["kstar_volume_k2"], g["kstar_volume_k3"] = kstar("fragility")
    g["kstar_dist_k1"], g["kstar_dist_k2"], g["kstar_dist_k3"] = kstar("dist_init")
    g["kstar_steps_k1"], g["kstar_steps_k2"], g["kstar_steps_k3"] = kstar("steps")
    g["kstar_steps_alt_k1"], g["kstar_steps_alt_k2"], g["kstar_steps_alt_k3"] = kstar("steps@alt")
    g["kstar_memfast_k1"], g["kstar_memfast_k2"], g["kstar_memfast_k3"] = kstar("memorise faster")
    g["kstar_sgd_k1"], g["kstar_sgd_k2"], g["kstar_sgd_k3"] = kstar("SGD derives")
    # the largest K: the route picture there
    kmax = int(routes.K.max())
    g["K_max"] = kmax

    def at_kmax(table, col):
        def one(k):
            r = table[(table.K == kmax) & (table.k == k)]
            return _num(r[col].iloc[0]) if len(r) else -1.0
        return _by_k(ks, one)

    g["share_kmax_k1"], g["share_kmax_k2"], g["share_kmax_k3"] = at_kmax(routes, "derive_share")
    g["di_kmax_k1"], g["di_kmax_k2"], g["di_kmax_k3"] = at_kmax(routes, "di")
    g["heldout_kmax_k1"], g["heldout_kmax_k2"], g["heldout_kmax_k3"] = at_kmax(routes, "heldout_acc")
    g["follow_kmax_k1"], g["follow_kmax_k2"], g["follow_kmax_k3"] = at_kmax(routes, "follow_desc")
    g["llc_mem_kmax_k1"], g["llc_mem_kmax_k2"], g["llc_mem_kmax_k3"] = at_kmax(cc["llc"], "memorise")
    g["llc_der_kmax_k1"], g["llc_der_kmax_k2"], g["llc_der_kmax_k3"] = at_kmax(cc["llc"], "derive")
    g["der_heldout_kmax_k1"], g["der_heldout_kmax_k2"], g["der_heldout_kmax_k3"] = at_kmax(
        cc["llc"], "derive_heldout")
    kmin = int(routes.K.min())
    small = cplx[(cplx.level == "main") & (cplx.K == kmin) & cplx.reached.astype(bool)]
    g["K_min"] = kmin
    g["llc_kmin_memorise"] = _num(small[small.condition == "memorise"].llc.mean())
    g["llc_kmin_derive"] = _num(small[small.condition == "derive"].llc.mean())
    g["llc_kmin_equations"] = kmin * int(params["s"]) / 2
    fr = mm[(mm.condition == "free") & ok & (mm.K == kmax)]

    def cost(col, k):
        f = fr[fr.k == k]
        return _num((f[f"loss_{col}"] - f.loss).mean()) if len(f) else -1.0

    g["cost_scramble_id_k1"], g["cost_zero_id_k1"], g["cost_scramble_desc_k1"], g["cost_zero_desc_k1"] = (
        cost(c, 1) for c in ("scramble_id", "zero_id", "scramble_desc", "zero_desc"))
    g["cost_scramble_id_k3"], g["cost_zero_id_k3"], g["cost_scramble_desc_k3"], g["cost_zero_desc_k3"] = (
        cost(c, 3) for c in ("scramble_id", "zero_id", "scramble_desc", "zero_desc"))
    free_k = cplx[(cplx.level == "main") & (cplx.condition == "free") & (cplx.K == kmax)]
    g["llc_free_kmax"] = _num(free_k.llc.mean())
    # how the premise fares under the other measures and arms
    g["robust_supports"] = int((rob.verdict == SUPPORTS).sum())
    g["robust_contradicts"] = int((rob.verdict == CONTRADICTS).sum())
    g["robust_mixed"] = int((rob.verdict == MIXED).sum())
    g["robust_n"] = int(len(rob))
    g.update(_dual_glue(tables["wd_networks"], cc["llc"], i_dual))
    g["say_measures"] = _say_measures(cross, ks)
    side = tables["side_networks"]
    stuck = side[~side.reached.astype(bool)]
    g["side_n"], g["side_stuck"] = int(len(side)), int(len(stuck))
    g["side_stuck_arms"] = ", ".join(sorted(stuck.arm.unique())) or "none"
    # estimator checks
    toys = tables["llc_toys"]
    tm = toys.groupby("toy").agg(true=("true_lambda", "first"), est=("llc", "mean"))
    rel = (tm.est - tm.true).abs() / tm.true
    g["toy_max_rel_err"] = _num(rel.max())
    g["toy_worst"] = str(rel.idxmax())
    g.update(_sensitivity(tables["llc_sensitivity"]))
    g["m_txt"] = str(m)
    g["n_seeds_txt"] = str(n_seeds)
    g["K_grid_txt"] = ", ".join(str(int(k)) for k in params["Ks"])
    g["k_grid_txt"] = ", ".join(str(k) for k in ks)
    g["vol_tol_txt"] = f"{float(params['vol_tol']):g}"
    g["vol_rhos_txt"] = ", ".join(f"{float(r):g}" for r in params["vol_rhos"])
    return g


def _dual_glue(wd: pd.DataFrame, cc_llc: pd.DataFrame, i_dual: dict) -> dict:
    """Glued values of the weight-decay (dual problem) arms."""
    g: dict = {}
    dt = dual_table(wd)
    n_free = dt[["free_derive", "free_memorise", "free_mixed"]].sum(axis=1)
    match = np.where(dt.lower_objective == "derive", dt.free_derive > n_free / 2, dt.free_derive == 0)
    g["dual_cells_match"], g["dual_cells_n"] = int(match.sum()), int(len(dt))
    g["dual_dominant"] = int((dt.dominant != "neither").sum())
    last = dt[(dt.K == dt.K.max()) & (dt.k == dt.k.max())].sort_values("weight_decay")
    first = (lambda col: _num(last[col].iloc[0])) if len(last) else (lambda col: -1.0)
    g["dual_K"] = int(dt.K.max()) if len(dt) else -1
    g["dual_k"] = int(dt.k.max()) if len(dt) else -1
    g["dual_wd"] = first("weight_decay")
    g["dual_norm_mem"] = first("norm_sq_memorise")
    g["dual_norm_der"] = first("norm_sq_derive")
    cells = dual_cells(wd)
    off = cells[cells.route != cells.best]
    g["dual_off"], g["dual_off_mixed"] = int(len(off)), int((off.route == "mixed").sum())
    e = i_dual["effect"]
    g["say_dual"] = ("could not be computed" if not np.isfinite(e) else
                     f"is {'lower' if e < 0 else 'higher'} than that of the better restricted route "
                     f"by a mean fraction {abs(e):.3f}")
    llc_last = cc_llc[(cc_llc.K == g["dual_K"]) & (cc_llc.k == g["dual_k"])]
    if len(last) and len(llc_last):
        by_norm = "derive" if g["dual_norm_der"] < g["dual_norm_mem"] else "memorise"
        by_llc = "derive" if llc_last["diff"].iloc[0] > 0 else "memorise"
        g["say_norm_llc"] = (f"by the norm the {by_norm} route is the cheaper one, and by the "
                             f"LLC (main arm, same K and k) the {by_llc} route is"
                             + (" too" if by_norm == by_llc else ""))
    else:
        g["say_norm_llc"] = "the comparison with the LLC could not be made"
    return g


def _say_measures(cross: pd.DataFrame, ks) -> str:
    kst = {c: tuple(str(cross[(cross.what == c) & (cross.k == k)].K_star.iloc[0]) for k in ks)
           for c in ("llc", "fragility", "dist_init")}
    if len(set(kst.values())) == 1:
        return ("The LLC, local volume and distance from the initial weights put the crossover at "
                "the same K for every difficulty")
    return ("The crossovers by LLC, local volume and distance from the initial weights are not all "
            "the same, so which route counts as simpler depends on how simplicity is measured")


def _sensitivity(sens: pd.DataFrame) -> dict:
    """How the memorise - derive LLC difference moves with the estimator's settings: per (K, k,
    seed) the difference at the main and at the alternative settings; the share of cells whose
    mean difference has the same sign."""
    w = sens.pivot_table(index=["setting", "K", "k", "seed"], columns="condition", values="llc",
                         aggfunc="first").reset_index()
    w["diff"] = w.memorise - w.derive
    cell = w.groupby(["setting", "K", "k"])["diff"].mean().unstack("setting")
    same = int((np.sign(cell["main"]) == np.sign(cell["alternative"])).sum()) if len(cell) else 0
    return {"sens_cells": int(len(cell)), "sens_same_sign": same}


def _num(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else -1.0


# ---------------------------------------------------------------------------------------------
def ledger(verdicts, i_premise, i_speed, i_depth, i_dual, i_mem, g) -> pd.DataFrame:
    """One ledger row per verdict, each naming the version of the claim it tests."""
    version = ("toy: K environments show a one-hot identifier and a description of 10 bits; "
               "the specification is k-bit parities of the description; SGD (full batch, "
               "momentum) stopped at matched training loss; simplicity = LLC")
    # where the rule's own share is undefined (no cell to judge), the row's effect is the share of
    # the grid's cells that could be judged (0 of n, with its Wilson interval): why it came out so
    n_p = i_premise["n_cells"]
    name_p = "share of derive-simpler cells where SGD derives"
    if n_p:
        sh_p = stats.proportion_interval(i_premise["n_derives"], n_p)
    else:
        name_p = "share of the grid's cells where deriving is simpler (none)"
        sh_p = stats.proportion_interval(0, i_premise["n_grid"]) if i_premise["n_grid"] else (math.nan,) * 3
    n_s = i_speed["n_speed"] + i_speed["n_simple"]
    name_s = "share of disagreeing cells where SGD took the faster route"
    sh_s = (i_speed["share"], i_speed["lo"], i_speed["hi"])
    if not n_s:
        name_s = ("share of the grid's cells where the simpler and the faster route differ and "
                  "SGD chose one clearly (none)")
        sh_s = stats.proportion_interval(0, i_speed["n_grid"]) if i_speed["n_grid"] else (math.nan,) * 3
    listing = SOURCE + ", Hubinger's list of what he thinks"
    specs = [  # id, claim, who, quote, source, version, side, effect name, (est, lo, hi), units, verdict, figure
        ("06-premise", "Where the training specification is large enough that deriving it is "
         "simpler than memorising it, SGD derives it.", "Hubinger",
         "directly memorizing pointers to that information", listing, version, report.PROPONENT,
         name_p, sh_p, "share of cells", "premise",
         FIG_ROUTES),
        ("06-memorisation", "Complete memorisation of the training answers is unlikely under the "
         "inductive biases.", "Hubinger", "highly unlikely under the inductive biases", listing,
         version + "; all difficulties, K above the description's 10 bits", report.PROPONENT,
         "share of free networks that derived nothing",
         (i_mem["share"], i_mem["lo"], i_mem["hi"]), "share of networks", "memorisation", FIG_ROUTES),
        ("06-speed", "The route SGD takes follows which route reaches the loss first, not which "
         "is simpler.", "Turner (the dynamical reading)",
         "locally reduce loss along the locally steepest direction",
         SOURCE + ", Turner's reply on what training selects for",
         version + "; speed = steps of the restricted networks to the matched loss", report.SCEPTIC,
         name_s, sh_s, "share of cells", "speed", FIG_COMPLEXITY),
        ("06-depth", "Derivation costs computation that training penalises, so the harder the "
         "derivation the more environments it takes before SGD derives.", "Pope",
         "pays a complexity penalty for runtime computations", SOURCE + ", Pope's reply to Hubinger",
         version + f"; difficulty = parity order k = {i_depth['k_lo']} vs {i_depth['k_hi']}",
         report.SCEPTIC, "mean derivation index, easiest minus hardest k",
         (i_depth["effect"], i_depth["lo"], i_depth["hi"]), "derivation index (0 to 1)", "depth",
         FIG_ROUTES),
        ("06-dual", "SGD selects on a combination of loss and inductive bias: with an explicit L2 "
         "penalty it ends at the route that minimises loss plus penalty.",
         "Hubinger (disputed by Turner)", "two dual optimization problems",
         SOURCE + ", Hubinger's reply to Turner",
         version.replace("stopped at matched training loss", "trained long with coupled L2 "
                         "weight decay") + "; complexity = squared norm", report.PROPONENT,
         "relative excess of the free network's objective",
         (i_dual["effect"], i_dual["lo"], i_dual["hi"]), "fraction of the better route's objective",
         "dual", FIG_DUAL),
    ]
    rows = [report.ledger_row(id=i, chapter=CHAPTER, claim=claim, who=who, quote=quote, source=src,
                              version=ver, claim_side=side, effect_name=name, effect=_nan(est[0]),
                              effect_lo=_nan(est[1]), effect_hi=_nan(est[2]), units=units,
                              verdict=verdicts[key].label, finding=verdicts[key].reason + ".",
                              figure=fig)
            for i, claim, who, quote, src, ver, side, name, est, units, key, fig in specs]
    return report.ledger_table(rows)


def _nan(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else math.nan
