"""Intervals over seeds and the verdict helpers.

Intervals are computed over *seeds* (independent training runs), never over the examples
inside one run, so they show how much a result would move with a fresh set of runs. With the
few seeds a chapter can afford (5 to 20), use :func:`t_interval` on paired differences, or
:func:`bca_interval` (scipy's bias-corrected and accelerated bootstrap) for statistics other
than a mean; a plain percentile bootstrap under-covers at these sizes.

Over a *fixed* set (every target function, every cell of a grid) an interval describes spread,
not sampling error: report exact counts next to it.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

SUPPORTS, CONTRADICTS, MIXED = "supports", "contradicts", "mixed"
OUTCOMES = (SUPPORTS, CONTRADICTS, MIXED)


def _clean(values: Sequence[float], what: str, at_least: int) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if x.size < at_least:
        raise ValueError(f"{what} needs at least {at_least} values, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} got a non-finite value: {x[~np.isfinite(x)][:3]!r}")
    return x


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean with a Student-t interval, ``(mean, low, high)``; needs two or more values. All
    values equal gives a zero-width interval."""
    from scipy import stats as st

    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x = _clean(values, "t_interval", 2)
    m = float(x.mean())
    sd = float(x.std(ddof=1))
    if sd == 0.0:
        return m, m, m
    half = float(st.t.ppf(0.5 + level / 2, x.size - 1) * sd / math.sqrt(x.size))
    return m, m - half, m + half


def finite_t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """:func:`t_interval` over the finite values only, for tables with cells that may be missing
    (a stuck run, an undefined statistic): ``(nan, nan, nan)`` when none is finite, ``(value, nan,
    nan)`` when one is (a mean without an interval)."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    if v.size == 1:
        return float(v[0]), math.nan, math.nan
    return t_interval(v, level)


def paired_t_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95
                      ) -> tuple[float, float, float]:
    """Student-t interval of the mean paired difference ``a - b`` (same seeds, same order)."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same length, got {a.size} and {b.size}")
    return t_interval(a - b, level)


def bca_interval(values: Sequence[float], statistic: Callable = np.mean, level: float = 0.95,
                 n_resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """``(estimate, low, high)``: the statistic with scipy's BCa bootstrap interval.
    Deterministic for a given ``seed``; needs two or more values; all values equal (or a
    statistic that does not vary over resamples) gives a zero-width interval."""
    from scipy import stats as st

    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x = _clean(values, "bca_interval", 2)
    est = float(statistic(x))
    if np.all(x == x[0]):
        return est, est, est
    res = st.bootstrap((x,), lambda s, axis=-1: statistic(s, axis=axis), vectorized=True,
                       confidence_level=level, n_resamples=n_resamples, method="BCa",
                       random_state=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):   # degenerate resampling distribution
        return est, est, est
    return est, lo, hi


def proportion_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """A share ``k / n`` with its Wilson score interval ``(share, low, high)``."""
    from scipy import stats as st

    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    res = st.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return k / n, float(res.low), float(res.high)


def describe_interval(low: float, high: float, margin: float = 0.0, unit: str = "") -> str:
    """Where an interval lies, in words, computed from its ends (for prose that must not be
    typed by hand): "lies above 0.05", "lies below 0", "lies inside ±0.05", "straddles 0"."""
    u = f" {unit}" if unit else ""
    if low > high:
        raise ValueError(f"interval low {low} exceeds high {high}")
    if margin > 0:
        if low > margin:
            return f"lies above {margin:g}{u}"
        if high < -margin:
            return f"lies below {-margin:g}{u}"
        if -margin <= low and high <= margin:
            return f"lies inside ±{margin:g}{u}"
        return f"overlaps the band ±{margin:g}{u} and reaches beyond it"
    if low > 0:
        return "lies above zero"
    if high < 0:
        return "lies below zero"
    return "includes zero"


@dataclass(frozen=True)
class Verdict:
    """A verdict computed from an interval by a rule fixed before the run.

    ``from_interval(low, high, favour="positive")``: the claim is supported when the whole
    interval lies on the favoured side beyond ``margin``, contradicted when the whole interval
    lies on the other side of zero (or, with a margin, inside ``[-margin, margin]``: the effect
    is shown to be negligible), and mixed otherwise.
    """

    label: str
    reason: str

    @classmethod
    def from_interval(cls, low: float, high: float, favour: str = "positive",
                      margin: float = 0.0, what: str = "effect") -> "Verdict":
        if favour not in ("positive", "negative"):
            raise ValueError("favour must be 'positive' or 'negative'")
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"interval [{low}, {high}] is not finite")
        if low > high:
            raise ValueError(f"interval low {low} exceeds high {high}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
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
    from tqdm import tqdm as _tqdm

    return _tqdm(iterable, total=total, desc=desc, file=sys.__stderr__, mininterval=2.0,
                 leave=False, dynamic_ncols=False, ncols=90, **kw)
