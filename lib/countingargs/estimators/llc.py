"""The local learning coefficient (LLC) by SGLD (the local volume is in :mod:`.volume`).

How much parameter volume near a solution ``w*`` of a loss ``L_n`` keeps the loss low, measured
as the LLC of Lau et al. (arXiv:2308.12108): sample a posterior tempered by ``n_beta`` and tied
to ``w*`` by a Gaussian of strength ``localization`` (gamma), with Langevin steps, and report
``lambda_hat = n_beta * (E[L_n(w)] - L_n(w*))``. A *lower* ``lambda_hat`` means a more degenerate
solution: more nearby volume at low loss.

Conventions (shared with :mod:`.volume`, so one ``loss_fn`` serves both):

- ``params`` is one point: a tensor or a ``dict`` of tensors (e.g. ``{"w0": (64, 32), ...}``).
- ``loss_fn(batched)`` receives the same structure with one extra leading dimension ``B``
  (``{"w0": (B, 64, 32), ...}``) and returns the loss of each of the ``B`` points, shape ``(B,)``.
  It must be deterministic (full batch) and differentiable. :func:`mlp_loss_fn` builds one for
  plain MLPs; the toy losses in :data:`TOYS` are further examples.
- The ``*_batch`` variants take ``params`` that already carry a leading dimension ``K`` (K
  independent points, e.g. K trained networks) and run all their chains in one batched tensor
  of ``K * n_chains`` rows (point-major: row ``k * n_chains + c``).

The sampler uses the full-batch gradient (Langevin dynamics without minibatch noise), a
Gaussian localisation term, chains started at ``w*``, and the mean loss over the draws after
burn-in; the init loss is the full-batch loss at ``w*``.

What the estimate measures, and its biases (measured in ``tests/test_estimators.py``)
-------------------------------------------------------------------------------------------
The estimand at finite settings is ``n_beta * (E[L_n] - L_n(w*))`` under the density
``exp(-n_beta L_n(w) - gamma |w - w*|^2 / 2)``; :func:`toy_expected` computes it exactly for the
toys. It differs from the learning coefficient lambda in three ways, and SGLD adds two more:

1. **Localisation.** A quadratic direction of curvature ``h`` (Hessian eigenvalue of ``L_n``)
   counts ``(n_beta h) / (n_beta h + gamma)`` of its 1/2; a quartic direction counts almost
   fully only when ``gamma << sqrt(n_beta)``. With ``n_beta = 145`` (n = 1000): quartic toy at
   97% of its lambda for gamma = 1, 92% for gamma = 3, 76% for gamma = 10, 12% for gamma = 100.
   In a trained network the Hessian spectrum runs down towards 0, so the estimate keeps growing
   as gamma decreases: it counts the directions whose curvature exceeds about ``gamma /
   n_beta``, and is a property of the settings, not of the network alone. Compare networks only
   at identical settings, and check that a difference keeps its sign and size when gamma and
   the step change.
2. **Multiplicity.** With multiplicity m = 2 (the normal crossing ``w1^2 w2^2``) the estimand
   approaches lambda only at a logarithmic rate; at ``n_beta = 145`` it is 0.31 (gamma = 3),
   0.36 (gamma = 1) and 0.42 (gamma = 0.1) against lambda = 1/2. This bias cannot be removed
   at finite n; it makes singular solutions look *more* degenerate (lower) than they are.
3. **Gradient at w*.** A network frozen at a target loss is not at a minimum; the gradient
   ``g`` lowers the estimate by up to about ``n_beta^2 |g_flat|^2 / (2 gamma)`` (its component
   along flat directions): 0.09 for ``|g| = 0.03``, ``n_beta = 145``, gamma = 100, and up to 9
   for gamma = 1. Networks frozen with different gradient norms carry different biases.
4. **Step size (SGLD).** The chain's variance along a direction of curvature ``h`` is inflated
   by ``1 / (1 - k/2)`` with ``k = step (n_beta h + gamma) / 2``; it diverges for ``k > 2``.
   Check ``k`` at the top Hessian eigenvalue (:func:`top_hessian_eigenvalue`): ``k < 0.2``
   keeps this inflation under 11% in the sharpest direction (and less in the others).
5. **Mixing.** A direction relaxes in about ``2 / (step (n_beta h + gamma))`` steps, so the
   slowest directions that still count (curvature near ``gamma / n_beta``) need a burn-in of
   at least ``1.5 / (step * gamma)`` steps (:func:`recommended_burnin`). The result
   of :func:`estimate_llc_batch` carries ``drift``: ``n_beta`` times the mean loss in the second
   half of the draws minus the first half, in LLC units; lengthen the burn-in until it is small
   against the differences you compare.

Recommended settings (the defaults of :data:`RECOMMENDED`, validated on the toys at n = 1000 in
the tests): ``n_beta = n / log n``; ``localization`` 3 (the quartic toy's estimand within 8%
of its lambda at n = 1000; a weaker localisation lets chains started at a network frozen above
its minimum slide downhill, see 3.); ``step_size`` such that ``k < 0.2`` at the top Hessian
eigenvalue (3e-4 for the MLPs of chapter 03 on the 1,000 digits, whose top eigenvalues of 8 to 11
give k of 0.2 to 0.24; compare with a half step); ``n_burnin`` at least
``1.5 / (step * gamma)`` (1,700 at these values) and ``n_draws`` 1,000. Report ``drift``.
At these settings the estimate is noisy: in chapter 03 one network's estimate (two chains) varies
by a few LLC units, so small differences need many networks or chains.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import torch


from ._points import _as_dict, _as_points, _call, default_n_beta, mlp_loss_fn, mlp_params  # noqa: F401

__all__ = ["estimate_llc", "estimate_llc_batch", "default_n_beta", "mlp_loss_fn", "mlp_params",
           "TOYS", "toy_loss", "toy_expected", "validate_on_toys", "top_hessian_eigenvalue",
           "RECOMMENDED", "recommended_burnin"]

#: settings validated on the toys at n = 1000 (see the module docstring and the tests)
RECOMMENDED = {"step_size": 3e-4, "localization": 3.0, "n_burnin": 1700, "n_draws": 1000}


def recommended_burnin(step_size: float, localization: float, factor: float = 1.5) -> int:
    """Burn-in steps, ``factor / (step_size * localization)``: ``factor`` times the time a
    direction of curvature ``localization / n_beta`` (the softest one the estimate counts at
    half weight) takes to relax. On the digit MLPs of chapter 03 the estimate settles within
    about this many steps; check with the ``drift`` of :func:`estimate_llc_batch`."""
    if not (step_size > 0 and localization > 0):
        raise ValueError(f"need step_size > 0 and localization > 0, got {step_size}, {localization}")
    return int(math.ceil(factor / (step_size * localization)))


# ---------------------------------------------------------------------------------------------
# LLC
def estimate_llc_batch(loss_fn: Callable, params, n: int, *, step_size: float,
                       n_beta: float | None = None, localization: float = 100.0,
                       n_chains: int = 4, n_draws: int = 200, n_burnin: int = 100,
                       seed: int = 0, point_ids=None) -> dict:
    """LLC of ``K`` points at once. ``params``: tensor ``(K, ...)`` or dict of ``(K, ...)``.

    Noise streams: with ``point_ids`` (``K`` non-negative integers, e.g. each network's index in
    the whole experiment) the chains of point ``k`` draw their noise from their own stream
    ``(seed, "llc-point", point_ids[k])``, so a point's estimate is the same whichever other
    points share the batch (a chunk of a :func:`countingargs.chunks.map_chunks` run on any
    number of workers gives the same numbers as one batch of all points). Without it all chains
    share one stream seeded by ``seed`` (the estimate of a point then depends on the batch).

    The update (SGLD with full-batch gradients, as in Lau et al.) is
    ``w <- w - step_size/2 * (n_beta * grad L_n(w) + localization * (w - w*)) + N(0, step_size)``.

    Returns a dict of numpy arrays: ``llc_mean (K,)``, ``llc_std (K,)`` (std over chains),
    ``llc_per_chain (K, n_chains)``, ``init_loss (K,)``, ``loss_trace (K, n_chains,
    n_burnin + n_draws)``, ``diverged (K,)`` (a chain's loss became non-finite; its llc is nan),
    ``drift (K,)`` (``n_beta`` x (mean loss over the second half of the draws minus the first
    half), mean over chains: how much the estimate was still moving, in LLC units; needs
    ``n_draws >= 2``) and ``settings`` (a dict of the settings used).
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
    dev = next(iter(star.values())).device
    if point_ids is None:
        gen, gens = torch.Generator(device=dev).manual_seed(int(seed)), None
    else:
        ids = [int(p) for p in point_ids]
        if len(ids) != k or min(ids, default=0) < 0:
            raise ValueError(f"point_ids needs {k} non-negative integers (one per point), got {ids}")
        from ..nets.seeding import generator as _generator

        gens = [_generator(int(seed), "llc-point", p, device=dev) for p in ids]
        sizes = [v[0].numel() for v in star.values()]
    steps = n_burnin + n_draws
    trace = torch.empty(k * n_chains, steps)
    noise_scale = math.sqrt(step_size)
    for t in range(steps):
        loss = _call(loss_fn, theta, bare)
        grads = torch.autograd.grad(loss.sum(), list(theta.values()))
        trace[:, t] = loss.detach()
        with torch.no_grad():
            if gens is not None:  # one draw per point: (K, C * sum(sizes)) -> per parameter
                flat = torch.stack([torch.randn(n_chains * sum(sizes), generator=g, device=dev)
                                    for g in gens]).view(k * n_chains, sum(sizes))
                per_param = flat.split(sizes, dim=1)
            for i, ((name, w), g) in enumerate(zip(theta.items(), grads)):
                drift = n_beta * g + localization * (w - anchor[name])
                if gens is None:
                    noise = torch.randn(w.shape, generator=gen, dtype=w.dtype, device=w.device)
                else:
                    noise = per_param[i].reshape(w.shape).to(w.dtype)
                w.add_(-0.5 * step_size * drift + noise_scale * noise)
    trace = trace.reshape(k, n_chains, steps).numpy().astype(np.float64)
    draws = trace[:, :, n_burnin:]
    diverged_chain = ~np.isfinite(draws).all(axis=2)
    with np.errstate(invalid="ignore"):
        per_chain = n_beta * (draws.mean(axis=2) - init_loss.numpy()[:, None])
        half = n_draws // 2
        drift_chain = (n_beta * (draws[:, :, half:].mean(axis=2) - draws[:, :, :half].mean(axis=2))
                       if half >= 1 else np.full(per_chain.shape, np.nan))
    per_chain[diverged_chain] = np.nan
    drift_chain[diverged_chain] = np.nan
    all_bad = diverged_chain.all(axis=1)
    llc_mean = np.full(k, np.nan)
    drift = np.full(k, np.nan)
    llc_mean[~all_bad] = np.nanmean(per_chain[~all_bad], axis=1)
    drift[~all_bad] = np.nanmean(drift_chain[~all_bad], axis=1)
    llc_std = np.zeros(k)
    if n_chains > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a point whose chains all diverged
            llc_std = np.nanstd(per_chain, axis=1, ddof=1)
    return {"llc_mean": llc_mean, "llc_std": llc_std, "llc_per_chain": per_chain,
            "init_loss": init_loss.numpy().astype(np.float64), "loss_trace": trace,
            "diverged": diverged_chain.any(axis=1), "drift": drift,
            "settings": {"step_size": step_size, "n_beta": n_beta, "localization": localization,
                         "n_chains": n_chains, "n_draws": n_draws, "n_burnin": n_burnin,
                         "seed": seed, "n": n,
                         "noise": "per point" if point_ids is not None else "shared"}}


def estimate_llc(loss_fn: Callable, params, n: int, *, step_size: float,
                 n_beta: float | None = None, localization: float = 100.0, n_chains: int = 4,
                 n_draws: int = 200, n_burnin: int = 100, seed: int = 0) -> dict:
    """LLC of one point ``params`` (a tensor or dict of tensors, no leading batch dimension).

    ``loss_fn(batched) -> (B,)`` as described in the module docstring; ``n`` is the number of
    samples behind ``L_n`` (it sets the default ``n_beta = n / log n``).

    Returns ``dict(llc_mean: float, llc_std: float, llc_per_chain: (n_chains,),
    init_loss: float, loss_trace: (n_chains, n_burnin + n_draws), diverged: bool,
    drift: float, settings)``.
    """
    star, bare = _as_dict(params)
    batched = {name: v.unsqueeze(0) for name, v in star.items()}
    res = estimate_llc_batch(loss_fn, batched["w"] if bare else batched, n, step_size=step_size,
                             n_beta=n_beta, localization=localization, n_chains=n_chains,
                             n_draws=n_draws, n_burnin=n_burnin, seed=seed)
    return {"llc_mean": float(res["llc_mean"][0]), "llc_std": float(res["llc_std"][0]),
            "llc_per_chain": res["llc_per_chain"][0], "init_loss": float(res["init_loss"][0]),
            "loss_trace": res["loss_trace"][0], "diverged": bool(res["diverged"][0]),
            "drift": float(res["drift"][0]), "settings": res["settings"]}


def top_hessian_eigenvalue(loss_fn: Callable, params, n_iter: int = 30, seed: int = 0
                           ) -> np.ndarray:
    """Largest Hessian eigenvalue of ``L_n`` at each of ``K`` points (``params (K, ...)``), by
    power iteration with Hessian-vector products: ``(K,)``. Use it to check the step size
    (``k = step (n_beta h_max + gamma) / 2`` should stay below about 0.2)."""
    star, bare, k = _as_points(params)
    gen = torch.Generator().manual_seed(int(seed))
    v = {name: torch.randn(x.shape, generator=gen, dtype=x.dtype) for name, x in star.items()}
    eig = torch.zeros(k)
    for _ in range(max(1, n_iter)):
        norm = torch.sqrt(sum((x ** 2).flatten(1).sum(1) for x in v.values()))
        v = {name: x / norm.view(-1, *[1] * (x.dim() - 1)) for name, x in v.items()}
        theta = {name: x.detach().clone().requires_grad_(True) for name, x in star.items()}
        grads = torch.autograd.grad(_call(loss_fn, theta, bare).sum(), list(theta.values()),
                                    create_graph=True)
        hv = torch.autograd.grad(sum((g * v[name]).sum() for g, name in zip(grads, theta)),
                                 list(theta.values()))
        eig = sum((h * v[name]).flatten(1).sum(1) for h, name in zip(hv, theta)).detach()
        v = {name: h.detach() for h, name in zip(hv, theta)}
    return eig.numpy().astype(np.float64)


# ---------------------------------------------------------------------------------------------
# toys with known learning coefficients
#: name -> (dimension, true lambda, multiplicity m, description). Population losses K(w) with
#: K(w*) = 0 at w* = 0 (so L_n = K exactly, no sampling noise). With m = 1 the estimand tends
#: to lambda as localization / sqrt(n_beta) -> 0; with m = 2 it approaches lambda only at a log
#: rate (Watanabe's (m-1) log log n term), so it runs below the true value at any practical n.
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


def _quartic_expected(n_beta: float, gamma: float) -> float:
    from scipy import integrate

    s = 6.0 * n_beta ** -0.25
    dens = lambda w, p: w ** p * np.exp(-n_beta * w ** 4 - gamma * w * w / 2)  # noqa: E731
    z = integrate.quad(lambda w: dens(w, 0), -s, s, limit=200)[0]
    return n_beta * integrate.quad(lambda w: dens(w, 4), -s, s, limit=200)[0] / z


def _normal_crossing_expected(n_beta: float, gamma: float) -> float:
    # w2 given w1 is Gaussian with precision 2 n_beta w1^2 + gamma; integrate it out
    from scipy import integrate

    if gamma <= 0:
        raise ValueError("the normal crossing needs localization > 0 (else its posterior is improper)")
    marg = lambda w: np.exp(-gamma * w * w / 2) / np.sqrt(2 * n_beta * w * w + gamma)  # noqa: E731
    s = 12.0 / math.sqrt(gamma)
    z = integrate.quad(marg, -s, s, points=[0.0], limit=500)[0]
    num = integrate.quad(lambda w: marg(w) * n_beta * w * w / (2 * n_beta * w * w + gamma),
                         -s, s, points=[0.0], limit=500)[0]
    return num / z


def toy_expected(name: str, n_beta: float, localization: float) -> float:
    """The exact estimand ``n_beta * E[K]`` under ``exp(-n_beta K(w) - localization |w|^2 / 2)``
    for a toy of :data:`TOYS`: what a perfect sampler would report at these settings. Its gap to
    lambda is the bias of the settings; the gap between an SGLD estimate and it is the sampler's."""
    if name not in TOYS:
        raise ValueError(f"unknown toy {name!r}; valid: {sorted(TOYS)}")
    if not (n_beta > 0 and localization >= 0):
        raise ValueError(f"need n_beta > 0 and localization >= 0, got {n_beta}, {localization}")
    d = TOYS[name][0]
    quad = n_beta / (2 * n_beta + localization)  # one direction of K = w^2
    if name.startswith("regular"):
        return d * quad
    if name == "quartic":
        return _quartic_expected(n_beta, localization)
    if name == "quad_plus_quartic":
        return quad + _quartic_expected(n_beta, localization)
    return _normal_crossing_expected(n_beta, localization)


def validate_on_toys(n: int = 10_000, *, step_size: float, n_beta: float | None = None,
                     localization: float = 1.0, n_chains: int = 32, n_draws: int = 2000,
                     n_burnin: int = 500, seed: int = 0, toys=None):
    """Estimate the LLC of each toy at ``w* = 0`` and return a ``pandas.DataFrame`` with one
    row per toy x chain: ``toy, true_lambda, multiplicity, expected, chain, llc, drift``
    (``expected``: :func:`toy_expected` at these settings). The toys' losses are exact
    (``L_n = K``), so ``n`` only sets ``n_beta`` (default ``n / log n``)."""
    import pandas as pd

    nb = default_n_beta(n) if n_beta is None else float(n_beta)
    rows = []
    for name in (toys or list(TOYS)):
        d, lam, m, _ = TOYS[name]
        res = estimate_llc_batch(toy_loss(name), torch.zeros(1, d), n, step_size=step_size,
                                 n_beta=nb, localization=localization, n_chains=n_chains,
                                 n_draws=n_draws, n_burnin=n_burnin, seed=seed)
        expected = toy_expected(name, nb, localization)
        drift = n_beta_drift_per_chain(res, nb)
        for c, v in enumerate(res["llc_per_chain"][0]):
            rows.append({"toy": name, "true_lambda": lam, "multiplicity": m, "expected": expected,
                         "chain": c, "llc": float(v), "drift": float(drift[c])})
    return pd.DataFrame(rows)


def n_beta_drift_per_chain(res: dict, n_beta: float) -> np.ndarray:
    """Per-chain drift of the first point of an :func:`estimate_llc_batch` result, in LLC units."""
    draws = res["loss_trace"][0, :, res["settings"]["n_burnin"]:]
    half = draws.shape[1] // 2
    if half < 1:
        return np.full(draws.shape[0], np.nan)
    return n_beta * (draws[:, half:].mean(1) - draws[:, :half].mean(1))
