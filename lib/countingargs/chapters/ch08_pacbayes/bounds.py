"""The arithmetic of a PAC-Bayes risk certificate (numpy for the certificate, torch for training).

A certificate for a stochastic classifier ``Q`` (a Gaussian over the weights) is built from
three numbers measured on the *bound set* ``S`` of ``n`` examples, which the prior never saw:

* the empirical risk ``R_S(Q)`` (the average over ``S`` of the loss of a network drawn from
  ``Q``), estimated by Monte Carlo and replaced by an upper confidence bound
  (:func:`mc_upper`, the sample-convergence bound of Langford and Caruana);
* ``KL(Q || P)`` to the prior ``P`` (:func:`gaussian_kl`, exact for diagonal Gaussians);
* the confidence ``1 - delta``.

The PAC-Bayes-kl bound (Seeger; Maurer, for losses in [0, 1] and ``n >= 8``) says that with
probability at least ``1 - delta`` over ``S``, for every ``Q`` at once,

    kl(R_S(Q) || R(Q)) <= (KL(Q || P) + ln(2 sqrt(n) / delta)) / n,

so ``R(Q) <= kl_inverse(R_S(Q), that right-hand side)`` (:func:`pac_bayes_kl`). A prior chosen
from a grid of ``k`` candidates is paid for with ``delta / k`` (a union bound). Every function
here is checked in ``tests/test_ch08_pacbayes.py`` against values computed by hand.
"""
from __future__ import annotations

import math

import numpy as np

#: bisection steps of :func:`kl_inverse` (the bracket halves each step: 2^-80 of [0, 1])
BISECTION_STEPS = 80


def _check_unit(x: np.ndarray, what: str) -> None:
    if np.any(~np.isfinite(x)) or np.any(x < 0) or np.any(x > 1):
        raise ValueError(f"{what} must lie in [0, 1], got {x[(~np.isfinite(x)) | (x < 0) | (x > 1)][:3]!r}")


def kl_bernoulli(q, p) -> np.ndarray:
    """``kl(q || p) = q ln(q/p) + (1-q) ln((1-q)/(1-p))`` for Bernoulli means, elementwise
    (with ``0 ln 0 = 0``; infinite where ``p`` is 0 or 1 and ``q`` is not)."""
    q, p = np.broadcast_arrays(np.asarray(q, dtype=float), np.asarray(p, dtype=float))
    _check_unit(q, "q")
    _check_unit(p, "p")
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(q > 0, q * np.log(q / p), 0.0)
        b = np.where(q < 1, (1 - q) * np.log((1 - q) / (1 - p)), 0.0)
    return a + b


def kl_inverse(q, c) -> np.ndarray:
    """The upper inverse of the binary kl: the largest ``p`` in ``[q, 1]`` with
    ``kl(q || p) <= c``, elementwise, by bisection (``kl(q || .)`` increases on ``[q, 1]``); the
    upper end of the final bracket is returned, so rounding never makes the bound too small.
    ``c = 0`` gives ``q``; ``q = 0`` gives ``1 - exp(-c)``. (Near ``p = q`` the binary kl is
    computed to about 1e-17, so the inverse of a tiny ``c`` is good to about 1e-8.)"""
    q, c = np.broadcast_arrays(np.asarray(q, dtype=float), np.asarray(c, dtype=float))
    _check_unit(q, "q")
    if np.any(~np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"c must be finite and >= 0, got {c[(~np.isfinite(c)) | (c < 0)][:3]!r}")
    lo, hi = q.copy(), np.ones_like(q)
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        ok = kl_bernoulli(q, mid) <= c
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return np.where(c == 0, q, hi)       # the upper end of the bracket: never below the inverse


