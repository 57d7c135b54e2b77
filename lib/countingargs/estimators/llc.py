"""The local learning coefficient (LLC) by SGLD (the local volume is in :mod:`.volume`).

Two questions about a solution ``w*`` of a loss ``L_n``: how much parameter volume near ``w*``
keeps the loss low, asked two ways.

- :func:`estimate_llc` -- the LLC of Lau et al. (arXiv:2308.12108). Sample a posterior tempered
  by ``n_beta`` and tied to ``w*`` by a Gaussian of strength ``localization``, with
  Langevin steps, and report ``lambda_hat = n_beta * (E[L_n(w)] - L_n(w*))``. A *lower*
  ``lambda_hat`` means a more degenerate solution: more nearby volume at low loss.
- :func:`local_volume` -- the fraction of isotropic random perturbations of norm ``r`` (for
  several ``r``) that keep ``L_n(w* + delta) <= L_n(w*) + tol``. No theory, no tuning.

Conventions (both functions, so one ``loss_fn`` serves both):

- ``params`` is one point: a tensor or a ``dict`` of tensors (e.g. ``{"w0": (64, 32), ...}``).
- ``loss_fn(batched)`` receives the same structure with one extra leading dimension ``B``
  (``{"w0": (B, 64, 32), ...}``) and returns the loss of each of the ``B`` points, shape ``(B,)``.
  It must be deterministic (full batch) and differentiable. :func:`mlp_loss_fn` builds one for
  plain MLPs; the toy losses in :data:`TOYS` are further examples.
- The ``*_batch`` variants take ``params`` that already carry a leading dimension ``K`` (K
  independent points, e.g. K trained networks) and run all their chains in one batched tensor
  of ``K * n_chains`` rows (point-major: row ``k * n_chains + c``).

Hold every setting fixed across any comparison; :func:`validate_on_toys` checks a setting on
models whose learning coefficient is known.

This estimator uses the full-batch gradient (Langevin dynamics without minibatch noise), a
Gaussian localisation term, chains started at ``w*``, and the mean loss over the draws after
burn-in. The init loss is the full-batch loss at ``w*``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch


from ._points import _as_dict, _as_points, _call, default_n_beta, mlp_loss_fn, mlp_params  # noqa: F401

__all__ = ["estimate_llc", "estimate_llc_batch", "default_n_beta", "mlp_loss_fn", "mlp_params",
           "TOYS", "toy_loss", "validate_on_toys"]


# ---------------------------------------------------------------------------------------------
# LLC
def estimate_llc_batch(loss_fn: Callable, params, n: int, *, step_size: float,
                       n_beta: float | None = None, localization: float = 100.0,
                       n_chains: int = 4, n_draws: int = 200, n_burnin: int = 100,
                       seed: int = 0) -> dict:
    """LLC of ``K`` points at once. ``params``: tensor ``(K, ...)`` or dict of ``(K, ...)``.

    The update (SGLD with full-batch gradients, as in Lau et al.) is
    ``w <- w - step_size/2 * (n_beta * grad L_n(w) + localization * (w - w*)) + N(0, step_size)``.

    Returns a dict of numpy arrays: ``llc_mean (K,)``, ``llc_std (K,)`` (std over chains),
    ``llc_per_chain (K, n_chains)``, ``init_loss (K,)``, ``loss_trace (K, n_chains,
    n_burnin + n_draws)``, ``diverged (K,)`` (a chain's loss became non-finite; its llc is nan),
    and ``settings`` (a dict of the settings used).
    """
    if n < 2:
        raise ValueError(f"n (the number of samples behind L_n) must be >= 2, got {n}")
    for name, val in (("step_size", step_size), ("localization", localization)):
        if not (val >= 0 and math.isfinite(val)):
            raise ValueError(f"{name} must be finite and >= 0, got {val}")
    if step_size <= 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    if n_chains < 1 or n_draws < 1 or n_burnin < 0:
        raise ValueError(f"need n_chains >= 1, n_draws >= 1, n_burnin >= 0; got "
                         f"{n_chains}, {n_draws}, {n_burnin}")
    n_beta = default_n_beta(n) if n_beta is None else float(n_beta)
    if not n_beta > 0:
        raise ValueError(f"n_beta must be > 0, got {n_beta}")
    star, bare, k = _as_points(params)
    star = {name: v.detach().to(torch.float32 if not v.is_floating_point() else v.dtype)
            for name, v in star.items()}
    with torch.no_grad():
        init_loss = _call(loss_fn, star, bare).detach()
    # chains: (K * C, ...), point-major
    anchor = {name: v.repeat_interleave(n_chains, dim=0) for name, v in star.items()}
    theta = {name: v.clone().requires_grad_(True) for name, v in anchor.items()}
    gen = torch.Generator(device=next(iter(star.values())).device).manual_seed(int(seed))
    steps = n_burnin + n_draws
    trace = torch.empty(k * n_chains, steps)
    noise_scale = math.sqrt(step_size)
    for t in range(steps):
        loss = _call(loss_fn, theta, bare)
        grads = torch.autograd.grad(loss.sum(), list(theta.values()))
        trace[:, t] = loss.detach()
        with torch.no_grad():
            for (name, w), g in zip(theta.items(), grads):
                drift = n_beta * g + localization * (w - anchor[name])
                noise = torch.randn(w.shape, generator=gen, dtype=w.dtype, device=w.device)
                w.add_(-0.5 * step_size * drift + noise_scale * noise)
    trace = trace.reshape(k, n_chains, steps).numpy().astype(np.float64)
    draws = trace[:, :, n_burnin:]
    diverged_chain = ~np.isfinite(draws).all(axis=2)
    with np.errstate(invalid="ignore"):
        per_chain = n_beta * (draws.mean(axis=2) - init_loss.numpy()[:, None])
    per_chain[diverged_chain] = np.nan
    llc_mean = np.nanmean(per_chain, axis=1) if not diverged_chain.all() else np.full(k, np.nan)
    llc_std = (np.nanstd(per_chain, axis=1, ddof=1) if n_chains > 1
               else np.zeros(k))
    return {"llc_mean": llc_mean, "llc_std": llc_std, "llc_per_chain": per_chain,
            "init_loss": init_loss.numpy().astype(np.float64), "loss_trace": trace,
            "diverged": diverged_chain.any(axis=1),
            "settings": {"step_size": step_size, "n_beta": n_beta, "localization": localization,
                         "n_chains": n_chains, "n_draws": n_draws, "n_burnin": n_burnin,
                         "seed": seed, "n": n}}


def estimate_llc(loss_fn: Callable, params, n: int, *, step_size: float,
                 n_beta: float | None = None, localization: float = 100.0, n_chains: int = 4,
                 n_draws: int = 200, n_burnin: int = 100, seed: int = 0) -> dict:
    """LLC of one point ``params`` (a tensor or dict of tensors, no leading batch dimension).

    ``loss_fn(batched) -> (B,)`` as described in the module docstring; ``n`` is the number of
    samples behind ``L_n`` (it sets the default ``n_beta = n / log n``).

    Returns ``dict(llc_mean: float, llc_std: float, llc_per_chain: (n_chains,),
    init_loss: float, loss_trace: (n_chains, n_burnin + n_draws), diverged: bool, settings)``.
    """
    star, bare = _as_dict(params)
    batched = {name: v.unsqueeze(0) for name, v in star.items()}
    res = estimate_llc_batch(loss_fn, batched["w"] if bare else batched, n, step_size=step_size,
                             n_beta=n_beta, localization=localization, n_chains=n_chains,
                             n_draws=n_draws, n_burnin=n_burnin, seed=seed)
    return {"llc_mean": float(res["llc_mean"][0]), "llc_std": float(res["llc_std"][0]),
            "llc_per_chain": res["llc_per_chain"][0], "init_loss": float(res["init_loss"][0]),
            "loss_trace": res["loss_trace"][0], "diverged": bool(res["diverged"][0]),
            "settings": res["settings"]}


# ---------------------------------------------------------------------------------------------
# toys with known learning coefficients
#: name -> (dimension, true lambda, multiplicity m, description). Population losses K(w) with
#: K(w*) = 0 at w* = 0 (so L_n = K exactly, no sampling noise). With m = 1 the estimate is
#: unbiased as n_beta grows and localization / n_beta -> 0; with m = 2 it approaches lambda only
#: at a log rate (Watanabe's (m-1) log log n term), so it runs below the true value.
TOYS = {
    "regular_d2": (2, 1.0, 1, "K = |w|^2 (regular, d = 2): lambda = d/2"),
    "regular_d6": (6, 3.0, 1, "K = |w|^2 (regular, d = 6): lambda = d/2"),
    "quartic": (1, 0.25, 1, "K = w^4: lambda = 1/4"),
    "quad_plus_quartic": (2, 0.75, 1, "K = w1^2 + w2^4: lambda = 1/2 + 1/4"),
    "normal_crossing": (2, 0.5, 2, "K = w1^2 w2^2: lambda = 1/2, m = 2"),
}


def toy_loss(name: str) -> Callable:
    """Batched population loss ``K(w)`` of a toy in :data:`TOYS`; takes ``(B, d)``, returns ``(B,)``."""
    if name not in TOYS:
        raise ValueError(f"unknown toy {name!r}; valid: {sorted(TOYS)}")
    if name.startswith("regular"):
        return lambda w: (w ** 2).sum(-1)
    if name == "quartic":
        return lambda w: (w ** 4).sum(-1)
    if name == "quad_plus_quartic":
        return lambda w: w[:, 0] ** 2 + w[:, 1] ** 4
    return lambda w: (w[:, 0] * w[:, 1]) ** 2


def validate_on_toys(n: int = 10_000, *, step_size: float, n_beta: float | None = None,
                     localization: float = 1.0, n_chains: int = 32, n_draws: int = 2000,
                     n_burnin: int = 500, seed: int = 0, toys=None):
    """Estimate the LLC of each toy at ``w* = 0`` and return a ``pandas.DataFrame`` with one
    row per toy x chain: ``toy, true_lambda, multiplicity, chain, llc``. The toys' losses are
    exact (``L_n = K``), so ``n`` only sets ``n_beta`` (default ``n / log n``)."""
    import pandas as pd

    rows = []
    for name in (toys or list(TOYS)):
        d, lam, m, _ = TOYS[name]
        res = estimate_llc(toy_loss(name), torch.zeros(d), n, step_size=step_size,
                           n_beta=n_beta, localization=localization, n_chains=n_chains,
                           n_draws=n_draws, n_burnin=n_burnin, seed=seed)
        for c, v in enumerate(res["llc_per_chain"]):
            rows.append({"toy": name, "true_lambda": lam, "multiplicity": m, "chain": c,
                         "llc": float(v)})
    return pd.DataFrame(rows)
