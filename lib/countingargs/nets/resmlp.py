"""Many residual (or plain) MLPs as one set of batched tensors.

A network maps ``x (B, d_in)`` to a stream ``h0 = x W_in + b_in`` of width ``w``, runs ``L``
blocks on the stream and reads logits ``h_L W_out + b_out``. Block ``l`` computes
``f_l(h) = relu(h W1_l + b1_l) W2_l + b2_l``; a *residual* network adds it
(``h <- h + f_l(h)``), a *plain* network of the same depth replaces the stream
(``h <- relu(f_l(h))``).

The parameters of ``M`` networks are a dict (:data:`PARAM_NAMES`), each entry with the network
index as its leading dimension: ``w_in (M, d_in, w)``, ``b_in (M, 1, w)``,
``w1, w2 (M, L, w, w)``, ``b1, b2 (M, L, 1, w)``, ``w_out (M, w, d_out)``,
``b_out (M, 1, d_out)``. The functions below take that dict, so the same forward pass serves
training (:func:`countingargs.nets.train.train_until` on ``list(params.values())``), the
estimators (:func:`loss_fn`) and :class:`BatchedResMLP`, a module holding one such dict.

Lesions and Veit et al.'s path sampling act on the stream (:func:`stream`): ``keep`` deletes
blocks, ``order`` permutes them, ``grad_mode`` restricts the backward pass to chosen paths.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from . import losses

PARAM_NAMES = ("w_in", "b_in", "w1", "b1", "w2", "b2", "w_out", "b_out")
Params = Mapping[str, torch.Tensor]


def init_params(n_models: int, d_in: int, width: int, n_blocks: int, d_out: int,
                seeds: Sequence[int], residual: bool = True, branch_scale: float | None = None,
                dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Initial parameters of ``M = n_models`` networks, network ``i`` drawn from its own
    generator seeded with ``seeds[i]`` (so it does not depend on its batch mates).

    PyTorch's default uniform init for the input and output layers; Kaiming-uniform (ReLU gain)
    for ``w1`` and, in a plain network, ``w2``; in a residual network ``w2`` is further scaled
    by ``branch_scale`` (default ``1/sqrt(L)``) so that the stream does not blow up with depth.
    Biases inside blocks start at zero.
    """
    if min(n_models, d_in, width, n_blocks, d_out) < 1:
        raise ValueError(f"all sizes must be positive: n_models={n_models}, d_in={d_in}, "
                         f"width={width}, n_blocks={n_blocks}, d_out={d_out}")
    seeds = [int(s) for s in seeds]
    if len(seeds) != n_models:
        raise ValueError(f"got {len(seeds)} seeds for {n_models} models")
    if branch_scale is None:
        branch_scale = 1.0 / math.sqrt(n_blocks) if residual else 1.0
    kb = math.sqrt(6.0 / width)  # Kaiming-uniform bound, ReLU gain
    parts: dict[str, list] = {k: [] for k in ("w_in", "b_in", "w1", "w2", "w_out", "b_out")}
    for s in seeds:
        g = torch.Generator().manual_seed(s)

        def u(*shape, bound):
            return (torch.rand(*shape, generator=g, dtype=dtype) * 2 - 1) * bound

        parts["w_in"].append(u(d_in, width, bound=1 / math.sqrt(d_in)))
        parts["b_in"].append(u(1, width, bound=1 / math.sqrt(d_in)))
        parts["w1"].append(u(n_blocks, width, width, bound=kb))
        parts["w2"].append(u(n_blocks, width, width, bound=kb * branch_scale))
        parts["w_out"].append(u(width, d_out, bound=1 / math.sqrt(width)))
        parts["b_out"].append(u(1, d_out, bound=1 / math.sqrt(width)))
    p = {k: torch.stack(v) for k, v in parts.items()}
    p["b1"] = torch.zeros(n_models, n_blocks, 1, width, dtype=dtype)
    p["b2"] = torch.zeros(n_models, n_blocks, 1, width, dtype=dtype)
    return {k: p[k] for k in PARAM_NAMES}


