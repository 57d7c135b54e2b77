"""Verdicts and glued numbers of chapter 04, from the saved tables only.

Every function takes ``(tables, params)`` (the tables as read back from their CSV files, the
notebook's parameters) and returns :class:`countingargs.report.Findings`; :func:`analyse`
returns all of them, which is what ``python -m countingargs verify`` recomputes.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ...report import Findings
from ...stats import Verdict, bca_interval, t_interval
from .experiment import placement_counts, reference_sd

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


def mean_path_length(paths: pd.DataFrame) -> pd.Series:
    """Gradient-weighted mean path length per seed, from the shares of ``veit_path_gradients``."""
    if paths.share.isna().any():
        raise ValueError("veit_path_gradients has missing shares")
    return (paths.share * paths.k).groupby(paths.seed).sum()


def paths_verdict(paths: pd.DataFrame, n_blocks: int) -> tuple[Verdict, tuple[float, float, float]]:
    """Part B: the interval of L/2 - (gradient-weighted mean path length); above 0 supports."""
    est, lo, hi = ci(n_blocks / 2 - mean_path_length(paths).values)
    return Verdict.from_interval(lo, hi, "positive", what="L/2 minus gradient-weighted path length"), (est, lo, hi)


def veit_paths(tables: Tables, params: Mapping) -> Findings:
    _need(tables, "veit_path_gradients", "veit_setup")
    paths = tables["veit_path_gradients"]
    L = params["veit_blocks"]
    v, _ = paths_verdict(paths, L)
    m_, l_, h_ = ci(mean_path_length(paths).values)
    msh = paths.groupby("k").share.mean().sort_index().values
    cdf = np.cumsum(msh)
    k_lo, k_hi = int(np.searchsorted(cdf, 0.05)), int(np.searchsorted(cdf, 0.95))
    npaths = paths.groupby("k").n_paths.first().sort_index().values
    prof = paths.pivot(index="k", columns="seed", values="grad_per_path").sort_index().values
    ratio = prof[1:] / prof[:-1]
    return Findings(glue={
        "n_path_images": int(tables["veit_setup"].n_path_images.iloc[0]),
        "path_mean_len": m_, "path_mean_len_lo": l_, "path_mean_len_hi": h_,
        "path_half_depth": L / 2, "verdict_paths": v.label, "verdict_paths_phrase": PHRASE[v.label],
        "path_k_lo": k_lo, "path_k_hi": k_hi,
        "path_frac_effective": float(100 * npaths[k_lo:k_hi + 1].sum() / 2 ** L),
        "path_binom_mean": L / 2,
        "path_decay": float(np.exp(np.log(ratio[: L // 2]).mean())),
        "path_text": {"supports": "the gradient comes mostly from shorter ones",
                      "contradicts": "the gradient does not come mostly from shorter ones",
                      "mixed": "whether the gradient comes from shorter ones is not settled by these seeds"
                      }[v.label]})


# ----------------------------------------------------------------------------------------------
# 3. bit tasks
def both_reached(training: pd.DataFrame, width: int) -> pd.Series:
    """Per seed at ``width``: did the networks of both tasks reach the target?"""
    r = training[training.width == width].pivot(index="seed", columns="task", values="reached")
    return r.astype(bool).all(axis=1)


def width_summary(tables: Tables, params: Mapping) -> pd.DataFrame:
    """One row per width: success, steps, the paired log r50 difference, placement spread and
    order, and the probe R^2 at the start and end of the stream."""
    _need(tables, "bits_training", "bits_r50", "bits_placement", "bits_probe_r2")
    train_df, r50_df = tables["bits_training"], tables["bits_r50"]
    place_df, probe_df = tables["bits_placement"], tables["bits_probe_r2"]
    L = params["bit_blocks"]
    rows = []
    for width in params["bit_widths"]:
        tr_w = train_df[train_df.width == width].pivot(index="seed", columns="task")
        reached = tr_w["reached"].astype(bool)
        both = reached["parallel"] & reached["serial"]
        r = r50_df[r50_df.width == width].pivot(index="seed", columns="task", values="r50")[both]
        st = tr_w["steps_to_target"][both]
        row = {"width": width, "n_both": int(both.sum())}
        for task in ["parallel", "serial"]:
            row[f"success_{task}"] = reached[task].mean()
            row[f"steps_{task}"] = st[task].median()
        e, lo, hi = ci((np.log(r["parallel"]) - np.log(r["serial"])).values) if both.sum() else (np.nan,) * 3
        row.update({"dlog_r50": e, "dlog_r50_lo": lo, "dlog_r50_hi": hi})
        e, lo, hi = ci(np.log(st["parallel"].values) - np.log(st["serial"].values))
        row.update({"dlog_steps": e, "dlog_steps_lo": lo, "dlog_steps_hi": hi})
        for task, key in [("parallel", "parallel"), ("serial", "serial")]:
            pl = place_df[(place_df.width == width) & (place_df.task == task)].set_index("seed")
            rel = pl.relative_depth[reached[task]].dropna().values
            if task == "parallel":
                row["sd_rel"], row["sd_rel_lo"], row["sd_rel_hi"] = ci(rel, stat=np.std)
            row[f"mean_rel_{key}"], row[f"mean_rel_{key}_lo"], row[f"mean_rel_{key}_hi"] = ci(rel)
        end = probe_df[(probe_df.width == width) & (probe_df.position == L)]
        start = probe_df[(probe_df.width == width) & (probe_df.position == 0)]
        row["probe_g_end"], row["probe_h_end"] = end.r2_g.mean(), end.r2_h.mean()
        row["probe_g_start"], row["probe_h_start"] = start.r2_g.mean(), start.r2_h.mean()
        rows.append(row)
    summary = pd.DataFrame(rows)
    ref_m, ref_min = spread_reference(L)
    summary["sd_ref"] = ref_min
    summary["sd_ratio"] = summary.sd_rel / ref_min
    return summary


def spread_reference(L: int) -> tuple[int, float]:
    """The narrowest uniform-placement spread over chain lengths ``m = 1..L/2`` (shared
    blocks): ``(m, sd)``, the reference most lenient to the claim."""
    ref = {m: reference_sd(L, m) for m in range(1, L // 2 + 1)}
    m = min(ref, key=ref.get)
    return m, ref[m]


def llc_paired(llc_df: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Seeds x task LLC table for one sampler setting (reached, not diverged, both tasks)."""
    sub = llc_df[(llc_df.setting == setting) & llc_df.reached.astype(bool) & ~llc_df.diverged.astype(bool)]
    return sub.pivot(index="seed", columns="task", values="llc").dropna()


