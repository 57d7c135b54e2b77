"""Many small MLPs as one batched tensor.

A :class:`BatchedMLP` holds ``M`` independent networks of the same shape. Layer ``l`` has a
weight tensor of shape ``(M, d_in, d_out)`` and a bias of shape ``(M, 1, d_out)``; a forward
pass is one batched matmul per layer, so thousands of networks train or evaluate in one call.

Because the loss of the batch is the *sum* of the per-network losses, each network's gradient is
exactly its own, and element-wise optimisers (SGD, Adam) treat the networks independently:
training ``M`` networks batched gives the same networks as ``M`` separate runs.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda z: z}


def device(prefer: str = "auto") -> torch.device:
    """``cuda`` when it is present and wanted, else ``cpu``."""
    if prefer not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {prefer!r}")
    if prefer == "cuda" or (prefer == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


class BatchedMLP(nn.Module):
    """``M`` fully connected networks ``sizes[0] -> ... -> sizes[-1]``.

    Parameters
    ----------
    n_models: M, the number of independent networks.
    sizes: layer widths, input first, output last.
    seeds: one integer per network (length M) or a single base seed; network ``i`` is
        initialised from its own generator, so it does not depend on which other networks
        share the batch.
    init: ``"torch"`` (PyTorch's default ``nn.Linear`` uniform init) or ``"gaussian"``
        (``W ~ N(0, sigma_w^2 / fan_in)``, ``b ~ N(0, sigma_b^2)``).
    """

    def __init__(self, n_models: int, sizes: Sequence[int], seeds: int | Sequence[int] = 0,
                 activation: str = "relu", init: str = "torch", sigma_w: float = 1.0,
                 sigma_b: float = 0.0, dtype=torch.float32):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {sorted(ACTIVATIONS)}")
        if init not in ("torch", "gaussian"):
            raise ValueError(f"unknown init {init!r}; valid: 'torch', 'gaussian'")
        if len(sizes) < 2 or min(sizes) < 1 or n_models < 1:
            raise ValueError(f"need n_models >= 1 and at least two positive sizes, got {n_models}, {sizes}")
        if isinstance(seeds, int):
            seeds = [seeds * 1_000_003 + i for i in range(n_models)]
        seeds = list(seeds)
        if len(seeds) != n_models:
            raise ValueError(f"got {len(seeds)} seeds for {n_models} models")
        self.sizes = list(sizes)
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        ws = [[] for _ in range(len(sizes) - 1)]
        bs = [[] for _ in range(len(sizes) - 1)]
        for s in seeds:
            g = torch.Generator().manual_seed(int(s))
            for layer, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                if init == "torch":
                    bound = 1.0 / math.sqrt(a)
                    w = (torch.rand(a, b, generator=g, dtype=dtype) * 2 - 1) * bound
                    bias = (torch.rand(1, b, generator=g, dtype=dtype) * 2 - 1) * bound
                else:
                    w = torch.randn(a, b, generator=g, dtype=dtype) * (sigma_w / math.sqrt(a))
                    bias = torch.randn(1, b, generator=g, dtype=dtype) * sigma_b
                ws[layer].append(w)
                bs[layer].append(bias)
        self.weights = nn.ParameterList([nn.Parameter(torch.stack(w)) for w in ws])
        self.biases = nn.ParameterList([nn.Parameter(torch.stack(b)) for b in bs])

    @property
    def n_models(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """``x``: ``(B, d_in)`` shared by all networks, or ``(M, B, d_in)``.
        Returns logits ``(M, B, d_out)`` (and the list of hidden activations if asked)."""
        h = x.unsqueeze(0).expand(self.n_models, *x.shape) if x.dim() == 2 else x
        hidden = []
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = self._act(h)
                hidden.append(h)
        return (h, hidden) if return_hidden else h

    def select(self, idx: Sequence[int]) -> "BatchedMLP":
        """A new BatchedMLP holding copies of networks ``idx``."""
        new = BatchedMLP.__new__(BatchedMLP)
        nn.Module.__init__(new)
        new.sizes, new.activation, new._act = list(self.sizes), self.activation, self._act
        idx = torch.as_tensor(list(idx), dtype=torch.long)
        new.weights = nn.ParameterList([nn.Parameter(w.detach()[idx].clone()) for w in self.weights])
        new.biases = nn.ParameterList([nn.Parameter(b.detach()[idx].clone()) for b in self.biases])
        return new

    def n_params(self) -> int:
        """Parameters of ONE network."""
        return sum(w[0].numel() + b[0].numel() for w, b in zip(self.weights, self.biases))


def batched_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-network mean cross-entropy. ``logits (M, B, C)``; ``target`` is class indices ``(B,)``
    or ``(M, B)``, or probabilities ``(B, C)`` / ``(M, B, C)``. Returns ``(M,)``."""
    logp = torch.log_softmax(logits, dim=-1)
    if target.dtype in (torch.long, torch.int64, torch.int32):
        t = target.expand(logits.shape[0], -1) if target.dim() == 1 else target
        return -logp.gather(-1, t.unsqueeze(-1)).squeeze(-1).mean(-1)
    t = target.expand(logits.shape[0], *target.shape) if target.dim() == 2 else target
    return -(t * logp).sum(-1).mean(-1)
