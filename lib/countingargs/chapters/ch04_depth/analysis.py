"""Verdicts and glued numbers of chapter 04, from the saved tables only.

Every function takes ``(tables, params)`` (the tables as read back from their CSV files, the
notebook's parameters) and returns :class:`countingargs.report.Findings`; :func:`analyse`
returns all of them, which is what ``python -m countingargs verify`` recomputes.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ...nets.seeding import seed_int
from ...report import SCEPTIC, Findings, ledger_row, ledger_table
from ...stats import Verdict, bca_interval, describe_interval, t_interval
from .experiment import CHAPTER, placement_counts, reference_sd

Tables = Mapping[str, pd.DataFrame]

PHRASE = {"supports": "supports", "contradicts": "contradicts", "mixed": "is inconclusive about"}


def ci(values, stat=np.mean) -> tuple[float, float, float]:
    """``(estimate, low, high)`` over seeds, 95%: a Student-t interval for a mean (of paired
    differences where the values are paired), scipy's BCa bootstrap for any other statistic."""
    values = np.asarray(values, dtype=float)
    return t_interval(values) if stat is np.mean else bca_interval(values, statistic=stat, seed=0)


def _need(tables: Tables, *names: str) -> None:
    missing = [n for n in names if n not in tables]
    if missing:
        raise KeyError(f"chapter 04 analysis needs the tables {missing}; have {sorted(tables)}")


# ----------------------------------------------------------------------------------------------
# 1. placements
def placements(tables: Tables, params: Mapping) -> Findings:
    """Exact placement counts: the numbers the prose quotes."""
    _need(tables, "placements")
    p = tables["placements"]
    n_max, L_max = max(params["count_ns"]), params["count_L_max"]
    c12 = placement_counts(12, 6)
    big = p[(p.L == L_max) & (p.n == n_max)].iloc[0]
    short = p[(p.L == p.n) & (p.n == n_max)].iloc[0]
    return Findings(glue={
        "count_serial_12_6": c12["serial"], "count_shared_12_6": c12["parallel_shared"],
        "count_disjoint_12_6": c12["parallel_disjoint"],
        "ratio_disjoint_12_6": c12["parallel_disjoint"] / c12["serial"],
        "count_L_max": L_max, "count_n_max": n_max,
        "ratio_disjoint_big": float(big.ratio_disjoint), "ratio_shared_big": float(big.ratio_shared),
        "ratio_shared_short": float(short.ratio_shared)})


# ----------------------------------------------------------------------------------------------
# 2. Veit et al.
def deletion_effect(single: pd.DataFrame) -> pd.DataFrame:
    """Per seed: the intact error and the mean error increase over single-block deletions, for
    each architecture (columns ``base_<arch>``, ``incr_<arch>``). Refuses missing cells."""
    if single.error.isna().any():
        raise ValueError("veit_single_deletion has missing errors")
    base = single[single.deleted_block == -1].set_index(["arch", "seed"]).error
    dele = single[single.deleted_block >= 0].groupby(["arch", "seed"]).error.mean()
    incr = (dele - base).unstack("arch")
    base = base.unstack("arch")
    if set(incr.columns) != {"residual", "plain"} or incr.isna().any().any():
        raise ValueError("single-deletion table needs both architectures for every seed")
    return pd.concat([base.add_prefix("base_"), incr.add_prefix("incr_")], axis=1)


def deletion_verdict(single: pd.DataFrame) -> tuple[Verdict, tuple[float, float, float]]:
    """Part A: the interval of (plain - residual) mean error increase; above 0 supports Veit's
    premise, below 0 contradicts it."""
    eff = deletion_effect(single)
    est, lo, hi = ci((eff.incr_plain - eff.incr_residual).values)
    return Verdict.from_interval(lo, hi, "positive", what="plain minus residual error increase"), (est, lo, hi)


def veit_lesions(tables: Tables, params: Mapping) -> Findings:
    _need(tables, "veit_single_deletion", "veit_random_deletion", "veit_setup")
    single, rand_del = tables["veit_single_deletion"], tables["veit_random_deletion"]
    setup = tables["veit_setup"].iloc[0]
    eff = deletion_effect(single)
    v, (est, lo, hi) = deletion_verdict(single)
    g = {"veit_width": params["veit_width"], "veit_lr": params["veit_lr"],
         "veit_steps": params["veit_steps"], "veit_blocks": params["veit_blocks"],
         "veit_seeds": params["veit_seeds"], "veit_draws": params["veit_draws"],
         "veit_path_samples": params["veit_path_samples"], "veit_params": int(setup.n_params),
         "veit_npaths": 2 ** params["veit_blocks"], "n_train": int(setup.n_train),
         "n_test": int(setup.n_test), "n_digits": int(setup.n_digits)}
    for arch in ["residual", "plain"]:
        g[f"err_intact_{arch}"] = ci(eff[f"base_{arch}"].values)[0]
        m_, l_, h_ = ci(eff[f"incr_{arch}"].values)
        g[f"incr_{arch}"], g[f"incr_{arch}_lo"], g[f"incr_{arch}_hi"] = m_, l_, h_
    worst = single[single.deleted_block >= 0].groupby(["arch", "deleted_block"]).error.mean()
    wb = int(worst.loc["residual"].idxmax())
    g["worst_block_residual"] = wb
    g["worst_block_note"] = (
        "the first block, which reads straight from the input projection; this echoes what "
        "Veit et al. are reported to have found, that only deleting their downsampling blocks mattered"
        if wb == 0 else
        "not the first block, so the analogy with Veit et al.'s downsampling blocks does not apply")
    g["worst_err_residual"] = float(worst.loc["residual"].max())
    g.update({"diff_A": est, "diff_A_lo": lo, "diff_A_hi": hi, "verdict_deletion": v.label,
              "verdict_deletion_phrase": PHRASE[v.label]})
    half_k = params["veit_blocks"] // 2
    rk = rand_del[rand_del.k == half_k].groupby(["arch", "seed"]).error.mean().unstack("arch")
    g.update({"half_k": half_k, "randdel_half_residual": float(rk["residual"].mean()),
              "randdel_half_plain": float(rk["plain"].mean())})
    return Findings(glue=g)


