"""Parallel-circuit placements and the short-depth bias (chapter 4).

Pope's claim in the 2023 thread: a problem that two parallel circuits of depth n/2 can solve is
implemented by more parameter settings than one needing a serial circuit of depth n, because the
parallel circuits can sit at many relative depths. This module holds what the chapter runs:

- **Placement counts** (:func:`placement_counts`, checked by :func:`brute_force_placements`):
  how many ways one serial chain of ``n`` steps, or ``k`` parallel chains of ``n/k`` steps, fit
  into a residual stream of ``L`` blocks. These are counts of placements, not of parameter volume.
- **Batched residual and plain MLPs** (:class:`BatchedResMLP`): ``M`` networks of the same shape
  as one set of batched tensors, with block deletion (``keep``), block reordering (``order``) and
  Veit et al.'s path-restricted backward pass (``grad_mode``).
- **Veit et al.'s path-length gradient sampling** (:func:`path_gradient_norms`,
  :func:`path_length_profile`).
- **Serial vs parallel Boolean tasks** (:func:`bit_tasks`), training to a matched loss
  (:func:`train_to_loss`), adapters to the shared volume / LLC estimators of
  :mod:`countingargs.llc` (:func:`resmlp_params`, :func:`resmlp_loss_fn`), and where the two
  halves of the parallel task are computed (:func:`subproblem_energy`; the probe-based
  ablation :func:`subtarget_damage` is kept for the record).

Shapes use ``M`` networks, ``L`` blocks, ``B`` examples, ``w`` the stream width.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

# ----------------------------------------------------------------------------------------------
# 1. Counting placements
# ----------------------------------------------------------------------------------------------


def _check_ln(L: int, n: int, k: int) -> int:
    if not (isinstance(L, (int, np.integer)) and isinstance(n, (int, np.integer))):
        raise TypeError(f"L and n must be integers, got L={L!r}, n={n!r}")
    if k < 1:
        raise ValueError(f"k (number of parallel chains) must be >= 1, got {k}")
    if L < 1 or n < 1:
        raise ValueError(f"need L >= 1 and n >= 1, got L={L}, n={n}")
    if n % k:
        raise ValueError(f"n={n} steps cannot be split into {k} equal parallel chains")
    return n // k


def placement_counts(L: int, n: int, k: int = 2) -> dict[str, int]:
    """Exact placement counts in a residual stream of ``L`` blocks.

    A chain of ``m`` steps occupies ``m`` distinct blocks in increasing order (step ``i+1`` reads
    what step ``i`` wrote, so it must sit in a later block): ``C(L, m)`` placements.

    Returns a dict of Python ints:

    - ``serial``: one chain of ``n`` steps, ``C(L, n)``;
    - ``parallel_shared``: ``k`` distinguishable chains of ``n/k`` steps that may share blocks,
      ``C(L, n/k)**k``;
    - ``parallel_disjoint``: the same chains on disjoint blocks,
      ``L! / ((n/k)!**k (L-n)!)`` (zero when ``n > L``).
    """
    m = _check_ln(L, n, k)
    serial = math.comb(L, n)
    shared = math.comb(L, m) ** k
    if n > L:
        disjoint = 0
    else:
        disjoint = math.factorial(L) // (math.factorial(m) ** k * math.factorial(L - n))
    return {"serial": serial, "parallel_shared": shared, "parallel_disjoint": disjoint}


def brute_force_placements(L: int, n: int, k: int = 2) -> dict[str, int]:
    """The counts of :func:`placement_counts` by enumerating all ``L**n`` maps of steps to
    blocks and checking the constraints directly (slow: keep ``L**n`` below ~10^6)."""
    m = _check_ln(L, n, k)
    if L ** n > 2_000_000:
        raise ValueError(f"brute force over L**n = {L ** n} assignments is too slow")
    serial = shared = disjoint = 0
    for assign in itertools.product(range(L), repeat=n):
        if all(a < b for a, b in zip(assign, assign[1:])):
            serial += 1
        chains = [assign[j * m:(j + 1) * m] for j in range(k)]
        if all(all(a < b for a, b in zip(c, c[1:])) for c in chains):
            shared += 1
            if len(set(assign)) == n:
                disjoint += 1
    return {"serial": serial, "parallel_shared": shared, "parallel_disjoint": disjoint}


def relative_depth_reference(L: int, m: int, shared: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Distribution of the relative depth of two parallel chains placed uniformly at random.

    Each chain occupies ``m`` increasing blocks (0-based); its *depth* is the mean index of its
    blocks. Over all placements (``C(L, m)**2`` if ``shared``, else disjoint pairs), returns
    ``(offsets, probs)``: the distinct values of ``depth(A) - depth(B)`` (sorted) and their
    probabilities. This is what the permutation argument expects if every placement were equally
    likely.
    """
    if not 1 <= m <= L:
        raise ValueError(f"need 1 <= m <= L, got m={m}, L={L}")
    combos = list(itertools.combinations(range(L), m))
    means = np.array([np.mean(c) for c in combos])
    sets = [set(c) for c in combos]
    diffs = []
    for i, a in enumerate(combos):
        for j, b in enumerate(combos):
            if shared or not (sets[i] & sets[j]):
                diffs.append(means[i] - means[j])
    if not diffs:
        raise ValueError(f"no disjoint placements of two chains of {m} in {L} blocks")
    d = np.round(np.array(diffs), 9)
    vals, counts = np.unique(d, return_counts=True)
    return vals, counts / counts.sum()