def claim_verdicts(tables: Tables, params: Mapping, summary: pd.DataFrame | None = None) -> dict:
    """Parts C, C', C' at the second sampler setting, and D: ``name -> (Verdict, (est, lo, hi))``.

    C: paired log r50 (parallel - serial) above 0 supports. C': paired LLC (serial - parallel)
    above 0 supports. D: placement spread over the uniform-placement reference, minus 0.5, above
    0 supports. Each below 0 contradicts; an interval across 0 is mixed."""
    summary = width_summary(tables, params) if summary is None else summary
    main = summary.iloc[0]
    _, ref_min = spread_reference(params["bit_blocks"])
    out = {"volume": (Verdict.from_interval(main.dlog_r50_lo, main.dlog_r50_hi, "positive",
                                            what="log r50 difference (parallel minus serial)"),
                      (main.dlog_r50, main.dlog_r50_lo, main.dlog_r50_hi))}
    for name, setting, what in [("llc", "main", "LLC difference (serial minus parallel)"),
                                ("llc_alt", "alt", "LLC difference, second setting")]:
        piv = llc_paired(tables["bits_llc"], setting)
        est, lo, hi = ci((piv["serial"] - piv["parallel"]).values)
        out[name] = (Verdict.from_interval(lo, hi, "positive", what=what), (est, lo, hi))
    est, lo, hi = (main.sd_rel / ref_min - 0.5, main.sd_rel_lo / ref_min - 0.5, main.sd_rel_hi / ref_min - 0.5)
    out["spread"] = (Verdict.from_interval(lo, hi, "positive", what="placement spread ratio minus 0.5"),
                     (est, lo, hi))
    return out