def mean_path_length(paths: pd.DataFrame) -> pd.DataFrame:
    """Gradient-weighted mean path length, seeds x states (``init``, ``trained``), from the
    shares of ``veit_path_gradients``. Refuses missing shares."""
    if paths.share.isna().any():
        raise ValueError("veit_path_gradients has missing shares")
    return (paths.share * paths.k).groupby([paths.seed, paths.state]).sum().unstack("state")


def paths_verdict(paths: pd.DataFrame) -> tuple[Verdict, tuple[float, float, float]]:
    """Part B, credited to training only: the paired change (trained - initial) of the
    gradient-weighted mean path length. Below 0 (training shortens the effective paths)
    supports Veit's premise as Pope uses it; above 0 contradicts it; an interval across 0 is mixed."""
    ml = mean_path_length(paths)
    if not {"init", "trained"} <= set(ml.columns) or ml[["init", "trained"]].isna().any().any():
        raise ValueError("veit_path_gradients needs both states (init, trained) for every seed")
    est, lo, hi = ci((ml.trained - ml.init).values)
    return Verdict.from_interval(lo, hi, "negative", what="change of the mean path length in training"), (est, lo, hi)


def _decay(paths: pd.DataFrame, state: str, L: int) -> float:
    prof = paths[paths.state == state].pivot(index="k", columns="seed", values="grad_per_path").sort_index().values
    return float(np.exp(np.log(prof[1:] / prof[:-1])[: L // 2].mean()))


def veit_paths(tables: Tables, params: Mapping) -> Findings:
    _need(tables, "veit_path_gradients", "veit_setup")
    paths = tables["veit_path_gradients"]
    L = params["veit_blocks"]
    v, (d, d_lo, d_hi) = paths_verdict(paths)
    ml = mean_path_length(paths)
    g = {"n_path_images": int(tables["veit_setup"].n_path_images.iloc[0]), "path_half_depth": L / 2,
         "path_change": d, "path_change_lo": d_lo, "path_change_hi": d_hi, "verdict_paths": v.label,
         "verdict_paths_phrase": PHRASE[v.label], "path_decay": _decay(paths, "trained", L),
         "path_decay_init": _decay(paths, "init", L)}
    g["path_mean_len"], g["path_mean_len_lo"], g["path_mean_len_hi"] = ci(ml.trained.values)
    g["path_mean_len_init"], g["path_mean_len_init_lo"], g["path_mean_len_init_hi"] = ci(ml.init.values)
    tr = paths[paths.state == "trained"]
    cdf = np.cumsum(tr.groupby("k").share.mean().sort_index().values)
    k_lo, k_hi = int(np.searchsorted(cdf, 0.05)), int(np.searchsorted(cdf, 0.95))
    npaths = tr.groupby("k").n_paths.first().sort_index().values
    g.update({"path_k_lo": k_lo, "path_k_hi": k_hi,
              "path_frac_effective": float(100 * npaths[k_lo:k_hi + 1].sum() / 2 ** L)})
    g["path_text"] = {
        "supports": "training moved the gradient toward shorter paths",
        "contradicts": "training moved the gradient toward longer paths, so the short paths are a property "
                       "of the initialisation that training erodes",
        "mixed": "training did not move the gradient-weighted path length by a detectable amount, so the "
                 "short paths are a property of the initialisation"}[v.label]
    g["path_growth_text"] = {
        "contradicts": "yet their effective depth grows in training as well (part B)",
        "supports": "and their effective depth shrinks in training (part B)",
        "mixed": "and their effective depth does not change detectably in training (part B)"}[v.label]
    return Findings(glue=g)


# ----------------------------------------------------------------------------------------------
# 3. one function, two implementations
CONDITIONS = ("serial", "parallel", "staggered", "free")


def total_influence(spectra: pd.DataFrame) -> pd.Series:
    """Total influence (sum over degrees of degree x Fourier weight) of each task in ``task_spectra``."""
    return (spectra.degree * spectra.weight).groupby(spectra.task).sum()


def reached_pairs(training: pd.DataFrame, width: int, a: str, b: str) -> pd.Index:
    """Seeds at ``width`` where conditions ``a`` and ``b`` both reached the target."""
    r = training[training.width == width].pivot(index="seed", columns="condition", values="reached")
    if a not in r or b not in r:
        raise ValueError(f"parity_training lacks condition {a!r} or {b!r} at width {width}")
    both = r[a].astype(bool) & r[b].astype(bool)
    return both[both].index


def volume_effect(tables: Tables, width: int, a: str, b: str = "serial") -> tuple[float, float, float, int]:
    """Paired ``log r50(a) - log r50(b)`` over seeds where both reached: ``(est, lo, hi, n)``."""
    seeds = reached_pairs(tables["parity_training"], width, a, b)
    r = tables["parity_r50"]
    r = r[r.width == width].pivot(index="seed", columns="condition", values="r50").loc[seeds]
    d = np.log(r[a]) - np.log(r[b])
    if d.isna().any():
        raise ValueError(f"parity_r50 has missing r50 values for {a} or {b} at width {width}")
    if len(d) < 2:
        raise ValueError(f"fewer than two seed pairs reached the target for {a} and {b} at width {width}")
    return (*ci(d.values), len(d))


def volume_verdict(tables: Tables, width: int) -> tuple[Verdict, tuple[float, float, float]]:
    """Part C: paired log r50 (parallel - serial): above 0 supports, below 0 contradicts."""
    est, lo, hi, _ = volume_effect(tables, width, "parallel")
    return Verdict.from_interval(lo, hi, "positive", what="log r50 difference (parallel minus serial)"), (est, lo, hi)


def toy_recovery(toys: pd.DataFrame) -> pd.DataFrame:
    """Per setting and toy: the true coefficient, the mean estimate over chains, their ratio
    and the multiplicity (``llc_toys`` -> one row per setting x toy)."""
    g = toys.groupby(["setting", "toy"])
    out = g.agg(true_lambda=("true_lambda", "first"), multiplicity=("multiplicity", "first"),
                estimate=("llc", "mean"), chain_sd=("llc", "std")).reset_index()
    out["ratio"] = out.estimate / out.true_lambda
    return out


def validated(toys: pd.DataFrame, setting: str, tolerance: float) -> bool:
    """A setting passes when every toy of multiplicity 1 is recovered within ``tolerance``
    (relative); the multiplicity-2 toy approaches its value only at a log rate and is reported,
    not required."""
    rec = toy_recovery(toys)
    rec = rec[(rec.setting == setting) & (rec.multiplicity == 1)]
    if rec.empty or rec.ratio.isna().any():
        return False
    return bool(((rec.ratio - 1).abs() <= tolerance).all())


def llc_effect(llc_df: pd.DataFrame, setting: str, a: str = "parallel", b: str = "serial"):
    """Paired LLC(b) - LLC(a) over seeds whose chains did not diverge, with the median |drift|
    (LLC units): ``(est, lo, hi, n, drift)``."""
    sub = llc_df[(llc_df.setting == setting) & ~llc_df.diverged.astype(bool)]
    piv = sub.pivot(index="seed", columns="condition", values="llc")[[a, b]].dropna()
    if len(piv) < 2:
        raise ValueError(f"fewer than two seeds with LLC estimates for {a} and {b} at setting {setting!r}")
    drift = float(sub[sub.condition.isin([a, b])].drift.abs().median())
    return (*ci((piv[b] - piv[a]).values), len(piv), drift)


def llc_verdict(llc_df: pd.DataFrame, toys: pd.DataFrame, tolerance: float
                ) -> tuple[Verdict, tuple[float, float, float]]:
    """Part C': paired LLC (serial - parallel) at the main setting. Supports when its interval
    lies above 0, contradicts when below 0 -- provided (i) the main setting recovers the toys
    (:func:`validated`), (ii) the chains have settled (median |drift| below half the size of the
    difference) and (iii) the second setting's difference has the same sign. Otherwise mixed."""
    est, lo, hi, _, drift = llc_effect(llc_df, "main")
    alt = llc_effect(llc_df, "alt")[0]
    what = "LLC difference (serial minus parallel)"
    base = Verdict.from_interval(lo, hi, "positive", what=what)
    if base.label == "mixed":
        return base, (est, lo, hi)
    why = []
    if not validated(toys, "main", tolerance):
        why.append("the main sampler setting does not recover the toys")
    if drift >= abs(est) / 2:
        why.append(f"the chains drift by {drift:.3g} (median, LLC units), not small against the difference")
    if np.sign(alt) != np.sign(est):
        why.append("the second sampler setting gives the opposite sign")
    if why:
        return Verdict("mixed", f"{base.reason}, but " + "; ".join(why)), (est, lo, hi)
    return base, (est, lo, hi)


def spread_reference(L: int) -> tuple[int, float]:
    """The narrowest uniform-placement spread over chain lengths ``m = 1..L/2`` (shared
    blocks): ``(m, sd)``, the reference most lenient to the claim."""
    ref = {m: reference_sd(L, m) for m in range(1, L // 2 + 1)}
    m = min(ref, key=ref.get)
    return m, ref[m]


def _profiles(shares: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(seeds, A (n, L), B (n, L))``: per network and block, the share of the block's write
    that depends on bits 1-4 only (``A``) and on bits 5-8 only (``B``). Every block counts
    equally, whatever the size of its write: weighting by write energy let the large late writes
    (the stream grows with depth) decide every centre, and failed the positive controls."""
    if shares[["share_a", "share_b"]].isna().any().any():
        raise ValueError("block shares have missing values")
    piv = shares.pivot(index="seed", columns="block")
    return piv.index.values, piv["share_a"].values, piv["share_b"].values


def _centre(w: np.ndarray) -> np.ndarray:
    """Centre of mass over the last axis (block index, 0-based); nan where all zero."""
    tot = w.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, (w * np.arange(w.shape[-1])).sum(-1) / tot, np.nan)


def relative_depths(shares: pd.DataFrame) -> pd.Series:
    """Per seed: centre of the bits-1-4-only work minus centre of the bits-5-8-only work (blocks)."""
    seeds, A, B = _profiles(shares)
    return pd.Series(_centre(A) - _centre(B), index=seeds, name="relative_depth")


def swap_null(shares: pd.DataFrame, draws: int = 2000) -> np.ndarray:
    """The smeared null: in each block, the work on the two halves is exchanged with
    probability 1/2, independently across blocks and draws. A network whose blocks are not
    consistently devoted to one half (the halves smeared over the same blocks) keeps its
    distribution of relative depth under this exchange; a consistent arrangement does not.
    Returns the null relative depths ``(n_networks, draws)`` (seeds in the order of
    :func:`relative_depths`); the draws are fixed (seeded), so the result is deterministic."""
    _, A, B = _profiles(shares)
    flip = np.random.default_rng(seed_int(CHAPTER, "swap-null")).random((A.shape[0], draws, A.shape[1])) < 0.5
    A2 = np.where(flip, B[:, None], A[:, None])
    B2 = np.where(flip, A[:, None], B[:, None])
    return _centre(A2) - _centre(B2)


def spread_stats(shares: pd.DataFrame, L: int) -> dict:
    """Part D's statistics for one set of networks: the spread (SD over networks) of the
    relative depth with its BCa interval; its ratio to the uniform-placement reference
    (:func:`spread_reference`); and its ratio to the smeared null's spread (root mean square of
    the null relative depths, :func:`swap_null`), with a BCa interval over networks."""
    r = relative_depths(shares)
    if r.isna().any() or len(r) < 3:
        raise ValueError("part D needs at least three networks with work on both halves")
    m2 = (swap_null(shares) ** 2).mean(1)
    m_ref, sd_ref = spread_reference(L)
    sd, sd_lo, sd_hi = ci(r.values, stat=np.std)
    rv = r.values

    def smear_ratio(idx, axis=-1):
        idx = np.asarray(idx).astype(int)
        return rv[idx].std(axis=axis) / np.sqrt(m2[idx].mean(axis=axis))

    sm, sm_lo, sm_hi = bca_interval(np.arange(len(rv), dtype=float), statistic=smear_ratio, seed=0)
    return {"n": len(rv), "mean": float(rv.mean()), "sd": sd, "sd_lo": sd_lo, "sd_hi": sd_hi,
            "ref_m": m_ref, "ref_sd": sd_ref, "ratio": sd / sd_ref, "ratio_lo": sd_lo / sd_ref,
            "ratio_hi": sd_hi / sd_ref, "smear_sd": float(np.sqrt(m2.mean())), "smear_ratio": sm,
            "smear_ratio_lo": sm_lo, "smear_ratio_hi": sm_hi}


def spread_verdict(st: dict) -> Verdict:
    """Part D: supports when the spread's interval lies above half the uniform-placement
    reference; contradicts when it lies below half of it *and* below the smeared null's spread
    (the halves sit in a consistent arrangement, which smearing alone cannot produce); mixed
    otherwise -- in particular when the spread is small but no smaller than smearing gives."""
    if st["ratio_lo"] > 0.5:
        return Verdict("supports", f"the spread over the uniform reference [{st['ratio_lo']:.3g}, "
                                   f"{st['ratio_hi']:.3g}] lies above 0.5")
    if st["ratio_hi"] < 0.5 and st["smear_ratio_hi"] < 1:
        return Verdict("contradicts", f"the spread over the uniform reference [{st['ratio_lo']:.3g}, "
                                      f"{st['ratio_hi']:.3g}] lies below 0.5 and the spread over the smeared "
                                      f"null [{st['smear_ratio_lo']:.3g}, {st['smear_ratio_hi']:.3g}] below 1")
    return Verdict("mixed", f"the spread over the uniform reference [{st['ratio_lo']:.3g}, {st['ratio_hi']:.3g}] "
                            f"and over the smeared null [{st['smear_ratio_lo']:.3g}, {st['smear_ratio_hi']:.3g}] "
                            "do not settle it")


def halves_shares(tables: Tables) -> pd.DataFrame:
    """Block shares of the two-halves networks that reached the target."""
    _need(tables, "halves_block_shares", "halves_training")
    ok = tables["halves_training"].set_index("seed").reached.astype(bool)
    sh = tables["halves_block_shares"]
    return sh[sh.seed.map(ok).fillna(False).astype(bool)]


def control_shares(tables: Tables, params: Mapping, condition: str) -> pd.DataFrame:
    """Block shares of one parity condition's networks (main width) that reached the target."""
    tr = tables["parity_training"]
    tr = tr[(tr.width == params["bit_widths"][0]) & (tr.condition == condition)]
    ok = tr.set_index("seed").reached.astype(bool)
    sh = tables["parity_block_shares"]
    sh = sh[sh.condition == condition]
    return sh[sh.seed.map(ok).fillna(False).astype(bool)]


# -- E: which implementation does free training find? ------------------------------------------
def implementation_scores(probes: pd.DataFrame) -> pd.DataFrame:
    """Per condition and seed: ``serial_score`` (mean over sizes 5, 6, 7 of the best R^2 of a
    parity of that many bits, at any stream position: what only a chain holds), ``pair_score``
    (best R^2, at any position, of the weaker of two complementary 4-bit halves' parities: what a
    two-chain implementation holds), ``partial_r2`` (best R^2 of any parity of 3 to 7 bits), ``full_r2`` (best R^2 of the parity of all 8 bits before the
    last block) and ``full_first`` (first position where it is at least 0.5; nan if never)."""
    if probes.best_r2.isna().any():
        raise ValueError("parity_probes has missing R^2 values")
    key = ["condition", "seed"]
    best = probes.groupby(key + ["k"]).best_r2.max().unstack("k")
    out = pd.DataFrame({"serial_score": best[[5, 6, 7]].mean(axis=1),
                        "pair_score": probes[probes.k == 4].groupby(key).pair_r2.max(),
                        "partial_r2": best[[3, 4, 5, 6, 7]].max(axis=1)})
    last = probes.position.max()
    full = probes[(probes.k == 8) & (probes.position < last)]
    out["full_r2"] = full.groupby(key).best_r2.max()
    hit = full[full.best_r2 >= 0.5]
    out["full_first"] = hit.groupby(key).position.min()
    return out.reset_index()


def classify(scores: pd.DataFrame, threshold: float) -> pd.Series:
    """``serial`` when the serial score reaches ``threshold``, else ``parallel`` when the pair
    score does, else ``neither``."""
    return pd.Series(np.where(scores.serial_score >= threshold, "serial",
                              np.where(scores.pair_score >= threshold, "parallel", "neither")),
                     index=scores.index, name="implementation")


EXPECTED = {"serial": "serial", "parallel": "parallel", "staggered": "parallel"}


def implementation_classes(tables: Tables, params: Mapping) -> pd.DataFrame:
    """Every reached network at the main width with its scores and class."""
    _need(tables, "parity_probes", "parity_training")
    tr = tables["parity_training"]
    tr = tr[tr.width == params["bit_widths"][0]][["condition", "seed", "reached"]]
    sc = implementation_scores(tables["parity_probes"]).merge(tr, on=["condition", "seed"])
    sc = sc[sc.reached.astype(bool)].drop(columns="reached").reset_index(drop=True)
    sc["implementation"] = classify(sc, params["probe_threshold"])
    return sc


def choice_verdict(classes: pd.DataFrame, min_accuracy: float = 0.9
                   ) -> tuple[Verdict, tuple[float, float, float], float]:
    """Part E: among freely trained networks, the share classed ``parallel`` minus the share
    classed ``serial`` (a t-interval of the per-network score +1 / -1 / 0). Above 0 supports,
    below 0 contradicts, across 0 (including "neither" everywhere) mixed -- and mixed whenever
    the classifier labels fewer than ``min_accuracy`` of the supervised networks (the positive
    controls) correctly. Returns ``(verdict, (est, lo, hi), control accuracy)``."""
    ctrl = classes[classes.condition.isin(list(EXPECTED))]
    if ctrl.empty:
        raise ValueError("no supervised networks to check the classifier on")
    acc = float((ctrl.implementation == ctrl.condition.map(EXPECTED)).mean())
    free = classes[classes.condition == "free"]
    if len(free) < 2:
        raise ValueError("part E needs at least two freely trained networks that reached the target")
    d = (free.implementation == "parallel").astype(float) - (free.implementation == "serial").astype(float)
    est, lo, hi = ci(d.values)
    v = Verdict.from_interval(lo, hi, "positive", what="share parallel minus share serial")
    if acc < min_accuracy and v.label != "mixed":
        v = Verdict("mixed", f"{v.reason}, but the classifier gets only {acc:.0%} of the supervised networks right")
    return v, (est, lo, hi), acc


# -- glued numbers, section by section -------------------------------------------------------------
def _cond_stat(training: pd.DataFrame, width: int, condition: str, column: str, how: str) -> float:
    t = training[(training.width == width) & (training.condition == condition)]
    if how == "share":
        return float(t[column].astype(bool).mean())
    t = t[t.reached.astype(bool)]
    return float(t[column].median())


def matching(tables: Tables, params: Mapping) -> Findings:
    """Section 3's setting and what is matched between the implementations."""
    _need(tables, "parity_training", "task_spectra")
    tr, w = tables["parity_training"], params["bit_widths"][0]
    ti = total_influence(tables["task_spectra"])
    spec = tables["task_spectra"].pivot(index="degree", columns="task", values="weight")
    reached = tr[tr.reached.astype(bool)]
    main = tr[tr.width == w]
    norms = main.pivot(index="seed", columns="condition", values="param_norm")
    pair = reached_pairs(tr, w, "parallel", "serial")
    dn, dn_lo, dn_hi = ci((norms.loc[pair, "parallel"] - norms.loc[pair, "serial"]).values)
    g = {"bit_blocks": params["bit_blocks"], "bit_lr": params["bit_lr"], "bit_seeds": params["bit_seeds"],
         "bit_target_loss": params["bit_target_loss"], "bit_max_steps": params["bit_max_steps"],
         "aux_weight": params["aux_weight"], "bit_width_main": w,
         "bit_widths_s": ", ".join(str(x) for x in params["bit_widths"]),
         "bit_params_main": int(main.n_params.iloc[0]),
         "ti_parity": float(ti["parity"]), "ti_old_parallel": float(ti["old parallel (two halves)"]),
         "ti_old_serial": float(ti["old serial"]),
         "w12_old_serial": float(spec.loc[[1, 2], "old serial"].sum()),
         "w12_old_parallel": float(spec.loc[[1, 2], "old parallel (two halves)"].sum()),
         "w8_parity": float(spec.loc[8, "parity"]),
         "loss_dev_max": float((reached.final_loss - params["bit_target_loss"]).abs().max()),
         "norm_diff": dn, "norm_diff_lo": dn_lo, "norm_diff_hi": dn_hi}
    for key, (cond, col, how) in {
            "succ_serial": ("serial", "reached", "share"), "succ_parallel": ("parallel", "reached", "share"),
            "succ_staggered": ("staggered", "reached", "share"), "succ_free": ("free", "reached", "share"),
            "steps_serial": ("serial", "steps_to_target", "median"),
            "steps_parallel": ("parallel", "steps_to_target", "median"),
            "steps_staggered": ("staggered", "steps_to_target", "median"),
            "steps_free": ("free", "steps_to_target", "median"),
            "scale_serial": ("serial", "out_scale", "median"), "scale_parallel": ("parallel", "out_scale", "median"),
            "scale_staggered": ("staggered", "out_scale", "median"), "scale_free": ("free", "out_scale", "median"),
            "norm_serial": ("serial", "param_norm", "median"), "norm_parallel": ("parallel", "param_norm", "median"),
            "norm_free": ("free", "param_norm", "median"),
            "dist_serial": ("serial", "dist_init", "median"), "dist_parallel": ("parallel", "dist_init", "median"),
            "dist_free": ("free", "dist_init", "median")}.items():
        g[key] = _cond_stat(tr, w, cond, col, how)
    return Findings(glue=g)


def volume(tables: Tables, params: Mapping) -> Findings:
    """Part C and the other volume comparisons (staggered, free, the next width)."""
    _need(tables, "parity_training", "parity_r50")
    widths = params["bit_widths"]
    v, (e, lo, hi) = volume_verdict(tables, widths[0])
    g = {"vol_samples": params["vol_samples"], "vol_tol": params["vol_tol"],
         "vol_radii_s": ", ".join(f"{r:g}" for r in params["vol_radii"]),
         "vol_par": e, "vol_par_lo": lo, "vol_par_hi": hi, "vol_par_ratio": float(np.exp(e)),
         "vol_par_n": volume_effect(tables, widths[0], "parallel")[3],
         "verdict_volume": v.label, "verdict_volume_phrase": PHRASE[v.label]}
    g["vol_stag"], g["vol_stag_lo"], g["vol_stag_hi"], _ = volume_effect(tables, widths[0], "staggered")
    g["vol_free"], g["vol_free_lo"], g["vol_free_hi"], _ = volume_effect(tables, widths[0], "free")
    g["volume_reading"] = (
        "One reading of these numbers (an interpretation, not a measurement): the serial chain must hold "
        "parities of 5, 6 and 7 bits along the way, while the two-chain implementations never hold a parity "
        "of more than 4 bits, whichever blocks they use; a parity of more bits is a harder function for a "
        "narrow ReLU stream to hold, so it plausibly pins down more weights. If so, what the serial solution "
        "pays for is the size of its intermediate values, which comes with its depth, rather than the lack "
        "of a permutation group."
        if lo > 0 and g["vol_stag_lo"] > 0 else
        "The staggered control and the side-by-side implementation do not both exceed the serial chain, so "
        "the comparison does not say whether depth or independence of the chains is what matters.")
    if len(widths) > 1:
        e2, lo2, hi2, _ = volume_effect(tables, widths[1], "parallel")
        g["vol_next_text"] = (f"At width {widths[1]} the same difference is {e2:.3f} (95% interval {lo2:.3f} "
                              f"to {hi2:.3f}), an interval that {describe_interval(lo2, hi2)}.")
    else:
        g["vol_next_text"] = "No second width was run in this profile."
    return Findings(glue=g)


def llc_findings(tables: Tables, params: Mapping) -> Findings:
    """Part C', the estimator's validation on the toys, and the chains' drift."""
    _need(tables, "parity_llc", "llc_toys")
    llc_df, toys = tables["parity_llc"], tables["llc_toys"]
    tol = params["llc_tolerance"]
    v, (e, lo, hi) = llc_verdict(llc_df, toys, tol)
    _, _, _, n, drift = llc_effect(llc_df, "main")
    ea, loa, hia, _, drift_a = llc_effect(llc_df, "alt")
    rec = toy_recovery(toys)
    m1 = rec[rec.multiplicity == 1].assign(err=lambda d: (d.ratio - 1).abs())
    worst = m1.groupby("setting").err.max()
    nc = rec[rec.multiplicity == 2].set_index("setting").ratio
    main = llc_df[(llc_df.setting == "main") & ~llc_df.diverged.astype(bool)]
    nb = llc_df.groupby("setting").n_beta.first()
    (step, loc, _, burnin, draws), (alt_step, alt_loc, alt_burnin, alt_draws) = params["llc_main"], params["llc_alt"]
    g = {"llc_seeds": params["llc_seeds"], "llc_chains": params["llc_chains"],
         "llc_step": step, "llc_localization": loc, "llc_nbeta": float(nb["main"]), "llc_burnin": burnin,
         "llc_draws": draws, "llc_alt_step": alt_step, "llc_alt_localization": alt_loc,
         "llc_alt_nbeta": float(nb["alt"]), "llc_alt_burnin": alt_burnin, "llc_alt_draws": alt_draws,
         "llc_tolerance": params["llc_tolerance"], "llc_toy_chains": params["llc_toy_chains"],
         "llc_loc_over_nbeta": loc / float(nb["main"]), "llc_alt_loc_over_nbeta": alt_loc / float(nb["alt"]),
         "llc_serial": float(main[main.condition == "serial"].llc.mean()),
         "llc_parallel": float(main[main.condition == "parallel"].llc.mean()),
         "llc_diff": e, "llc_diff_lo": lo, "llc_diff_hi": hi, "llc_n": n, "llc_drift": drift,
         "llc_diff_alt": ea, "llc_diff_alt_lo": loa, "llc_diff_alt_hi": hia, "llc_drift_alt": drift_a,
         "llc_n_diverged": int(llc_df.diverged.astype(bool).sum()),
         "toys_main_worst": float(worst["main"]), "toys_alt_worst": float(worst["alt"]),
         "toys_main_nc": float(nc["main"]), "toys_alt_nc": float(nc["alt"]),
         "toys_main_pass": "passes" if validated(toys, "main", tol) else "fails",
         "toys_alt_pass": "passes" if validated(toys, "alt", tol) else "fails",
         "verdict_llc": v.label, "verdict_llc_phrase": PHRASE[v.label], "llc_reason": v.reason}
    return Findings(glue=g, tables={"llc_toy_recovery": rec})


def spread(tables: Tables, params: Mapping) -> Findings:
    """Part D on the two-halves task, with the placement measure's positive controls."""
    L = params["bit_blocks"]
    st = spread_stats(halves_shares(tables), L)
    v = spread_verdict(st)
    stag = spread_stats(control_shares(tables, params, "staggered"), L)
    par = spread_stats(control_shares(tables, params, "parallel"), L)
    sh = halves_shares(tables).groupby("block")[["share_a", "share_b", "share_ab"]].mean()
    ht = tables["halves_training"]
    g = {"halves_n": st["n"], "halves_success": float(ht.reached.astype(bool).mean()),
         "spread_sd": st["sd"], "spread_sd_lo": st["sd_lo"], "spread_sd_hi": st["sd_hi"],
         "spread_mean": st["mean"], "sd_ref": st["ref_sd"], "sd_ref_m": st["ref_m"],
         "sd_ref_m1": reference_sd(L, 1), "sd_ratio": st["ratio"], "sd_ratio_lo": st["ratio_lo"],
         "sd_ratio_hi": st["ratio_hi"], "smear_sd": st["smear_sd"], "smear_ratio": st["smear_ratio"],
         "smear_ratio_lo": st["smear_ratio_lo"], "smear_ratio_hi": st["smear_ratio_hi"],
         "ctrl_stag_mean": stag["mean"], "ctrl_stag_sd": stag["sd"], "ctrl_stag_smear_ratio": stag["smear_ratio"],
         "ctrl_stag_smear_ratio_hi": stag["smear_ratio_hi"], "ctrl_par_mean": par["mean"], "ctrl_par_sd": par["sd"],
         "share_a_mean": float(sh.share_a.mean()), "share_b_mean": float(sh.share_b.mean()),
         "share_ab_first": float(sh.share_ab.iloc[0]), "share_ab_last": float(sh.share_ab.iloc[-1]),
         "verdict_spread": v.label, "verdict_spread_phrase": PHRASE[v.label], "spread_reason": v.reason}
    ok = stag["mean"] < -1.5 and stag["smear_ratio_hi"] < 1 and abs(par["mean"]) < 0.5
    g["control_text"] = (
        "The controls behave as they should: the measure places the staggered chains about three blocks "
        "apart and the side-by-side ones together, and it sees the staggered networks' fixed arrangement as a "
        "spread well below their smeared null." if ok else
        "The controls do not come out as their construction dictates, so the measure's verdict below should "
        "be read with caution.")
    g["spread_text"] = {
        "supports": "the relative depth of the two halves varies from network to network about as widely as "
                    "uniform placement of two chains would make it",
        "contradicts": "the two halves sit in nearly the same arrangement in every network, more consistently "
                       "than a smeared solution would show",
        "mixed": "the relative depth varies little from network to network, but no less than a solution "
                 "that smears both halves over the same blocks would show; the measure cannot tell a "
                 "fixed arrangement from smearing here"
                 if st["ratio_hi"] < 0.5 else
                 "the spread of the relative depth is neither clearly wide nor clearly narrow"}[v.label]
    return Findings(glue=g)


def choice(tables: Tables, params: Mapping) -> Findings:
    """Part E: which implementation free training finds, with the classifier's controls."""
    cls = implementation_classes(tables, params)
    v, (e, lo, hi), acc = choice_verdict(cls)
    free = cls[cls.condition == "free"]
    counts = free.implementation.value_counts()
    g = {"probe_threshold": params["probe_threshold"], "choice_accuracy": acc,
         "choice_n_free": len(free), "choice_n_parallel": int(counts.get("parallel", 0)),
         "choice_n_serial": int(counts.get("serial", 0)), "choice_n_neither": int(counts.get("neither", 0)),
         "choice_diff": e, "choice_diff_lo": lo, "choice_diff_hi": hi,
         "free_full_r2": float(free.full_r2.median()), "free_pair_score": float(free.pair_score.median()),
         "free_serial_score": float(free.serial_score.median()),
         "ctrl_serial_score": float(cls[cls.condition == "serial"].serial_score.median()),
         "ctrl_parallel_serial_score": float(cls[cls.condition == "parallel"].serial_score.median()),
         "ctrl_parallel_pair_score": float(cls[cls.condition == "parallel"].pair_score.median()),
         "verdict_choice": v.label, "verdict_choice_phrase": PHRASE[v.label], "choice_reason": v.reason}
    n = max(len(free), 1)
    if g["choice_n_neither"] / n > 0.5:
        g["choice_text"] = ("Most networks left to themselves reach the parity without building either "
                            "gate-level implementation: the best probe for any parity of 3 to 7 bits reaches a "
                            f"median R\u00b2 of {free.partial_r2.median():.2f} in their stream, while the parity of "
                            "all 8 bits builds up over the blocks. That is a computation of its own kind, not the "
                            "two-circuit solution the permutation argument counts.")
    else:
        g["choice_text"] = ("Most networks left to themselves build one of the two gate-level implementations "
                            "(counts above).")
    return Findings(glue=g, tables={"implementation_classes": cls})


# -- the ledger ---------------------------------------------------------------------------------
SOURCE = "Pope, reposted Tweet on Carlsmith's report (the thread's opening comment)"
CLAIM_SHORT = "Pope's parallel-circuit claim"
VEIT = "Veit et al.'s premise, as Pope cites it"


def _fmt(e, lo, hi, digits=3) -> str:
    return f"{e:.{digits}f} (95% interval {lo:.{digits}f} to {hi:.{digits}f})"


def ledger(tables: Tables, params: Mapping) -> Findings:
    """One row per verdict the chapter computes (``report.ledger_row``)."""
    vA, (a, a_lo, a_hi) = deletion_verdict(tables["veit_single_deletion"])
    vB, (b, b_lo, b_hi) = paths_verdict(tables["veit_path_gradients"])
    vC, (c, c_lo, c_hi) = volume_verdict(tables, params["bit_widths"][0])
    vC2, (d, d_lo, d_hi) = llc_verdict(tables["parity_llc"], tables["llc_toys"], params["llc_tolerance"])
    st = spread_stats(halves_shares(tables), params["bit_blocks"])
    vD = spread_verdict(st)
    cls = implementation_classes(tables, params)
    vE, (e, e_lo, e_hi), _ = choice_verdict(cls)
    free = cls[cls.condition == "free"].implementation.value_counts()
    ml = mean_path_length(tables["veit_path_gradients"])
    common = dict(chapter="04_depth", who="Quintin Pope", source=SOURCE, claim_side=SCEPTIC)
    rows = [
        ledger_row(id="04-deletion", claim="Residual networks keep working when a single block is deleted, "
                   "unlike plain networks of the same depth.", quote="consistent with empirical results such as",
                   version=VEIT + " (single-block deletion)", effect_name="mean error increase, plain minus residual",
                   effect=a, effect_lo=a_lo, effect_hi=a_hi, units="test error (fraction)", verdict=vA.label,
                   finding=f"Deleting one block costs the plain MLP {_fmt(a, a_lo, a_hi)} more test error than "
                           "the residual MLP.", figure="depth-lesions", **common),
        ledger_row(id="04-paths-training", claim="Training makes residual networks rely on short paths.",
                   quote="significant \u201cshort depth\u201d biases", version=VEIT + " (effective paths), "
                   "credited to training only", effect_name="change in training of the gradient-weighted mean path length",
                   effect=b, effect_lo=b_lo, effect_hi=b_hi, units="blocks", verdict=vB.label,
                   finding=f"The gradient-weighted mean path length is {ml.init.mean():.2f} blocks at initialisation "
                           f"and {ml.trained.mean():.2f} after training (change {_fmt(b, b_lo, b_hi, 2)}), "
                           f"against half the depth, {params['veit_blocks'] / 2:g}.", figure="depth-paths", **common),
        ledger_row(id="04-volume", claim="At the same function and loss, the parallel implementation leaves "
                   "more parameter volume than the serial one.",
                   quote="far more parameter configurations that implement the parallel solution",
                   version=CLAIM_SHORT + ", one placement each (local volume)", effect_name="paired log r50, "
                   "parallel minus serial", effect=c, effect_lo=c_lo, effect_hi=c_hi, units="log of a radius ratio",
                   verdict=vC.label, finding=f"Computed as two 3-step chains, 8-bit parity keeps its loss under random "
                   f"perturbations {np.exp(c):.2f} times as large (geometric mean of r50 ratios) as computed "
                   f"as one 7-step chain; log difference {_fmt(c, c_lo, c_hi)}.",
                   figure="depth-volume", **common),
        ledger_row(id="04-llc", claim="At the same function and loss, the parallel implementation is more "
                   "degenerate (lower learning coefficient) than the serial one.",
                   quote="far more parameter configurations that implement the parallel solution",
                   version=CLAIM_SHORT + ", one placement each (LLC)", effect_name="paired LLC, serial minus parallel",
                   effect=d, effect_lo=d_lo, effect_hi=d_hi, units="LLC (dimensionless)", verdict=vC2.label,
                   finding=f"The LLC difference is {_fmt(d, d_lo, d_hi, 2)}; {vC2.reason}.", figure="depth-llc", **common),
        ledger_row(id="04-spread", claim="Two parallel halves of a computation sit at relative depths that vary "
                   "from network to network.", quote="an entire permutation group",
                   version=CLAIM_SHORT + " (its permutation mechanism)", effect_name="spread of the halves' "
                   "relative depth over the uniform-placement spread", effect=st["ratio"], effect_lo=st["ratio_lo"],
                   effect_hi=st["ratio_hi"], units="ratio", verdict=vD.label,
                   finding=f"The relative depth spreads {st['sd']:.2f} blocks across networks, "
                           f"{st['ratio']:.2f} of uniform placement and {st['smear_ratio']:.2f} of what smearing gives.",
                   figure="depth-placement-spread", **common),
        ledger_row(id="04-free-implementation", claim="Trained freely, networks implement the parallel rather "
                   "than the serial solution.", quote="far more parameter configurations that implement the parallel solution",
                   version=CLAIM_SHORT + ", what training finds", effect_name="share of free networks classed parallel "
                   "minus share classed serial", effect=e, effect_lo=e_lo, effect_hi=e_hi, units="share of networks",
                   verdict=vE.label, finding=f"Of {int(free.sum())} freely trained networks, {int(free.get('parallel', 0))} "
                   f"hold the two-chain intermediates, {int(free.get('serial', 0))} the chain's and "
                   f"{int(free.get('neither', 0))} neither.", figure="depth-implementations", **common),
    ]
    table = ledger_table(rows)
    # the book's ledger page reads ``verdict`` and ``verdict_reason`` from every chapter: here a
    # per-part list (there is no combined label) and the rows' findings
    summary = "; ".join(f"{r.id.removeprefix('04-')}: {r.verdict}" for r in table.itertuples())
    reason = " ".join(table.finding)
    return Findings(glue={"verdict": summary, "verdict_reason": reason}, tables={"ledger": table})


def analyse(tables: Tables, params: Mapping) -> Findings:
    """Everything the notebook glues, and the derived tables (``llc_toy_recovery``,
    ``implementation_classes``, ``ledger``)."""
    return Findings.merge(placements(tables, params), veit_lesions(tables, params),
                          veit_paths(tables, params), matching(tables, params), volume(tables, params),
                          llc_findings(tables, params), spread(tables, params), choice(tables, params),
                          ledger(tables, params))
