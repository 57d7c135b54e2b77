"""Shared by the estimators: parameters as one point or a batch of points.

- ``params`` is one point: a tensor or a ``dict`` of tensors (e.g. ``{"w0": (64, 32), ...}``).
- ``loss_fn(batched)`` receives the same structure with one extra leading dimension ``B``
  and returns the loss of each of the ``B`` points, shape ``(B,)``.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import torch


def _as_dict(params) -> tuple[dict[str, torch.Tensor], bool]:
    if isinstance(params, torch.Tensor):
        return {"w": params}, True
    if isinstance(params, Mapping):
        if not params:
            raise ValueError("params is an empty mapping")
        bad = [k for k, v in params.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise TypeError(f"params entries {bad} are not tensors")
        return dict(params), False
    raise TypeError(f"params must be a tensor or a dict of tensors, got {type(params).__name__}")



def _as_points(params):
    """``(star, bare, K)``: the params as a dict, whether they came bare, and the number of
    points K (the shared leading dimension)."""
    star, bare = _as_dict(params)
    k = {v.shape[0] for v in star.values()}
    if len(k) != 1:
        raise ValueError(f"all params need the same leading (points) dimension, got {sorted(k)}")
    return star, bare, k.pop()

def _call(loss_fn, theta: dict[str, torch.Tensor], bare: bool) -> torch.Tensor:
    out = loss_fn(theta["w"] if bare else theta)
    b = next(iter(theta.values())).shape[0]
    if not isinstance(out, torch.Tensor) or out.shape != (b,):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"loss_fn must return one loss per point, shape ({b},); got {shape}")
    return out


def default_n_beta(n: int) -> float:
    """``n / log n``, the inverse temperature of Watanabe's WBIC used by Lau et al."""
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    return n / math.log(n)


def mlp_params(model, idx=None) -> dict[str, torch.Tensor]:
    """Weights of a :class:`countingargs.nets.mlp.BatchedMLP` as ``{"w0": (K, d0, d1), "b0": (K, 1, d1),
    ...}`` (detached copies), for networks ``idx`` (default: all)."""
    out = {}
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        w, b = w.detach(), b.detach()
        if idx is not None:
            sel = torch.as_tensor(idx, dtype=torch.long)
            w, b = w[sel], b[sel]
        out[f"w{i}"], out[f"b{i}"] = w.clone(), b.clone()
    return out


def mlp_loss_fn(x: torch.Tensor, y: torch.Tensor, activation: str = "relu",
                loss: str = "ce") -> Callable:
    """A batched ``loss_fn`` for MLPs stored as ``{"w0","b0","w1","b1",...}`` with a leading
    batch dimension ``B`` (``w_i: (B, d_i, d_{i+1})``, ``b_i: (B, 1, d_{i+1})``).

    ``x: (N, d0)``; ``y``: class indices ``(N,)`` for ``loss="ce"`` (mean cross-entropy) or
    targets ``(N, d_out)`` for ``loss="mse"`` (mean over examples of half the squared error,
    summed over outputs). Returns ``f(theta) -> (B,)``."""
    from ..nets.mlp import ACTIVATIONS, forward

    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {sorted(ACTIVATIONS)}")
    if loss not in ("ce", "mse"):
        raise ValueError(f"loss must be 'ce' or 'mse', got {loss!r}")

    def f(theta: Mapping[str, torch.Tensor]) -> torch.Tensor:
        n_layers = sum(1 for k in theta if k.startswith("w"))
        if n_layers == 0 or any(f"w{i}" not in theta or f"b{i}" not in theta for i in range(n_layers)):
            raise KeyError(f"expected keys w0, b0, ..., got {sorted(theta)}")
        b = theta["w0"].shape[0]
        h = forward([(theta[f"w{i}"], theta[f"b{i}"]) for i in range(n_layers)], x, activation)
        if loss == "ce":
            logp = torch.log_softmax(h, dim=-1)
            return -logp.gather(-1, y.expand(b, -1).unsqueeze(-1)).squeeze(-1).mean(-1)
        return 0.5 * ((h - y) ** 2).sum(-1).mean(-1)

    return f




def params_norm(params) -> torch.Tensor:
    """Euclidean norm of each point's whole parameter vector: ``params`` tensor ``(K, ...)`` or
    dict of ``(K, ...)`` -> ``(K,)``."""
    star, _, _ = _as_points(params)
    return torch.sqrt(sum((v.detach().double() ** 2).flatten(1).sum(1) for v in star.values())).float()


def balance_relu_mlp(params: Mapping[str, torch.Tensor], n_iter: int = 100,
                     tol: float = 1e-6) -> dict[str, torch.Tensor]:
    """The same ReLU networks, rescaled to their balanced (minimum-norm) representative.

    A ReLU unit computes the same network function when its incoming weights and bias are
    multiplied by ``a > 0`` and its outgoing weights divided by ``a``; the parameter norm is not
    invariant. This picks, for every hidden unit, the scale at which its incoming norm (weights
    and bias) equals its outgoing norm -- the point of smallest norm on the rescaling orbit --
    by alternating passes over the layers until no scale moves by more than ``tol``.
    ``params``: ``{"w0": (K, d0, d1), "b0": (K, 1, d1), "w1": ...}`` (:func:`mlp_params`);
    returns new tensors of the same shapes. Units with no incoming or no outgoing weight are
    left as they are."""
    p = {k: v.detach().double().clone() for k, v in params.items()}
    n_layers = sum(1 for k in p if k.startswith("w"))
    if n_layers < 2 or any(f"w{i}" not in p or f"b{i}" not in p for i in range(n_layers)):
        raise KeyError(f"expected keys w0, b0, w1, b1, ... (two layers or more), got {sorted(p)}")
    for _ in range(n_iter):
        moved = 0.0
        for i in range(n_layers - 1):
            w_in, b_in, w_out = p[f"w{i}"], p[f"b{i}"], p[f"w{i + 1}"]
            norm_in = torch.sqrt((w_in ** 2).sum(1) + (b_in[:, 0] ** 2))  # (K, d)
            norm_out = torch.sqrt((w_out ** 2).sum(2))  # (K, d)
            ok = (norm_in > 0) & (norm_out > 0)
            a = torch.where(ok, torch.sqrt(norm_out / norm_in.clamp_min(1e-300)),
                            torch.ones_like(norm_in))
            p[f"w{i}"] = w_in * a[:, None, :]
            p[f"b{i}"] = b_in * a[:, None, :]
            p[f"w{i + 1}"] = w_out / a[:, :, None]
            moved = max(moved, float((a - 1).abs().max()))
        if moved < tol:
            break
    return {k: v.to(params[k].dtype) for k, v in p.items()}