def bits(tables: Tables, params: Mapping) -> Findings:
    """Parts C, C' and D, and the numbers of section 3."""
    _need(tables, "bits_training", "bits_llc", "bits_block_shares")
    summary = width_summary(tables, params)
    main = summary.iloc[0]
    L = params["bit_blocks"]
    ref_m, ref_min = spread_reference(L)
    g = {"bit_blocks": L, "bit_lr": params["bit_lr"], "bit_target_loss": params["bit_target_loss"],
         "bit_max_steps": params["bit_max_steps"], "vol_samples": params["vol_samples"],
         "llc_step": params["llc_step"], "llc_localization": params["llc_localization"],
         "llc_chains": params["llc_chains"], "llc_draws": params["llc_draws"],
         "llc_burnin": params["llc_burnin"], "llc_seeds": min(params["llc_seeds"], params["bit_seeds"]),
         "llc_alt_s": f"step {params['llc_alt'][0]:g}, localisation {params['llc_alt'][1]:g}",
         "vol_tol": params["vol_tol"], "vol_radii_s": ", ".join(f"{r:g}" for r in params["vol_radii"]),
         "bit_seeds": params["bit_seeds"], "bit_widths_s": ", ".join(str(w) for w in params["bit_widths"]),
         "bit_width_main": params["bit_widths"][0]}
    train_df = tables["bits_training"]
    g["bit_params_main"] = int(train_df[train_df.width == params["bit_widths"][0]].n_params.iloc[0])
    v = claim_verdicts(tables, params, summary)
    (vC, _), (vC2, (estC2, loC2, hiC2)), (vC2b, (estC2b, loC2b, hiC2b)), (vD, _) = (
        v["volume"], v["llc"], v["llc_alt"], v["spread"])
    llc_df = tables["bits_llc"]
    llc_piv = llc_paired(llc_df, "main")
    g.update({"llc_n": len(llc_piv), "llc_parallel": float(llc_piv["parallel"].mean()),
              "llc_serial": float(llc_piv["serial"].mean()), "llc_diff": estC2, "llc_diff_lo": loC2,
              "llc_diff_hi": hiC2, "llc_diff_alt": estC2b, "llc_diff_alt_lo": loC2b,
              "llc_diff_alt_hi": hiC2b, "verdict_llc": vC2.label, "verdict_llc_alt": vC2b.label,
              "verdict_llc_phrase": PHRASE[vC2.label], "llc_n_diverged": int(llc_df.diverged.astype(bool).sum())})
    dir_vol = np.sign(main.dlog_r50) if (main.dlog_r50_lo > 0 or main.dlog_r50_hi < 0) else 0
    dir_llc = np.sign(estC2) if (loC2 > 0 or hiC2 < 0) else 0
    g["measures_agree_text"] = (
        "The two measures agree in direction." if dir_vol == dir_llc and dir_vol != 0 else
        ("The two measures point in opposite directions: one finds the parallel solutions less constrained, "
         "the other more. A local volume at a few radii and an LLC from one sampler setting see "
         "different aspects of the loss landscape, so neither alone settles how constrained a solution is."
         if dir_vol * dir_llc < 0 else
         "At least one of the two measures gives no clear direction, so they cannot be said to agree."))
    for key in ["success_parallel", "success_serial", "steps_parallel", "steps_serial", "dlog_r50",
                "dlog_r50_lo", "dlog_r50_hi", "dlog_steps", "dlog_steps_lo", "dlog_steps_hi", "sd_rel",
                "sd_rel_lo", "sd_rel_hi", "mean_rel_serial", "mean_rel_serial_lo", "mean_rel_serial_hi",
                "mean_rel_parallel", "mean_rel_parallel_lo", "mean_rel_parallel_hi", "probe_g_end",
                "probe_h_end", "probe_g_start", "probe_h_start"]:
        g["main_" + key] = float(main[key])
    g.update({"main_n_both": int(main.n_both), "main_r50_ratio": float(np.exp(main.dlog_r50)),
              "main_steps_ratio": float(np.exp(main.dlog_steps)), "sd_ref": ref_min, "sd_ref_m": ref_m,
              "sd_ref_m1": reference_sd(L, 1), "sd_ratio": float(main.sd_rel / ref_min),
              "sd_ratio_lo": float(main.sd_rel_lo / ref_min), "sd_ratio_hi": float(main.sd_rel_hi / ref_min),
              "verdict_volume": vC.label, "verdict_volume_phrase": PHRASE[vC.label],
              "verdict_spread": vD.label, "verdict_spread_phrase": PHRASE[vD.label]})
    g["caution_text"] = ("Either way, two compact circuits that slide past each other across "
                         "networks do not describe what we measured." if vD.label == "contradicts" else
                         "Smearing works against a wide spread, so the spread measured here is, if anything, "
                         "an underestimate.")
    g["spread_text"] = {
        "contradicts": "the two halves sit at nearly the same relative depth in every network; the relative "
                       "depth varies little from seed to seed",
        "supports": "the relative depth of the two halves varies widely from seed to seed",
        "mixed": "the spread of the relative depth of the two halves is neither clearly wide nor clearly narrow"}[vD.label]
    sh = tables["bits_block_shares"]
    shp = sh[(sh.width == params["bit_widths"][0]) & (sh.task == "parallel")].groupby("block")[
        ["share_a", "share_b", "share_ab"]].mean()
    g.update({"share_ab_first": float(shp.share_ab.iloc[0]), "share_ab_last": float(shp.share_ab.iloc[-1]),
              "share_a_mean": float(shp.share_a.mean()), "share_b_mean": float(shp.share_b.mean())})
    ser_sig = main.mean_rel_serial_hi < 0 or main.mean_rel_serial_lo > 0
    g["order_text"] = ("The measure can detect an order of computation" if ser_sig else
                       "The measure did not detect a clear order of computation even in the serial task")
    gain = max(main.probe_g_end - main.probe_g_start, main.probe_h_end - main.probe_h_start)
    g["probe_text"] = ("The networks do not write g and h into the stream as separate linear features, so "
                       "there was little for a per-block ablation to remove" if gain < 0.2 else
                       "The probes do gain some accuracy through the stack, but the ablation damage they gave was "
                       "too noisy to locate the halves")
    others = summary.iloc[1:]

    def sign_word(lo, hi):
        return "above zero" if lo > 0 else ("below zero" if hi < 0 else "spanning zero")

    g["other_widths_text"] = "; ".join(
        f"width {int(r.width)}: log r50 difference {r.dlog_r50:.3f} [{r.dlog_r50_lo:.3f}, {r.dlog_r50_hi:.3f}], "
        f"{sign_word(r.dlog_r50_lo, r.dlog_r50_hi)}; placement spread {r.sd_rel:.2f} blocks "
        f"[{r.sd_rel_lo:.2f}, {r.sd_rel_hi:.2f}], {r.sd_rel / ref_min:.2f} of the reference"
        for r in others.itertuples()) or "no other width was run in this profile"
    return Findings(glue=g, tables={"bits_summary": summary})


