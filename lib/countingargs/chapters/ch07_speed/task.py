"""The task of chapter 07, as formulas: two equally learnable features of different reliability.

A label ``y`` is a fair coin in ``{-1, +1}``. Two *features* are noisy copies of it, each flipped
independently: the *better* feature ``F_b`` with probability ``eps_b``, the *worse* one ``F_w``
with probability ``eps_w >= eps_b``. Each feature is the parity (product) of one block of ``k``
input bits (block 0 = bits ``[0, k)``, block 1 = bits ``[k, 2k)``); which block carries the
better feature alternates with the seed, so no block position is favoured. The other bits are
fair coins. Both features are the same kind of function of the same number of bits, and the
input distribution is symmetric under swapping the two blocks, so they are equally learnable
by construction (checked at zero gap: the coin flip).

Everything a network can know about ``y`` is in the *stratum* ``(F_b, F_w)``; with
``p_agree = (1-eps_b)(1-eps_w) + eps_b eps_w`` the two features agree, and then
``P(y = F_b) = q_agree = (1-eps_b)(1-eps_w) / p_agree``; they disagree with probability
``p_dis = 1 - p_agree``, and then ``P(y = F_b) = p_dis_b = (1-eps_b) eps_w / p_dis``.

The *two solutions* training chooses between are the best predictor (Bayes: trust ``F_b`` on
disagreeing inputs, with probability ``p_dis_b``) and its mirror image, the best predictor of
the task with the two noise rates swapped (trust ``F_w`` there). They agree on agreeing
inputs, so their loss gap (nats, cross-entropy, per example) is

    gap = p_dis * (2 p_dis_b - 1) * log(p_dis_b / (1 - p_dis_b)),

the *gap* of this chapter. The gap between the two single-feature predictors,
``H(eps_w) - H(eps_b)`` (``H`` the binary entropy in nats), is a different number (larger at
small gaps, smaller at large ones); both are reported (a pitfall of pilots: the two are easily
confused).
"""
from __future__ import annotations

import math

import numpy as np

LN2 = math.log(2.0)


def entropy(p) -> np.ndarray:
    """Binary entropy in nats, ``H(0) = H(1) = 0``."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log(p) + (1 - p) * np.log1p(-p))
    return np.where((p <= 0) | (p >= 1), 0.0, h)


def cross_entropy(p, q) -> np.ndarray:
    """``-(p log q + (1-p) log(1-q))`` in nats: true probability ``p``, prediction ``q``."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    return -(p * np.log(q) + (1 - p) * np.log1p(-q))


def _check_eps(eps_b, eps_w):
    eb, ew = np.asarray(eps_b, dtype=float), np.asarray(eps_w, dtype=float)
    if np.any(~np.isfinite(eb)) or np.any(~np.isfinite(ew)):
        raise ValueError("noise rates must be finite")
    if np.any((eb <= 0) | (eb >= 0.5)) or np.any((ew <= 0) | (ew > 0.5)):
        raise ValueError(f"need 0 < eps_b < 0.5 and 0 < eps_w <= 0.5, got {eps_b}, {eps_w}")
    return eb, ew


def strata(eps_b, eps_w) -> dict:
    """Probabilities of the strata and ``P(y = F_b)`` in each (see the module docstring)."""
    eb, ew = _check_eps(eps_b, eps_w)
    p_agree = (1 - eb) * (1 - ew) + eb * ew
    p_dis = 1 - p_agree
    return dict(p_agree=p_agree, p_dis=p_dis, q_agree=(1 - eb) * (1 - ew) / p_agree,
                p_dis_b=(1 - eb) * ew / p_dis)


def bayes_loss(eps_b, eps_w) -> np.ndarray:
    """Loss of the best predictor (the noise floor), nats."""
    s = strata(eps_b, eps_w)
    return s["p_agree"] * entropy(s["q_agree"]) + s["p_dis"] * entropy(s["p_dis_b"])


def mirror_gap(eps_b, eps_w) -> np.ndarray:
    """Loss of the mirror-image best predictor minus the best loss: the chapter's *gap*."""
    s = strata(eps_b, eps_w)
    p = s["p_dis_b"]
    return s["p_dis"] * (2 * p - 1) * np.log(p / (1 - p))


def single_feature_gap(eps_b, eps_w) -> np.ndarray:
    """``H(eps_w) - H(eps_b)``: the gap between the two single-feature predictors."""
    eb, ew = _check_eps(eps_b, eps_w)
    return entropy(ew) - entropy(eb)


def bayes_reliance(eps_b, eps_w) -> np.ndarray:
    """``P(y = F_b)`` on disagreeing inputs: the reliance of the best predictor."""
    return strata(eps_b, eps_w)["p_dis_b"]


def eps_for_gap(gap: float, eps_b: float) -> float:
    """The worse feature's noise rate that makes :func:`mirror_gap` equal ``gap`` (nats)."""
    from scipy.optimize import brentq

    _check_eps(eps_b, eps_b)
    if not gap >= 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    if gap == 0:
        return float(eps_b)
    hi = 0.5 - 1e-9
    top = float(mirror_gap(eps_b, hi))
    if gap >= top:
        raise ValueError(f"a gap of {gap} nats is out of reach at eps_b={eps_b} (largest {top:.3g})")
    return float(brentq(lambda e: float(mirror_gap(eps_b, e)) - gap, eps_b, hi, xtol=1e-14))


def stratum_targets(eps_b, eps_w, fb, fw, mirror: bool = False) -> np.ndarray:
    """``P(y = +1)`` for inputs whose features are ``fb``, ``fw`` (arrays in {-1, +1}). With
    ``mirror`` the noise rates are swapped (``F_b`` flipped with probability ``eps_w``, ``F_w``
    with ``eps_b``): the task the mirror solution is best for."""
    s = strata(eps_w, eps_b) if mirror else strata(eps_b, eps_w)
    fb, fw = np.asarray(fb), np.asarray(fw)
    p_fb = np.where(fb == fw, s["q_agree"], s["p_dis_b"])        # P(y = F_b)
    return np.where(fb > 0, p_fb, 1 - p_fb)