def as_params(values: Sequence[torch.Tensor] | Params) -> dict[str, torch.Tensor]:
    """A parameter dict from a dict or from a list in :data:`PARAM_NAMES` order (the layout
    :func:`countingargs.nets.train.train_until` works on); extra list entries are ignored."""
    if isinstance(values, Mapping):
        missing = [n for n in PARAM_NAMES if n not in values]
        if missing:
            raise KeyError(f"residual-MLP parameters lack {missing}")
        return {n: values[n] for n in PARAM_NAMES}
    values = list(values)
    if len(values) < len(PARAM_NAMES):
        raise ValueError(f"need the {len(PARAM_NAMES)} tensors {PARAM_NAMES}, got {len(values)}")
    return dict(zip(PARAM_NAMES, values))


def _expand(t, m: int, n_blocks: int, name: str, dtype) -> torch.Tensor | None:
    """``(L,)`` or ``(M, L)`` -> ``(M, L)`` tensor, with a clear error otherwise."""
    if t is None:
        return None
    t = torch.as_tensor(t, dtype=dtype)
    if t.dim() == 1:
        t = t.unsqueeze(0).expand(m, -1)
    if t.shape != (m, n_blocks):
        raise ValueError(f"{name} must have shape (L,)=({n_blocks},) or (M, L)=({m}, {n_blocks}), "
                         f"got {tuple(t.shape)}")
    return t


def embed(p: Params, x: torch.Tensor) -> torch.Tensor:
    """``x (B, d_in)`` shared by all networks or ``(M, B, d_in)`` -> stream ``h0 (M, B, w)``."""
    m, d_in = p["w_in"].shape[:2]
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(m, *x.shape)
    if x.dim() != 3 or x.shape[0] != m or x.shape[2] != d_in:
        raise ValueError(f"x must be (B, {d_in}) or ({m}, B, {d_in}), got {tuple(x.shape)}")
    return torch.baddbmm(p["b_in"], x, p["w_in"])


def head(p: Params, h: torch.Tensor) -> torch.Tensor:
    """Stream ``(M, B, w)`` -> logits ``(M, B, d_out)``."""
    return torch.baddbmm(p["b_out"], h, p["w_out"])


