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


def forward(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
            activation: str = "relu", return_hidden: bool = False):
    """The one MLP forward pass. ``layers``: ``[(W (M, a, b), bias (M, 1, b)), ...]``;
    ``x``: ``(B, a)`` shared by all ``M`` networks or ``(M, B, a)`` per network. Returns
    logits ``(M, B, d_out)`` (and the hidden activations, one ``(M, B, h)`` per hidden layer)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {sorted(ACTIVATIONS)}")
    act = ACTIVATIONS[activation]
    m = layers[0][0].shape[0]
    h = x.unsqueeze(0).expand(m, *x.shape) if x.dim() == 2 else x
    hidden = []
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        h = torch.baddbmm(b, h, w)
        if i < last:
            h = act(h)
            hidden.append(h)
    return (h, hidden) if return_hidden else h


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
        return forward(self.layers(), x, self.activation, return_hidden)

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(W (M, a, b), bias (M, 1, b)), ...]``, the layout :func:`forward` takes."""
        return list(zip(self.weights, self.biases))

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
