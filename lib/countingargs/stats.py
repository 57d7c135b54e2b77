"""Statistics helpers: bootstrap and t intervals over seeds, and the verdict rule.

Intervals are computed over *seeds* (independent training runs), never over the examples
inside one run, so they show how much the result would move with a fresh set of runs.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

SUPPORTS, CONTRADICTS, MIXED = "supports", "contradicts", "mixed"


def bootstrap_ci(values: Sequence[float], stat: Callable = np.mean, n_boot: int = 4000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Percentile bootstrap interval of ``stat`` over ``values`` (1-D).

    Returns ``(estimate, low, high)``. Deterministic for a given ``seed``. With one value the
    interval collapses to that value; with none a ``ValueError`` names the problem.
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci got a non-finite value: " + repr(x[~np.isfinite(x)][:3]))
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    est = float(stat(x))
    if x.size == 1:
        return est, est, est
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = np.apply_along_axis(stat, 1, x[idx]) if stat is not np.mean else x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return est, float(lo), float(hi)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean with a Student-t interval: ``(mean, low, high)``."""
    from scipy import stats as st

    x = np.asarray(values, dtype=float).ravel()
    if x.size < 2:
        raise ValueError("mean_ci needs at least two values")
    m = float(x.mean())
    half = float(st.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


@dataclass(frozen=True)
class Verdict:
    """A verdict computed from an interval by a rule fixed before the run.

    ``from_interval(low, high, favour="positive")``: the claim is supported when the whole
    interval lies on the favoured side of zero (beyond ``margin``), contradicted when the whole
    interval lies on the other side (or inside ``[-margin, margin]`` when a margin is given,
    i.e. the effect is shown to be negligible), and mixed otherwise.
    """

    label: str
    reason: str

    @classmethod
    def from_interval(cls, low: float, high: float, favour: str = "positive",
                      margin: float = 0.0, what: str = "effect") -> "Verdict":
        if favour not in ("positive", "negative"):
            raise ValueError("favour must be 'positive' or 'negative'")
        if low > high:
            raise ValueError(f"interval low {low} exceeds high {high}")
        sign = 1.0 if favour == "positive" else -1.0
        lo, hi = sorted((sign * low, sign * high))
        span = f"[{low:.4g}, {high:.4g}]"
        if lo > margin:
            return cls(SUPPORTS, f"the 95% interval of the {what} {span} lies on the predicted side")
        if hi < 0 or (margin > 0 and -margin <= lo and hi <= margin):
            return cls(CONTRADICTS, f"the 95% interval of the {what} {span} rules out the predicted effect")
        return cls(MIXED, f"the 95% interval of the {what} {span} includes both outcomes")

    @classmethod
    def combine(cls, parts: Iterable["Verdict"]) -> "Verdict":
        """All parts support -> supports; all contradict -> contradicts; otherwise mixed."""
        parts = list(parts)
        if not parts:
            raise ValueError("Verdict.combine needs at least one part")
        labels = {p.label for p in parts}
        label = labels.pop() if len(labels) == 1 else MIXED
        return cls(label, "; ".join(p.reason for p in parts))

    def __str__(self) -> str:  # what glue shows
        return self.label


def progress(iterable=None, total: int | None = None, desc: str = "", **kw):
    """A progress bar that writes to the process's real stderr (the runner's terminal),
    so it never lands in the executed notebook."""
    from tqdm import tqdm as _plain

    return _plain(iterable, total=total, desc=desc, file=sys.__stderr__, mininterval=2.0,
                  leave=False, dynamic_ncols=False, ncols=90, **kw)