def branch(p: Params, h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``f`` of block ``idx[m]`` for network ``m``: ``h (M, B, w)``, ``idx (M,)`` -> ``(M, B, w)``."""
    ar = torch.arange(h.shape[0])
    z = torch.relu(torch.baddbmm(p["b1"][ar, idx], h, p["w1"][ar, idx]))
    return torch.baddbmm(p["b2"][ar, idx], z, p["w2"][ar, idx])


def stream(p: Params, h: torch.Tensor, residual: bool = True, keep=None, order=None,
           grad_mode=None, return_all: bool = False):
    """Run the blocks on the stream ``h (M, B, w)``.

    - ``keep``: ``(L,)`` or ``(M, L)``, 1 = run the block, 0 = delete it (the stream passes
      through unchanged: ``h_{l+1} = h_l``). Fractional values scale the block's change.
    - ``order``: ``(L,)`` or ``(M, L)`` permutation; position ``q`` runs block ``order[q]``.
      ``keep`` refers to positions after reordering.
    - ``grad_mode`` (residual only): ``(L,)`` or ``(M, L)`` with 0 = backpropagate through the
      skip only, 1 = through the residual branch only, 2 = through both (ordinary). The
      forward values are unchanged; only the backward pass is restricted (Veit et al.'s
      sampling uses 0/1, which keeps exactly one path).

    Returns the final stream ``(M, B, w)`` (and the list of the ``L + 1`` streams if asked).
    """
    m, n_blocks = p["w1"].shape[:2]
    keep = _expand(keep, m, n_blocks, "keep", h.dtype)
    order = _expand(order, m, n_blocks, "order", torch.long)
    grad_mode = _expand(grad_mode, m, n_blocks, "grad_mode", torch.long)
    if order is not None:
        srt = torch.sort(order, dim=1).values
        if not torch.equal(srt, torch.arange(n_blocks).expand(m, n_blocks)):
            raise ValueError("order must be a permutation of 0..L-1 in every row")
    if grad_mode is not None:
        if not residual:
            raise ValueError("grad_mode applies to residual networks only")
        if ((grad_mode < 0) | (grad_mode > 2)).any():
            raise ValueError("grad_mode values must be 0 (skip), 1 (branch) or 2 (both)")
    streams = [h]
    for q in range(n_blocks):
        idx = order[:, q] if order is not None else torch.full((m,), q, dtype=torch.long)
        f = branch(p, h, idx)
        if residual:
            if grad_mode is not None:
                gm = grad_mode[:, q].view(m, 1, 1)
                f = torch.where(gm >= 1, f, f.detach())
                new = torch.where(gm != 1, h, h.detach()) + f
            else:
                new = h + f
        else:
            new = torch.relu(f)
        if keep is not None:
            k = keep[:, q].view(m, 1, 1)
            new = k * new + (1 - k) * h
        h = new
        streams.append(h)
    return (h, streams) if return_all else h


def forward(p: Params, x: torch.Tensor, residual: bool = True, keep=None, order=None) -> torch.Tensor:
    """Logits ``(M, B, d_out)`` for ``x (B, d_in)`` or ``(M, B, d_in)``; see :func:`stream`."""
    return head(p, stream(p, embed(p, x), residual, keep=keep, order=order))


def n_params(p: Params) -> int:
    """Parameters of ONE network."""
    return sum(p[n][0].numel() for n in PARAM_NAMES)


def loss_fn(x: torch.Tensor, y: torch.Tensor, loss: str = "logistic",
            residual: bool = True) -> Callable[[Params], torch.Tensor]:
    """A batched ``loss_fn`` for :mod:`countingargs.estimators` (``f(theta) -> (B,)``): the mean
    loss on ``x (N, d_in)`` of each of the ``B`` networks in ``theta`` (a parameter dict, every
    entry with leading dimension ``B``). ``loss="logistic"`` takes ``y (N,)`` in {-1, +1}
    (:func:`countingargs.nets.losses.logistic`), ``loss="ce"`` class indices
    (:func:`countingargs.nets.losses.cross_entropy`). Differentiable in ``theta``."""
    fns = {"logistic": losses.logistic, "ce": losses.cross_entropy}
    if loss not in fns:
        raise ValueError(f"loss must be one of {sorted(fns)}, got {loss!r}")

    def f(theta: Params) -> torch.Tensor:
        return fns[loss](forward(as_params(theta), x, residual), y)

    return f


class BatchedResMLP(nn.Module):
    """``M`` networks ``d_in -> w -> [L blocks] -> d_out`` as one module (see the module
    docstring for the shapes). ``seeds``: one per network (see :func:`init_params`)."""

    def __init__(self, n_models: int, d_in: int, width: int, n_blocks: int, d_out: int,
                 seeds: Sequence[int], residual: bool = True, branch_scale: float | None = None,
                 dtype=torch.float32):
        super().__init__()
        self.residual = bool(residual)
        p = init_params(n_models, d_in, width, n_blocks, d_out, seeds, residual, branch_scale, dtype)
        for name in PARAM_NAMES:
            setattr(self, name, nn.Parameter(p[name]))

    @classmethod
    def from_params(cls, params: Params, residual: bool = True) -> "BatchedResMLP":
        """A module holding copies of ``params`` (a dict or a list in :data:`PARAM_NAMES` order)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.residual = bool(residual)
        for name, v in as_params(params).items():
            setattr(new, name, nn.Parameter(v.detach().clone()))
        return new

    @property
    def n_models(self) -> int:
        return self.w_in.shape[0]

    @property
    def n_blocks(self) -> int:
        return self.w1.shape[1]

    @property
    def width(self) -> int:
        return self.w_in.shape[2]

    def params(self) -> dict[str, torch.Tensor]:
        """The live parameters as a dict (in :data:`PARAM_NAMES` order)."""
        return {n: getattr(self, n) for n in PARAM_NAMES}

    def detached(self) -> dict[str, torch.Tensor]:
        """Detached copies of the parameters (the ``params`` format of the estimators)."""
        return {n: getattr(self, n).detach().clone() for n in PARAM_NAMES}

    def n_params(self) -> int:
        return n_params(self.params())

    def embed(self, x):
        return embed(self.params(), x)

    def head(self, h):
        return head(self.params(), h)

    def branch(self, h, idx):
        return branch(self.params(), h, idx)

    def stream(self, h, keep=None, order=None, grad_mode=None, return_all: bool = False):
        return stream(self.params(), h, self.residual, keep, order, grad_mode, return_all)

    def forward(self, x, keep=None, order=None):
        return forward(self.params(), x, self.residual, keep, order)
