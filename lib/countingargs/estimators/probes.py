"""Linear probes: how much of a target a representation holds linearly.

Two estimators with different meanings, named as such:

- :func:`ridge_r2_heldout` fits the probe on one set of inputs and scores it on another: the
  share of the target's variance a linear read-out *generalises* to. Use it whenever the
  representation is wide compared with the number of inputs (an in-sample fit would score
  well by memorising).
- :func:`ridge_r2_insample` fits and scores on the same inputs: appropriate only when the
  inputs are the whole domain (every point of a small Boolean cube), so there is nothing
  held out to generalise to.

Both fit a ridge-regularised least-squares read-out with a bias, per network and target, in
float64; ``ridge`` is relative to the number of fitting inputs.
"""
from __future__ import annotations

import numpy as np
import torch


def _design(h: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    return torch.cat([(h - mu) / sd, torch.ones(*h.shape[:2], 1, dtype=h.dtype)], 2)


def _fit(a: torch.Tensor, z: torch.Tensor, ridge: float) -> torch.Tensor:
    gram = a.transpose(1, 2) @ a + ridge * a.shape[1] * torch.eye(a.shape[2], dtype=a.dtype)
    return torch.linalg.solve(gram, a.transpose(1, 2) @ z)


def _r2(pred: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    zc = z - z.mean(-2, keepdim=True)
    return 1 - ((pred - z) ** 2).sum(-2) / (zc ** 2).sum(-2)


def _targets(z, m: int, n: int) -> torch.Tensor:
    z = torch.as_tensor(np.asarray(z) if not torch.is_tensor(z) else z).double()
    if z.dim() == 1:
        z = z[:, None]
    if z.dim() == 2:
        z = z.unsqueeze(0).expand(m, *z.shape)
    if z.shape[:2] != (m, n):
        raise ValueError(f"targets must be (N, k) or (M, N, k) with M={m}, N={n}; got {tuple(z.shape)}")
    return z


def ridge_r2_heldout(h_fit: torch.Tensor, z_fit, h_eval: torch.Tensor, z_eval,
                     ridge: float = 1e-3) -> torch.Tensor:
    """Held-out ``R^2`` of a ridge read-out from features ``h`` to targets ``z``.

    ``h_fit (M, N, d)`` or ``(N, d)``; ``z_fit (N, k)`` shared or ``(M, N, k)`` per network
    (likewise ``h_eval``, ``z_eval``). Features are standardised on the fitting inputs.
    Returns ``(M, k)`` (``(k,)`` for a single representation): ``1 - SSE / SST`` on the
    evaluation inputs (can be negative: worse than predicting the mean)."""
    single = h_fit.dim() == 2
    if single:
        h_fit, h_eval = h_fit[None], h_eval[None]
    h_fit, h_eval = h_fit.detach().double(), h_eval.detach().double()
    m = h_fit.shape[0]
    mu, sd = h_fit.mean(1, keepdim=True), h_fit.std(1, keepdim=True) + 1e-6
    coef = _fit(_design(h_fit, mu, sd), _targets(z_fit, m, h_fit.shape[1]), ridge)
    r2 = _r2(_design(h_eval, mu, sd) @ coef, _targets(z_eval, m, h_eval.shape[1])).float()
    return r2[0] if single else r2


def ridge_r2_insample(h: torch.Tensor, z, ridge: float = 1e-3) -> torch.Tensor:
    """In-sample ``R^2`` (fit and score on the same inputs), clipped at 0.

    ``h (M, N, d)`` or ``(N, d)``, ``z (N, k)`` or ``(M, N, k)``; returns ``(M, k)`` (or
    ``(k,)``): 1 = each target is an exact linear function of the representation, 0 = no
    linear trace. Features are used as they are (not standardised)."""
    single = h.dim() == 2
    if single:
        h = h[None]
    h = h.detach().double()
    m, n, _ = h.shape
    a = torch.cat([h, torch.ones(m, n, 1, dtype=h.dtype)], 2)
    zz = _targets(z, m, n)
    r2 = _r2(a @ _fit(a, zz, ridge), zz).clamp(min=0).float()
    return r2[0] if single else r2