def tally(labels: list[str]) -> str:
    n_s, n_c, n_m = labels.count("supports"), labels.count("contradicts"), labels.count("mixed")
    return (f"{n_s} {'supports' if n_s == 1 else 'support'} it, "
            f"{n_c} {'contradicts' if n_c == 1 else 'contradict'} it and "
            f"{n_m} {'is' if n_m == 1 else 'are'} inconclusive")


def verdict_table(tables: Tables, params: Mapping) -> Findings:
    """The five parts' verdicts (``verdict_parts``) and their combination."""
    v = claim_verdicts(tables, params)
    parts = [("A single-block deletion", deletion_verdict(tables["veit_single_deletion"])),
             ("B path length", paths_verdict(tables["veit_path_gradients"], params["veit_blocks"])),
             ("C volume at matched loss", v["volume"]), ("C' LLC at matched loss", v["llc"]),
             ("D placement spread", v["spread"])]
    table = pd.DataFrame([{"part": name, "verdict": vd.label, "estimate": e, "low": lo, "high": hi}
                          for name, (vd, (e, lo, hi)) in parts])
    overall = Verdict.combine([vd for _, (vd, _) in parts])
    top = Findings(glue={"premise_tally": tally(list(table.verdict[:2])),
                         "claim_tally": tally(list(table.verdict[2:])), "verdict": overall.label,
                         "verdict_reason": overall.reason},
                   tables={"verdict_parts": table})
    return top


def analyse(tables: Tables, params: Mapping) -> Findings:
    """Everything the notebook glues, and the derived tables (``bits_summary``, ``verdict_parts``)."""
    return Findings.merge(placements(tables, params), veit_lesions(tables, params),
                          veit_paths(tables, params), bits(tables, params),
                          verdict_table(tables, params))
