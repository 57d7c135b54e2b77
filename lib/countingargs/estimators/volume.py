"""Local volume: the share of random perturbations of a solution that keep its loss low.

For each point ``w*`` and radius ``r``, draw directions uniformly on the unit sphere of the
whole parameter vector, step ``r`` along each, and count how many keep
``L_n(w* + delta) <= L_n(w*) + tol``. No theory, no tuning. The conventions for ``params`` and
``loss_fn`` are those of :mod:`countingargs.estimators.llc`.

The fraction is not invariant to reparametrisations that leave the function unchanged: a ReLU
network whose weights are larger (at the same function) looks flatter to a step of fixed length.
To compare networks of different norms, rescale each to its balanced representative
(:func:`balance_relu_mlp`) and use radii relative to its norm (:func:`params_norm`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ._points import _as_dict, _as_points, _call, balance_relu_mlp, params_norm  # noqa: F401

__all__ = ["local_volume", "local_volume_batch", "balance_relu_mlp", "params_norm"]


def local_volume_batch(loss_fn: Callable, params, radii, tol: float, n_samples: int = 256,
                       seed: int = 0, chunk: int = 1024) -> dict:
    """Fraction of random perturbations that keep the loss within ``tol`` of ``L_n(w*)``.

    ``params``: ``(K, ...)`` (tensor or dict), K points. ``radii``: ``(R,)`` shared by every point,
    or ``(K, R)``, one row per point (e.g. radii relative to each point's norm,
    ``rel[None] * params_norm(params)[:, None]``). For each point and radius ``r``, draw
    ``n_samples`` directions uniformly on the unit sphere of the *whole* parameter vector
    (all tensors together), step ``r`` along each, and count how many keep
    ``L_n(w* + delta) - L_n(w*) <= tol``. The same directions are used for every radius and
    point (common random numbers), so differences between points are not sampling noise of the
    directions. ``chunk`` perturbed points go to ``loss_fn`` at once (lower it for big models).

    Returns ``dict(radii (R,) or (K, R), fraction (K, R), init_loss (K,), mean_increase (K, R))``.
    """
    radii = np.asarray(radii, dtype=float)
    if radii.ndim not in (1, 2) or radii.size == 0 or np.any(radii < 0) \
            or not np.all(np.isfinite(radii)):
        raise ValueError(f"radii must be a non-empty (R,) or (K, R) array of finite numbers >= 0, "
                         f"got {radii}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    star, bare, k = _as_points(params)
    if radii.ndim == 2 and radii.shape[0] != k:
        raise ValueError(f"radii of shape {radii.shape} need one row per point ({k})")
    n_r = radii.shape[-1]
    per_point = torch.as_tensor(np.broadcast_to(radii, (k, n_r)).copy())
    shapes = {name: tuple(v.shape[1:]) for name, v in star.items()}
    sizes = [int(np.prod(s)) for s in shapes.values()]
    d = sum(sizes)
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.randn(n_samples, d, generator=gen)
    u = u / u.norm(dim=1, keepdim=True)
    with torch.no_grad():
        init = _call(loss_fn, {n_: v.detach() for n_, v in star.items()}, bare)
        # rows: (point, radius, sample), flattened; evaluated in chunks
        total = k * n_r * n_samples
        losses = torch.empty(total)
        idx = torch.arange(total)
        for lo in range(0, total, chunk):
            j = idx[lo:lo + chunk]
            kp, rem = j // (n_r * n_samples), j % (n_r * n_samples)
            ri, si = rem // n_samples, rem % n_samples
            delta = u[si] * per_point[kp, ri].to(u.dtype)[:, None]
            parts = torch.split(delta, sizes, dim=1)
            theta = {name: star[name].detach()[kp] + p.reshape(len(j), *shapes[name]).to(star[name].dtype)
                     for name, p in zip(star, parts)}
            losses[lo:lo + chunk] = _call(loss_fn, theta, bare)
    losses = losses.reshape(k, n_r, n_samples).double()
    inc = losses - init.double()[:, None, None]
    ok = (inc <= tol) & torch.isfinite(inc)
    return {"radii": radii, "fraction": ok.double().mean(-1).numpy(),
            "init_loss": init.double().numpy(),
            "mean_increase": torch.where(torch.isfinite(inc), inc, torch.inf).mean(-1).numpy()}


def local_volume(loss_fn: Callable, params, radii, tol: float, n_samples: int = 256,
                 seed: int = 0) -> dict:
    """:func:`local_volume_batch` for one point (no leading dimension).

    Returns ``dict(radii (R,), fraction (R,), init_loss: float, mean_increase (R,))``."""
    star, bare = _as_dict(params)
    batched = {name: v.unsqueeze(0) for name, v in star.items()}
    res = local_volume_batch(loss_fn, batched["w"] if bare else batched, radii, tol,
                             n_samples=n_samples, seed=seed)
    return {"radii": res["radii"], "fraction": res["fraction"][0],
            "init_loss": float(res["init_loss"][0]), "mean_increase": res["mean_increase"][0]}


