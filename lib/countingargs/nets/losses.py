"""Per-network losses: every function takes batched outputs ``(M, B, ...)`` and returns one loss
per network, shape ``(M,)`` (the mean over the ``B`` examples). Summing them gives each network
exactly its own gradient."""
from __future__ import annotations

import torch
from torch.nn import functional as F


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, fast: bool = False) -> torch.Tensor:
    """Mean cross-entropy. ``logits (M, B, C)``; ``target``: class indices ``(B,)`` or ``(M, B)``,
    or probabilities ``(B, C)`` / ``(M, B, C)``. Returns ``(M,)``.

    ``fast=True`` computes the same quantity with ``F.cross_entropy`` on the ``(M, C, B)`` view:
    on CPU, ``log_softmax`` over a short last dimension (few classes) is slow, and a training
    step of a small MLP runs about twice as fast this way. Values agree to rounding but not bit
    for bit (gradients differ in the last bits), so the default keeps the original form and the
    results of the chapters that use it."""
    if fast:
        if target.dtype in (torch.long, torch.int64, torch.int32):
            t = target.expand(logits.shape[0], -1) if target.dim() == 1 else target
        else:
            t = (target.expand(logits.shape[0], *target.shape) if target.dim() == 2 else target).transpose(1, 2)
        return F.cross_entropy(logits.transpose(1, 2), t, reduction="none").mean(-1)
    logp = torch.log_softmax(logits, dim=-1)
    if target.dtype in (torch.long, torch.int64, torch.int32):
        t = target.expand(logits.shape[0], -1) if target.dim() == 1 else target
        return -logp.gather(-1, t.unsqueeze(-1)).squeeze(-1).mean(-1)
    t = target.expand(logits.shape[0], *target.shape) if target.dim() == 2 else target
    return -(t * logp).sum(-1).mean(-1)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor,
                       temps: torch.Tensor, fast: bool = False) -> torch.Tensor:
    """Distillation objective ``T^2 * CE(p_target, softmax(logits / T))`` per network.
    ``logits (M, B, C)``, ``target_probs (M, B, C)`` (already at temperature T; one-hot for hard
    labels), ``temps (M,)``. With ``T = 1`` and one-hot targets it is :func:`cross_entropy`.
    ``fast``: as in :func:`cross_entropy`."""
    t = temps.view(-1, 1, 1)
    if fast:
        return cross_entropy(logits / t, target_probs, fast=True) * temps ** 2
    logq = torch.log_softmax(logits / t, dim=-1)
    return -(target_probs * logq).sum(-1).mean(-1) * temps ** 2


def logistic(logits: torch.Tensor, y_pm: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss ``log(1 + exp(-y f))``. ``logits (M, B)`` or ``(M, B, 1)``;
    ``y_pm (B,)`` or ``(M, B)`` in {-1, +1}. Returns ``(M,)``."""
    f = logits.squeeze(-1) if logits.dim() == 3 else logits
    return F.softplus(-f * y_pm).mean(-1)


def binary_cross_entropy(logits: torch.Tensor, y01: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy with logits. ``logits (M, B)``, ``y01 (B,)`` or ``(M, B)`` in
    {0, 1} (float). Returns ``(M,)``. Equal to :func:`logistic` with ``y_pm = 2 y01 - 1``."""
    return F.binary_cross_entropy_with_logits(logits, y01.expand_as(logits),
                                              reduction="none").mean(-1)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Share of examples whose arg-max class is ``y``: ``logits (M, B, C)``, ``y (B,)`` or
    ``(M, B)``. Returns ``(M,)``."""
    yy = y.expand(logits.shape[0], -1) if y.dim() == 1 else y
    return (logits.argmax(-1) == yy).float().mean(-1)