# ----------------------------------------------------------------------------------------------
# 2. Batched residual / plain MLPs
# ----------------------------------------------------------------------------------------------


def _expand(t: torch.Tensor | Sequence | None, M: int, L: int, name: str, dtype) -> torch.Tensor | None:
    """``(L,)`` or ``(M, L)`` -> ``(M, L)`` tensor, with a clear error otherwise."""
    if t is None:
        return None
    t = torch.as_tensor(t, dtype=dtype)
    if t.dim() == 1:
        t = t.unsqueeze(0).expand(M, -1)
    if t.shape != (M, L):
        raise ValueError(f"{name} must have shape (L,)=({L},) or (M, L)=({M}, {L}), got {tuple(t.shape)}")
    return t


class BatchedResMLP(nn.Module):
    """``M`` MLPs ``d_in -> w -> [L blocks] -> d_out`` held as batched tensors.

    A block maps the stream ``h (M, B, w)`` through ``f(h) = relu(h W1 + b1) W2 + b2``.
    With ``residual=True`` block ``l`` computes ``h + f_l(h)``; with ``residual=False`` (the plain
    network of the same depth) it computes ``relu(f_l(h))``. Every network has its own seed, so
    it does not depend on which other networks share the batch.

    Parameters (all batched over ``M``): ``w_in (M, d_in, w)``, ``b_in (M, 1, w)``,
    ``w1, w2 (M, L, w, w)``, ``b1, b2 (M, L, 1, w)``, ``w_out (M, w, d_out)``, ``b_out (M, 1, d_out)``.

    Init: PyTorch's default uniform for the input and output layers, Kaiming-uniform (ReLU gain)
    for ``w1`` and, in the plain network, ``w2``; in the residual network ``w2`` is further scaled
    by ``branch_scale`` (default ``1/sqrt(L)``) so the stream does not blow up with depth. Biases
    inside blocks start at zero.
    """

    def __init__(self, n_models: int, d_in: int, width: int, n_blocks: int, d_out: int,
                 residual: bool = True, seeds: int | Sequence[int] = 0,
                 branch_scale: float | None = None, dtype=torch.float32):
        super().__init__()
        if n_models < 1 or d_in < 1 or width < 1 or n_blocks < 1 or d_out < 1:
            raise ValueError(f"all sizes must be positive: n_models={n_models}, d_in={d_in}, "
                             f"width={width}, n_blocks={n_blocks}, d_out={d_out}")
        if isinstance(seeds, (int, np.integer)):
            seeds = [int(seeds) * 1_000_003 + i for i in range(n_models)]
        seeds = [int(s) for s in seeds]
        if len(seeds) != n_models:
            raise ValueError(f"got {len(seeds)} seeds for {n_models} models")
        self.residual = bool(residual)
        self.n_blocks, self.width = n_blocks, width
        if branch_scale is None:
            branch_scale = 1.0 / math.sqrt(n_blocks) if residual else 1.0
        kb = math.sqrt(6.0 / width)  # Kaiming-uniform bound, ReLU gain
        parts: dict[str, list] = {k: [] for k in ("w_in", "b_in", "w1", "w2", "w_out", "b_out")}
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            u = lambda *shape, bound: (torch.rand(*shape, generator=g, dtype=dtype) * 2 - 1) * bound
            parts["w_in"].append(u(d_in, width, bound=1 / math.sqrt(d_in)))
            parts["b_in"].append(u(1, width, bound=1 / math.sqrt(d_in)))
            parts["w1"].append(u(n_blocks, width, width, bound=kb))
            parts["w2"].append(u(n_blocks, width, width, bound=kb * branch_scale))
            parts["w_out"].append(u(width, d_out, bound=1 / math.sqrt(width)))
            parts["b_out"].append(u(1, d_out, bound=1 / math.sqrt(width)))
        self.w_in = nn.Parameter(torch.stack(parts["w_in"]))
        self.b_in = nn.Parameter(torch.stack(parts["b_in"]))
        self.w1 = nn.Parameter(torch.stack(parts["w1"]))
        self.w2 = nn.Parameter(torch.stack(parts["w2"]))
        self.b1 = nn.Parameter(torch.zeros(n_models, n_blocks, 1, width, dtype=dtype))
        self.b2 = nn.Parameter(torch.zeros(n_models, n_blocks, 1, width, dtype=dtype))
        self.w_out = nn.Parameter(torch.stack(parts["w_out"]))
        self.b_out = nn.Parameter(torch.stack(parts["b_out"]))

    @property
    def n_models(self) -> int:
        return self.w_in.shape[0]

    def n_params(self) -> int:
        """Parameters of ONE network."""
        return sum(p[0].numel() for p in self.parameters())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, d_in)`` shared by all networks or ``(M, B, d_in)`` -> stream ``h0 (M, B, w)``."""
        M = self.n_models
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(M, *x.shape)
        if x.dim() != 3 or x.shape[0] != M or x.shape[2] != self.w_in.shape[1]:
            raise ValueError(f"x must be (B, {self.w_in.shape[1]}) or ({M}, B, {self.w_in.shape[1]}), "
                             f"got {tuple(x.shape)}")
        return torch.baddbmm(self.b_in, x, self.w_in)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Stream ``(M, B, w)`` -> logits ``(M, B, d_out)``."""
        return torch.baddbmm(self.b_out, h, self.w_out)

    def branch(self, h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``f`` of block ``idx[m]`` for network ``m``: ``h (M, B, w)``, ``idx (M,)`` -> ``(M, B, w)``."""
        ar = torch.arange(self.n_models)
        z = torch.relu(torch.baddbmm(self.b1[ar, idx], h, self.w1[ar, idx]))
        return torch.baddbmm(self.b2[ar, idx], z, self.w2[ar, idx])

    def stream(self, h: torch.Tensor, keep=None, order=None, grad_mode=None,
               return_all: bool = False):
        """Run the blocks on the stream ``h (M, B, w)``.

        - ``keep``: ``(L,)`` or ``(M, L)``, 1 = run the block, 0 = delete it (the stream passes
          through unchanged: ``h_{l+1} = h_l``). Fractional values scale the block's change.
        - ``order``: ``(L,)`` or ``(M, L)`` permutation; position ``p`` runs block ``order[p]``.
          ``keep`` refers to positions after reordering.
        - ``grad_mode`` (residual only): ``(L,)`` or ``(M, L)`` with 0 = backpropagate through the
          skip only, 1 = through the residual branch only, 2 = through both (ordinary). The
          forward values are unchanged; only the backward pass is restricted (Veit et al.'s
          sampling uses 0/1, which keeps exactly one path).

        Returns the final stream ``(M, B, w)`` (and the list of the ``L + 1`` streams if asked).
        """
        M, L = self.n_models, self.n_blocks
        keep = _expand(keep, M, L, "keep", h.dtype)
        order = _expand(order, M, L, "order", torch.long)
        grad_mode = _expand(grad_mode, M, L, "grad_mode", torch.long)
        if order is not None:
            srt = torch.sort(order, dim=1).values
            if not torch.equal(srt, torch.arange(L).expand(M, L)):
                raise ValueError("order must be a permutation of 0..L-1 in every row")
        if grad_mode is not None:
            if not self.residual:
                raise ValueError("grad_mode applies to residual networks only")
            if ((grad_mode < 0) | (grad_mode > 2)).any():
                raise ValueError("grad_mode values must be 0 (skip), 1 (branch) or 2 (both)")
        streams = [h]
        for p in range(L):
            idx = order[:, p] if order is not None else torch.full((M,), p, dtype=torch.long)
            f = self.branch(h, idx)
            if self.residual:
                if grad_mode is not None:
                    gm = grad_mode[:, p].view(M, 1, 1)
                    f_eff = torch.where(gm >= 1, f, f.detach())
                    h_eff = torch.where(gm != 1, h, h.detach())
                else:
                    f_eff, h_eff = f, h
                new = h_eff + f_eff
            else:
                new = torch.relu(f)
            if keep is not None:
                k = keep[:, p].view(M, 1, 1)
                new = k * new + (1 - k) * h
            h = new
            streams.append(h)
        return (h, streams) if return_all else h

    def forward(self, x: torch.Tensor, keep=None, order=None) -> torch.Tensor:
        """Logits ``(M, B, d_out)`` for ``x (B, d_in)`` or ``(M, B, d_in)``; see :meth:`stream`."""
        return self.head(self.stream(self.embed(x), keep=keep, order=order))


def batched_logistic(logits: torch.Tensor, y_pm: torch.Tensor) -> torch.Tensor:
    """Per-network mean logistic loss: ``logits (M, B, 1)``, ``y_pm (B,)`` in {-1, +1} -> ``(M,)``."""
    return nn.functional.softplus(-logits.squeeze(-1) * y_pm).mean(-1)


def batched_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-network mean cross-entropy: ``logits (M, B, C)``, ``y (B,)`` or ``(M, B)`` -> ``(M,)``."""
    logp = torch.log_softmax(logits, -1)
    t = y.expand(logits.shape[0], -1) if y.dim() == 1 else y
    return -logp.gather(-1, t.unsqueeze(-1)).squeeze(-1).mean(-1)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def train_classifier(model: BatchedResMLP, X: torch.Tensor, y: torch.Tensor, steps: int,
                     lr: float = 1e-3, batch_size: int = 128, seed: int = 0,
                     progress=None) -> np.ndarray:
    """Adam on the summed per-network cross-entropy (each network gets exactly its own gradient).

    ``X (N, d_in)``, ``y (N,)`` class indices. Every network draws its own mini-batches from
    a generator seeded by ``seed``. Returns the per-step training losses ``(steps, M)``.
    """
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    M, N = model.n_models, X.shape[0]
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = np.zeros((steps, M))
    it = range(steps) if progress is None else progress(range(steps))
    for t in it:
        idx = torch.randint(0, N, (M, batch_size), generator=g)
        loss = batched_ce(model(X[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        hist[t] = loss.detach().numpy()
    return hist


@torch.no_grad()
def error_rate(model: BatchedResMLP, X: torch.Tensor, y: torch.Tensor, keep=None, order=None) -> np.ndarray:
    """Per-network classification error ``(M,)`` on ``X (N, d_in)``, ``y (N,)``."""
    pred = model(X, keep=keep, order=order).argmax(-1)
    return (pred != y).float().mean(-1).numpy()


def train_to_loss(model: BatchedResMLP, X: torch.Tensor, y_pm: torch.Tensor, target_loss: float,
                  max_steps: int, lr: float = 3e-3, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch Adam on a binary task until each network reaches ``target_loss``.

    ``X (N, d_in)``, ``y_pm (N,)`` in {-1, +1}; ``model`` has ``d_out = 1``. A network *reaches*
    the target at the first step where its mean logistic loss is ``<= target_loss`` and every
    example is classified correctly; its parameters at that step are kept (so all successful
    networks sit at the same training loss), while the others keep training until
    ``max_steps``. Returns ``(steps_to_target (M,), final_loss (M,))`` with ``-1`` steps for
    networks that never reached it. The model is modified in place.
    """
    M = model.n_models
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    done = torch.zeros(M, dtype=torch.bool)
    steps_to = torch.full((M,), -1, dtype=torch.long)
    snap = [p.detach().clone() for p in model.parameters()]
    it = range(max_steps + 1) if progress is None else progress(range(max_steps + 1))
    for t in it:
        logits = model(X)
        loss = batched_logistic(logits, y_pm)
        with torch.no_grad():
            acc_ok = ((logits.squeeze(-1) * y_pm) > 0).all(-1)
            new = (~done) & (loss <= target_loss) & acc_ok
            if new.any():
                for s, p in zip(snap, model.parameters()):
                    s[new] = p.detach()[new]
                steps_to[new] = t
                done |= new
        if bool(done.all()) or t == max_steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        for s, p in zip(snap, model.parameters()):
            p[done] = s[done]
        final = batched_logistic(model(X), y_pm)
    return steps_to.numpy(), final.numpy()


# ----------------------------------------------------------------------------------------------
# Veit et al.: lesions and path-length gradients
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def single_deletion_errors(model: BatchedResMLP, X, y) -> np.ndarray:
    """Error after deleting each single block: ``(M, L + 1)``, column 0 = nothing deleted."""
    L = model.n_blocks
    cols = [error_rate(model, X, y)]
    for l in range(L):
        keep = torch.ones(L)
        keep[l] = 0
        cols.append(error_rate(model, X, y, keep=keep))
    return np.stack(cols, axis=1)


@torch.no_grad()
def random_deletion_errors(model: BatchedResMLP, X, y, ks: Sequence[int], n_draws: int,
                           seed: int = 0) -> np.ndarray:
    """Error after deleting ``k`` random blocks (own draw per network): ``(len(ks), n_draws, M)``."""
    M, L = model.n_models, model.n_blocks
    g = torch.Generator().manual_seed(seed)
    out = np.zeros((len(ks), n_draws, M))
    for i, k in enumerate(ks):
        if not 0 <= k <= L:
            raise ValueError(f"cannot delete {k} of {L} blocks")
        for d in range(n_draws):
            ranks = torch.rand(M, L, generator=g).argsort(dim=1).argsort(dim=1)
            keep = (ranks >= k).float()
            out[i, d] = error_rate(model, X, y, keep=keep)
    return out


@torch.no_grad()
def reorder_errors(model: BatchedResMLP, X, y, n_swaps: Sequence[int], n_draws: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Error after corrupting the block order by ``s`` random transpositions (of any two blocks).

    For each ``s`` in ``n_swaps`` and each draw, every network gets its own permutation made of
    ``s`` random transpositions of the identity. Returns ``(errors, kendall_tau)``, both
    ``(len(n_swaps), n_draws, M)``; Kendall's tau compares the permutation with the identity.
    """
    from scipy.stats import kendalltau

    M, L = model.n_models, model.n_blocks
    rng = np.random.default_rng(seed)
    err = np.zeros((len(n_swaps), n_draws, M))
    tau = np.zeros_like(err)
    for i, s in enumerate(n_swaps):
        for d in range(n_draws):
            perms = np.tile(np.arange(L), (M, 1))
            for _ in range(s):
                a = rng.integers(0, L, M)
                b = rng.integers(0, L, M)
                r = np.arange(M)
                perms[r, a], perms[r, b] = perms[r, b].copy(), perms[r, a].copy()
            err[i, d] = error_rate(model, X, y, order=torch.as_tensor(perms))
            tau[i, d] = [kendalltau(np.arange(L), p)[0] if s else 1.0 for p in perms]
    return err, tau


def path_gradient_norms(model: BatchedResMLP, X: torch.Tensor, y: torch.Tensor,
                        grad_mode) -> np.ndarray:
    """Gradient norm at the stream's input under a restricted backward pass.

    One ordinary forward pass (the forward values do not depend on ``grad_mode``), then the
    gradient of the summed cross-entropy with respect to the stream input ``h0 (M, B, w)``,
    flowing only where ``grad_mode`` (``(L,)`` or ``(M, L)``, see :meth:`BatchedResMLP.stream`)
    allows. Returns the mean over examples of the per-example gradient norm: ``(M,)``.
    """
    h0 = model.embed(X).detach().requires_grad_(True)
    logits = model.head(model.stream(h0, grad_mode=grad_mode))
    loss = batched_ce(logits, y).sum() * X.shape[0]  # per-example losses summed
    (g,) = torch.autograd.grad(loss, h0)
    return g.norm(dim=-1).mean(-1).numpy()


def path_gradient(model: BatchedResMLP, X, y, grad_mode) -> torch.Tensor:
    """The raw gradient ``(M, B, w)`` behind :func:`path_gradient_norms` (for tests)."""
    h0 = model.embed(X).detach().requires_grad_(True)
    logits = model.head(model.stream(h0, grad_mode=grad_mode))
    loss = batched_ce(logits, y).sum() * X.shape[0]
    (g,) = torch.autograd.grad(loss, h0)
    return g


def path_length_profile(model: BatchedResMLP, X, y, n_samples: int, seed: int = 0) -> np.ndarray:
    """Veit et al.'s sampling: for each path length ``k = 0..L`` and each sample, pick ``k``
    blocks at random (own draw per network), backpropagate through their branches only and
    through the skips of all other blocks (exactly one path), and record the gradient norm.

    Returns the mean gradient norm of a single path of length ``k``: ``(L + 1, M)``. Multiply by
    ``C(L, k)`` (the number of such paths) for the total gradient carried at length ``k``.
    """
    M, L = model.n_models, model.n_blocks
    g = torch.Generator().manual_seed(seed)
    out = np.zeros((L + 1, M))
    for k in range(L + 1):
        acc = np.zeros(M)
        for _ in range(n_samples):
            ranks = torch.rand(M, L, generator=g).argsort(dim=1).argsort(dim=1)
            gm = (ranks < k).long()
            acc += path_gradient_norms(model, X, y, gm)
        out[k] = acc / n_samples
    return out


# ----------------------------------------------------------------------------------------------
# 3. Serial vs parallel Boolean tasks
# ----------------------------------------------------------------------------------------------

GATES = {"xor": lambda a, b: a ^ b, "and": lambda a, b: a & b, "or": lambda a, b: a | b}


def chain(bits: np.ndarray, gates: Sequence[str]) -> np.ndarray:
    """A serial gate chain: ``z = bits[:, 0]``, then ``z = gate_i(z, bits[:, i + 1])``.

    ``bits (N, len(gates) + 1)`` of 0/1 ints -> ``(N,)`` 0/1. Each gate waits for the previous
    one, so the chain has depth ``len(gates)``.
    """
    if bits.shape[1] != len(gates) + 1:
        raise ValueError(f"{len(gates)} gates need {len(gates) + 1} input bits, got {bits.shape[1]}")
    z = bits[:, 0].copy()
    for i, name in enumerate(gates):
        if name not in GATES:
            raise ValueError(f"unknown gate {name!r}; valid: {sorted(GATES)}")
        z = GATES[name](z, bits[:, i + 1])
    return z


def bit_tasks(n_bits: int = 8, gates_g: Sequence[str] = ("xor", "and", "xor"),
              gates_h: Sequence[str] = ("xor", "or", "xor"),
              gates_serial: Sequence[str] | None = None) -> dict:
    """The two synthetic tasks on all ``2**n_bits`` inputs.

    - **parallel** ``y = g(x_a) XOR h(x_b)``: ``g`` a chain over the first half of the bits,
      ``h`` a chain over the second half; they can run side by side (depth ``len(g) + 1``).
    - **serial** ``y = chain(x)``: one chain over all bits with the same number of gates
      (``len(g) + len(h) + 1``) that must run one after the other (depth ``len(serial)``).
      By default its gates are ``g``'s, one XOR, then ``h``'s, so the serial task is
      ``h(g(x_a) XOR x_5, x_6, ...)``: the same gates as the parallel task, with ``g`` feeding
      into ``h`` instead of being combined with it at the end.

    Returns a dict with ``X (N, n_bits)`` in {-1, +1} (float32 tensor), ``y_parallel`` and
    ``y_serial`` in {-1, +1} (tensors ``(N,)``), the sub-targets ``g``, ``h`` in {-1, +1}
    (numpy ``(N,)``), and the index arrays ``a_idx``, ``b_idx`` (``(N,)``, which value of
    ``x_a`` / ``x_b`` each row has).
    """
    half = n_bits // 2
    if gates_serial is None:
        gates_serial = list(gates_g) + ["xor"] + list(gates_h)
    if len(gates_g) + 1 != half or len(gates_h) + 1 != n_bits - half:
        raise ValueError(f"g and h need {half - 1} and {n_bits - half - 1} gates for {n_bits} bits")
    if len(gates_serial) + 1 != n_bits:
        raise ValueError(f"the serial chain needs {n_bits - 1} gates for {n_bits} bits")
    N = 2 ** n_bits
    bits = ((np.arange(N)[:, None] >> np.arange(n_bits)[::-1]) & 1).astype(np.int64)
    g = chain(bits[:, :half], gates_g)
    h = chain(bits[:, half:], gates_h)
    par = g ^ h
    ser = chain(bits, gates_serial)
    pm = lambda v: (2 * v - 1)
    weights = 2 ** np.arange(half)[::-1]
    return {
        "X": torch.as_tensor(pm(bits), dtype=torch.float32),
        "y_parallel": torch.as_tensor(pm(par), dtype=torch.float32),
        "y_serial": torch.as_tensor(pm(ser), dtype=torch.float32),
        "g": pm(g).astype(float), "h": pm(h).astype(float),
        "a_idx": bits[:, :half] @ weights, "b_idx": bits[:, half:] @ weights[-(n_bits - half):],
    }


PARAM_NAMES = ("w_in", "b_in", "w1", "b1", "w2", "b2", "w_out", "b_out")


def resmlp_params(model: BatchedResMLP) -> dict[str, torch.Tensor]:
    """The networks' weights as a dict of detached copies, each with the leading dimension ``M``
    (``{"w_in": (M, d_in, w), ..., "b_out": (M, 1, d_out)}``): the ``params`` format of
    :func:`countingargs.llc.local_volume_batch` and :func:`countingargs.llc.estimate_llc_batch`."""
    return {name: getattr(model, name).detach().clone() for name in PARAM_NAMES}


def resmlp_loss_fn(X: torch.Tensor, y_pm: torch.Tensor, n_blocks: int, residual: bool = True):
    """A batched ``loss_fn`` for :mod:`countingargs.llc`: ``f(theta) -> (B,)``, the mean logistic
    loss on ``X (N, d_in)``, ``y_pm (N,)`` of each of the ``B`` networks in ``theta`` (a dict as
    returned by :func:`resmlp_params`, every entry with leading dimension ``B``).
    Differentiable in ``theta`` (the LLC's Langevin steps need the gradient)."""
    def f(theta) -> torch.Tensor:
        missing = [n for n in PARAM_NAMES if n not in theta]
        if missing:
            raise KeyError(f"theta lacks {missing}")
        net = BatchedResMLP.__new__(BatchedResMLP)
        nn.Module.__init__(net)
        net.residual, net.n_blocks, net.width = residual, n_blocks, theta["w_in"].shape[-1]
        if theta["w1"].shape[1] != n_blocks:
            raise ValueError(f"theta has {theta['w1'].shape[1]} blocks, expected {n_blocks}")
        for name in PARAM_NAMES:
            object.__setattr__(net, name, theta[name])
        return batched_logistic(net(X), y_pm)
    return f


def radius_at_half(radii: Sequence[float], frac: np.ndarray) -> np.ndarray:
    """Per network, the radius where the kept fraction first falls to 1/2, by log-linear
    interpolation between the measured radii: ``frac (M, R)`` -> ``(M,)``. Networks still above
    1/2 at the largest radius get that radius (a lower bound); below 1/2 at the smallest radius,
    the smallest radius (an upper bound)."""
    r = np.log(np.asarray(radii, dtype=float))
    if np.any(np.diff(r) <= 0):
        raise ValueError("radii must be increasing")
    out = np.empty(frac.shape[0])
    for m, f in enumerate(frac):
        below = np.nonzero(f < 0.5)[0]
        if below.size == 0:
            out[m] = r[-1]
        elif below[0] == 0:
            out[m] = r[0]
        else:
            j = below[0]
            t = (f[j - 1] - 0.5) / (f[j - 1] - f[j])
            out[m] = r[j - 1] + t * (r[j] - r[j - 1])
    return np.exp(out)


def probe_r2(H: torch.Tensor, targets: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Linear decodability of each target from a batched representation.

    ``H (M, N, w)`` (one representation per network), ``targets (N, T)``. Fits a ridge-regularised
    least-squares probe with bias per network and target, on all ``N`` rows (the bit tasks use
    every input), and returns the coefficient of determination ``R^2``: ``(M, T)``, 1 = the
    target is an exact linear function of the representation, 0 = no linear trace of it.
    """
    H = H.detach().double()
    M, N, w = H.shape
    Y = torch.as_tensor(targets, dtype=torch.float64)
    if Y.dim() == 1:
        Y = Y[:, None]
    if Y.shape[0] != N:
        raise ValueError(f"targets have {Y.shape[0]} rows but the representation has {N}")
    A = torch.cat([H, torch.ones(M, N, 1, dtype=torch.float64)], dim=-1)
    gram = A.transpose(1, 2) @ A + ridge * N * torch.eye(w + 1, dtype=torch.float64)
    coef = torch.linalg.solve(gram, A.transpose(1, 2) @ Y.expand(M, N, -1))
    resid = Y - A @ coef
    ss_res = (resid ** 2).sum(1)
    ss_tot = ((Y - Y.mean(0)) ** 2).sum(0)
    return (1 - ss_res / ss_tot).clamp(min=0).numpy()


@torch.no_grad()
def stream_probe_profile(model: BatchedResMLP, X: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """``R^2`` of linear probes for each target at every stream position (after 0..L blocks):
    ``(M, L + 1, T)``. Where a sub-target's ``R^2`` rises is where it is computed."""
    _, streams = model.stream(model.embed(X), return_all=True)
    return np.stack([probe_r2(h, targets) for h in streams], axis=1)


@torch.no_grad()
def subtarget_damage(model: BatchedResMLP, X: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """Per-block ablation measured against sub-targets.

    For each block ``l``, delete it and refit linear probes for each sub-target (e.g. ``g(x_a)``
    and ``h(x_b)`` of the parallel task) on the final stream. The damage of block ``l`` to
    target ``t`` is ``R^2_t(intact) - R^2_t(block l deleted)``. (Probing the stream rather than
    reading the output avoids a confound of ``y = g XOR h``: losing ``h`` also hides ``g`` from
    the output.)

    ``X (N, d_in)``, ``targets (N, T)`` -> damage ``(M, L, T)``.
    """
    L = model.n_blocks
    base = probe_r2(model.stream(model.embed(X)), targets)
    out = []
    for l in range(L):
        keep = torch.ones(L)
        keep[l] = 0
        out.append(base - probe_r2(model.stream(model.embed(X), keep=keep), targets))
    return np.stack(out, axis=1)


@torch.no_grad()
def subproblem_energy(model: BatchedResMLP, X: torch.Tensor, a_idx: np.ndarray, b_idx: np.ndarray,
                      keep=None) -> np.ndarray:
    """Which sub-problem each block works on: a two-way ANOVA of what the block writes.

    The input is split into two halves with values ``a`` (``x_a``, index ``a_idx (N,)``) and
    ``b`` (``x_b``, ``b_idx (N,)``); ``X`` must hold every ``(a, b)`` pair once. Block ``l``
    writes ``delta_l(a, b) = h_{l+1} - h_l`` (``(M, N, w)``) into the stream. Its energy splits
    exactly into a part that depends on ``a`` only (row means), on ``b`` only (column means) and
    on both together (the interaction): ``||delta - mean||^2 = E_a + E_b + E_ab``.

    Work on ``g(x_a)`` of the parallel task shows up as ``E_a``, work on ``h(x_b)`` as ``E_b``,
    combining them as ``E_ab``. Returns the shares ``(M, L, 3)`` (``E_a, E_b, E_ab`` over their
    sum), with deleted blocks (``keep``) left at zero.
    """
    na, nb = int(a_idx.max()) + 1, int(b_idx.max()) + 1
    if len(a_idx) != na * nb or len(set(zip(a_idx.tolist(), b_idx.tolist()))) != na * nb:
        raise ValueError("X must contain every (x_a, x_b) pair exactly once")
    _, streams = model.stream(model.embed(X), keep=keep, return_all=True)
    M, L = model.n_models, model.n_blocks
    out = np.zeros((M, L, 3))
    order = np.lexsort((b_idx, a_idx))  # rows sorted by (a, b)
    for l in range(L):
        d = (streams[l + 1] - streams[l]).double().numpy()[:, order].reshape(M, na, nb, -1)
        d = d - d.mean(axis=(1, 2), keepdims=True)
        ra = d.mean(axis=2, keepdims=True)
        cb = d.mean(axis=1, keepdims=True)
        inter = d - ra - cb
        e = np.stack([(ra ** 2).sum((1, 2, 3)) * nb, (cb ** 2).sum((1, 2, 3)) * na,
                      (inter ** 2).sum((1, 2, 3))], axis=-1)
        tot = e.sum(-1, keepdims=True)
        out[:, l] = np.where(tot > 0, e / np.where(tot > 0, tot, 1), 0)
    return out


def block_energy(model: BatchedResMLP, X: torch.Tensor) -> np.ndarray:
    """Mean squared size of each block's write ``h_{l+1} - h_l``: ``(M, L)``."""
    with torch.no_grad():
        _, streams = model.stream(model.embed(X), return_all=True)
        return np.stack([((streams[l + 1] - streams[l]) ** 2).sum(-1).mean(-1).numpy()
                         for l in range(model.n_blocks)], axis=1)


def profile_depth(damage: np.ndarray) -> np.ndarray:
    """Centre of mass (block index, 0-based) of a damage profile ``(M, L)`` -> ``(M,)``;
    negative damage counts as zero; ``nan`` where no block does any damage."""
    w = np.clip(damage, 0, None)
    tot = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, (w * np.arange(damage.shape[1])).sum(1) / tot, np.nan)