def complexity(kl, n, delta) -> np.ndarray:
    """The right-hand side of the PAC-Bayes-kl bound, ``(KL + ln(2 sqrt(n) / delta)) / n``
    (elementwise; ``n`` the size of the bound set)."""
    n, delta = np.asarray(n, dtype=float), np.asarray(delta, dtype=float)
    if np.any(n < 8):
        raise ValueError(f"the PAC-Bayes-kl bound (Maurer) needs n >= 8 examples, got {n}")
    if np.any(~((delta > 0) & (delta < 1))):
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    kl = np.asarray(kl, dtype=float)
    if np.any(~np.isfinite(kl)) or np.any(kl < 0):
        raise ValueError(f"KL(Q || P) must be finite and >= 0, got {kl}")
    return (kl + np.log(2 * np.sqrt(n) / delta)) / n


def pac_bayes_kl(emp_risk, kl, n, delta) -> np.ndarray:
    """Upper bound on the risk: ``kl_inverse(emp_risk, complexity(kl, n, delta))``."""
    return kl_inverse(emp_risk, complexity(kl, n, delta))


def mc_upper(mean_loss, n_samples, delta_mc: float) -> np.ndarray:
    """Upper confidence bound (probability ``1 - delta_mc``) on the mean of a loss in [0, 1]
    from the average of ``n_samples`` independent draws: ``kl_inverse(mean, ln(2/delta_mc) /
    n_samples)`` (the Chernoff bound in kl form, which holds for independent variables in
    [0, 1] with different means too; Hoeffding 1963)."""
    if not 0 < delta_mc < 1:
        raise ValueError(f"delta_mc must lie in (0, 1), got {delta_mc}")
    n_samples = np.asarray(n_samples, dtype=float)
    if np.any(n_samples < 1):
        raise ValueError(f"need at least one Monte Carlo sample, got {n_samples}")
    return kl_inverse(mean_loss, math.log(2 / delta_mc) / n_samples)


def certificate(mean_loss, n_samples, kl, n, delta: float, delta_mc: float, n_priors=1) -> np.ndarray:
    """The risk certificate: the Monte Carlo upper bound on the empirical risk, then the
    PAC-Bayes-kl bound with ``delta / n_priors`` (a union bound over a grid of priors). It holds
    with probability at least ``1 - delta - delta_mc``."""
    n_priors = np.asarray(n_priors, dtype=float)
    if np.any(n_priors < 1):
        raise ValueError(f"n_priors must be >= 1, got {n_priors}")
    return pac_bayes_kl(mc_upper(mean_loss, n_samples, delta_mc), kl, n, delta / n_priors)


def holdout(err, n, delta: float) -> np.ndarray:
    """The test-set (hold-out) bound of one fixed classifier with error ``err`` on ``n``
    examples it never saw: ``kl_inverse(err, ln(1/delta) / n)`` (Langford 2005)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    return kl_inverse(err, math.log(1 / delta) / np.asarray(n, dtype=float))


# -- torch: the training objective and the KL of diagonal Gaussians ------------------------------
def gaussian_kl(mu_q, sigma_q, mu_p, sigma_p):
    """``KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2))`` summed over every axis but the first
    (the network index): ``(M, ...)`` tensors, ``sigma_p`` broadcastable (e.g. ``(M, 1, 1)``)."""
    import torch

    var_ratio = (sigma_q / sigma_p) ** 2
    t = 0.5 * (var_ratio + ((mu_q - mu_p) / sigma_p) ** 2 - 1.0) - torch.log(sigma_q / sigma_p)
    return t.reshape(t.shape[0], -1).sum(1)


def f_quad(emp_risk, kl, n: int, delta: float):
    """The quadratic PAC-Bayes objective (Pérez-Ortiz et al. 2021) for losses in [0, 1]:
    ``(sqrt(r + c) + sqrt(c))^2`` with ``c = (KL + ln(2 sqrt(n)/delta)) / (2n)``; an upper
    bound on the kl bound, differentiable in ``r`` and ``KL`` (torch tensors ``(M,)``)."""
    import torch

    c = (kl + math.log(2 * math.sqrt(n) / delta)) / (2 * n)
    return (torch.sqrt(emp_risk + c) + torch.sqrt(c)) ** 2
