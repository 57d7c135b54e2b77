"""Parallel-circuit placements and the short-depth bias (chapter 04): what the chapter runs.

Pope's claim in the 2023 thread: a problem that two parallel circuits of depth n/2 can solve is
implemented by more parameter settings than one needing a serial circuit of depth n, because the
parallel circuits can sit at many relative depths. Three experiments, one section each; every
``run_*`` function returns tidy tables (``pandas.DataFrame``) that the notebook saves and that
``analysis.py`` and ``plots.py`` read back.

1. **Placement counts** (:func:`placement_table`, from :func:`placement_counts`, checked by
   :func:`brute_force_placements`): how many ways one serial chain of ``n`` steps, or ``k``
   parallel chains of ``n/k`` steps, fit into a residual stream of ``L`` blocks.
2. **Veit et al. in miniature** (:func:`run_veit`): residual and plain MLPs
   (:class:`countingargs.nets.resmlp.BatchedResMLP`) on ``load_digits``; block deletion,
   reordering, and the gradient carried by paths of each length (:func:`path_length_profile`).
3. **Serial vs parallel Boolean tasks** (:func:`run_bits`): training to a matched loss
   (:func:`train_to_loss`), local volume and LLC of the solutions, and where the two halves of
   the parallel task are computed (:func:`subproblem_energy`).

Shapes use ``M`` networks, ``L`` blocks, ``B`` examples, ``w`` the stream width.

The heavy loops (the batched trainings of many seeds, the LLC chains) are chunks of
:func:`countingargs.chunks.map_chunks`: groups of networks trained (or sampled) together in one
batched tensor, each network's randomness keyed by its own seed index, so the results are the
same whatever the grouping and wherever the chunks run (in process or on a Dask cluster;
``scheduler=None`` reads ``COUNTINGARGS_SCHEDULER``).
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ...chunks import map_chunks
from ...estimators import llc
from ...estimators.probes import ridge_r2_insample
from ...estimators.volume import local_volume_batch
from ...nets import losses, resmlp
from ...nets.resmlp import BatchedResMLP
from ...nets.seeding import counter_minibatch, seed_int
from ...nets.train import train_until

#: the first key of every seed this chapter derives (:func:`countingargs.nets.seeding.seed_int`)
CHAPTER = "04_depth"

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


def placement_table(ns: Sequence[int], L_max: int) -> pd.DataFrame:
    """One row per ``(n, L)`` with ``n <= L <= L_max``: the three counts of
    :func:`placement_counts` (as floats: they exceed 64-bit integers for large ``L``) and the
    ratios ``ratio_shared``, ``ratio_disjoint`` (parallel over serial)."""
    rows = []
    for n in ns:
        for L in range(n, L_max + 1):
            c = placement_counts(L, n)
            rows.append({"L": L, "n": n, **c, "ratio_shared": c["parallel_shared"] / c["serial"],
                         "ratio_disjoint": c["parallel_disjoint"] / c["serial"]})
    return pd.DataFrame(rows)


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
    diffs = [means[i] - means[j] for i in range(len(combos)) for j in range(len(combos))
             if shared or not (sets[i] & sets[j])]
    if not diffs:
        raise ValueError(f"no disjoint placements of two chains of {m} in {L} blocks")
    vals, counts = np.unique(np.round(np.array(diffs), 9), return_counts=True)
    return vals, counts / counts.sum()


def reference_sd(L: int, m: int) -> float:
    """Standard deviation of :func:`relative_depth_reference` ``(L, m)`` (shared blocks)."""
    vals, probs = relative_depth_reference(L, m)
    return float(np.sqrt((probs * vals ** 2).sum()))


# ----------------------------------------------------------------------------------------------
# 2. Veit et al. in miniature
# ----------------------------------------------------------------------------------------------


def train_classifier(net: BatchedResMLP, X: torch.Tensor, y: torch.Tensor, steps: int,
                     lr: float, batch_size: int, seed: int, desc: str = "",
                     net_ids: Sequence[int] | None = None) -> BatchedResMLP:
    """Adam on each network's mean cross-entropy over its own mini-batches, for ``steps``
    steps (no stopping rule). ``X (N, d_in)``, ``y (N,)`` class indices. Network ``i``'s
    mini-batch at step ``t`` (``batch_size`` examples without replacement) depends only on
    ``(seed, net_ids[i], t)`` (:func:`countingargs.nets.seeding.counter_minibatch`; ``net_ids``
    defaults to ``0..M-1``: pass the networks' indices in the whole experiment when training a
    group of them). Returns a new module."""
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    n = X.shape[0]
    gids = torch.arange(net.n_models) if net_ids is None else torch.as_tensor(list(net_ids), dtype=torch.long)
    if gids.shape != (net.n_models,):
        raise ValueError(f"net_ids needs {net.n_models} ids, got {len(gids)}")

    def loss_fn(params, ids, step):
        idx = counter_minibatch(seed, gids[ids], step, n, batch_size)
        logits = resmlp.forward(resmlp.as_params(params), X[idx], net.residual)
        return losses.cross_entropy(logits, y[idx])

    out = train_until(list(net.detached().values()), loss_fn, lr=lr, max_steps=steps, desc=desc)
    return BatchedResMLP.from_params(out.params, net.residual)


@torch.no_grad()
def error_rate(net: BatchedResMLP, X: torch.Tensor, y: torch.Tensor, keep=None, order=None) -> np.ndarray:
    """Per-network classification error ``(M,)`` on ``X (N, d_in)``, ``y (N,)``."""
    pred = net(X, keep=keep, order=order).argmax(-1)
    return (pred != y).float().mean(-1).numpy()


@torch.no_grad()
def single_deletion_errors(net: BatchedResMLP, X, y) -> np.ndarray:
    """Error after deleting each single block: ``(M, L + 1)``, column 0 = nothing deleted."""
    L = net.n_blocks
    cols = [error_rate(net, X, y)]
    for b in range(L):
        keep = torch.ones(L)
        keep[b] = 0
        cols.append(error_rate(net, X, y, keep=keep))
    return np.stack(cols, axis=1)


@torch.no_grad()
def random_deletion_errors(net: BatchedResMLP, X, y, ks: Sequence[int], n_draws: int,
                           seed: int) -> np.ndarray:
    """Error after deleting ``k`` random blocks (own draw per network): ``(len(ks), n_draws, M)``."""
    M, L = net.n_models, net.n_blocks
    g = torch.Generator().manual_seed(int(seed))
    out = np.zeros((len(ks), n_draws, M))
    for i, k in enumerate(ks):
        if not 0 <= k <= L:
            raise ValueError(f"cannot delete {k} of {L} blocks")
        for d in range(n_draws):
            ranks = torch.rand(M, L, generator=g).argsort(dim=1).argsort(dim=1)
            out[i, d] = error_rate(net, X, y, keep=(ranks >= k).float())
    return out


@torch.no_grad()
def reorder_errors(net: BatchedResMLP, X, y, n_swaps: Sequence[int], n_draws: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Error after corrupting the block order by ``s`` random transpositions (of any two blocks).

    For each ``s`` in ``n_swaps`` and each draw, every network gets its own permutation made of
    ``s`` random transpositions of the identity. Returns ``(errors, kendall_tau)``, both
    ``(len(n_swaps), n_draws, M)``; Kendall's tau compares the permutation with the identity.
    """
    from scipy.stats import kendalltau

    M, L = net.n_models, net.n_blocks
    rng = np.random.default_rng(seed)
    err = np.zeros((len(n_swaps), n_draws, M))
    tau = np.zeros_like(err)
    r = np.arange(M)
    for i, s in enumerate(n_swaps):
        for d in range(n_draws):
            perms = np.tile(np.arange(L), (M, 1))
            for _ in range(s):
                a, b = rng.integers(0, L, M), rng.integers(0, L, M)
                perms[r, a], perms[r, b] = perms[r, b].copy(), perms[r, a].copy()
            err[i, d] = error_rate(net, X, y, order=torch.as_tensor(perms))
            tau[i, d] = [kendalltau(np.arange(L), p)[0] if s else 1.0 for p in perms]
    return err, tau


def path_gradient(net: BatchedResMLP, X: torch.Tensor, y: torch.Tensor, grad_mode) -> torch.Tensor:
    """Gradient ``(M, B, w)`` of the summed per-example cross-entropy with respect to the stream
    input ``h0``, after an ordinary forward pass, flowing only where ``grad_mode`` (``(L,)`` or
    ``(M, L)``, see :func:`countingargs.nets.resmlp.stream`) allows."""
    h0 = net.embed(X).detach().requires_grad_(True)
    logits = net.head(net.stream(h0, grad_mode=grad_mode))
    loss = losses.cross_entropy(logits, y).sum() * X.shape[0]  # per-example losses summed
    (g,) = torch.autograd.grad(loss, h0)
    return g


def path_length_profile(net: BatchedResMLP, X, y, n_samples: int, seed: int) -> np.ndarray:
    """Veit et al.'s sampling: for each path length ``k = 0..L`` and each sample, pick ``k``
    blocks at random (own draw per network), backpropagate through their branches only and
    through the skips of all other blocks (exactly one path), and record the mean over examples
    of the gradient norm at the stream's input.

    Returns the mean gradient norm of a single path of length ``k``: ``(L + 1, M)``. Multiply by
    ``C(L, k)`` (the number of such paths) for the total gradient carried at length ``k``.
    """
    M, L = net.n_models, net.n_blocks
    g = torch.Generator().manual_seed(int(seed))
    out = np.zeros((L + 1, M))
    for k in range(L + 1):
        for _ in range(n_samples):
            ranks = torch.rand(M, L, generator=g).argsort(dim=1).argsort(dim=1)
            out[k] += path_gradient(net, X, y, (ranks < k).long()).norm(dim=-1).mean(-1).numpy()
    return out / n_samples


def digits_data():
    """The book's fixed stratified split of ``load_digits`` (:func:`countingargs.data.digits.digits_split`):
    the training pool and the validation set together train (no early stopping here), the test
    set is held out. Returns ``(X_train, y_train, X_test, y_test)``."""
    from ...data.digits import digits_split

    d = digits_split()
    return (torch.cat([d.x_pool, d.x_val]), torch.cat([d.y_pool, d.y_val]), d.x_test, d.y_test)


def path_table(nets: dict[str, BatchedResMLP], X, y, n_samples: int, seed: int) -> pd.DataFrame:
    """Veit et al.'s path profile of each residual network in ``nets`` (state name -> networks,
    e.g. ``{"init": ..., "trained": ...}``), with the same random block choices for every state.
    One row per state x seed x path length ``k``: ``grad_per_path`` (one path's gradient norm),
    ``n_paths`` (``C(L, k)``), ``grad_total`` (their product) and ``share`` (of the total over k)."""
    rows = []
    for state, net in nets.items():
        L = net.n_blocks
        prof = path_length_profile(net, X, y, n_samples, seed)
        npaths = np.array([math.comb(L, k) for k in range(L + 1)], dtype=float)
        total = prof * npaths[:, None]
        share = total / total.sum(0, keepdims=True)
        rows += [{"state": state, "seed": s, "k": k, "grad_per_path": prof[k, s], "n_paths": npaths[k],
                  "grad_total": total[k, s], "share": share[k, s]}
                 for s in range(net.n_models) for k in range(L + 1)]
    return pd.DataFrame(rows)


def seed_groups(n: int, size: int) -> list[tuple[int, int]]:
    """Seeds ``0..n-1`` cut into consecutive groups of at most ``size``: ``[(first, count), ...]``."""
    if size < 1:
        raise ValueError(f"a group needs at least one seed, got size {size}")
    return [(a, min(size, n - a)) for a in range(0, n, size)]


def _numpy_params(net: BatchedResMLP) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in net.detached().items()}


def _join_params(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Parameter dicts of consecutive groups of networks joined along the network dimension."""
    return {k: torch.from_numpy(np.concatenate([q[k] for q in parts])) for k in resmlp.PARAM_NAMES}


def veit_chunk(seed: int, chunk: int, residual: bool, first: int, n: int, blocks: int, width: int,
               steps: int, lr: float, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Train the digits classifiers of seeds ``first .. first + n - 1`` of one architecture
    together (:func:`train_classifier`; ``seed``: the mini-batch stream, keyed per network by
    its seed index). Returns the trained parameters (numpy, by name)."""
    Xtr, ytr, _, _ = digits_data()
    ids = list(range(first, first + n))
    init = BatchedResMLP(n, 64, width, blocks, 10, residual=residual,
                         seeds=[seed_int(CHAPTER, "veit-init", s) for s in ids])
    arch = "residual" if residual else "plain"
    net = train_classifier(init, Xtr, ytr, steps, lr, batch_size, seed, net_ids=ids,
                           desc=f"digits {arch} {first}-{first + n - 1}")
    return _numpy_params(net)


def run_veit(seeds: int, blocks: int, width: int, steps: int, lr: float, draws: int,
             path_samples: int, n_path_images: int = 256, seeds_per_chunk: int = 8,
             scheduler: str | None = None) -> dict[str, pd.DataFrame]:
    """Train residual and plain MLPs on ``load_digits`` and lesion them.

    The training runs as chunks of :func:`veit_chunk` (``seeds_per_chunk`` networks of one
    architecture each, on ``scheduler``); the lesions and path profiles of all networks
    follow in this process.

    Returns the tables ``veit_setup`` (one row: sizes), ``veit_single_deletion`` (arch, seed,
    deleted_block (-1 = none), error), ``veit_random_deletion`` (arch, seed, k, draw, error),
    ``veit_reorder`` (arch, seed, swaps, draw, kendall_tau, error) and ``veit_path_gradients``
    (:func:`path_table` of the residual networks at initialisation and after training).
    """
    _, ytr, Xte, yte = digits_data()
    archs = [("residual", True), ("plain", False)]
    groups = seed_groups(seeds, seeds_per_chunk)
    batches = seed_int(CHAPTER, "veit-batches")
    chunks = [dict(seed=batches, chunk=i, residual=res, first=a, n=m, blocks=blocks, width=width,
                   steps=steps, lr=lr)
              for i, ((_, res), (a, m)) in enumerate(itertools.product(archs, groups))]
    done = map_chunks(veit_chunk, chunks, name="depth-veit", scheduler=scheduler).results
    nets, init = {}, {}
    for j, (arch, residual) in enumerate(archs):
        init[arch] = BatchedResMLP(seeds, 64, width, blocks, 10, residual=residual,
                                   seeds=[seed_int(CHAPTER, "veit-init", s) for s in range(seeds)])
        part = done[j * len(groups):(j + 1) * len(groups)]
        nets[arch] = BatchedResMLP.from_params(_join_params(part), residual)
    single, rand_del, reorder = [], [], []
    swaps = [0, 1, 2, 4, 8, 16]
    for arch, net in nets.items():
        e = single_deletion_errors(net, Xte, yte)
        single += [{"arch": arch, "seed": s, "deleted_block": b - 1, "error": e[s, b]}
                   for s in range(seeds) for b in range(blocks + 1)]
        r = random_deletion_errors(net, Xte, yte, range(blocks + 1), draws, seed_int(CHAPTER, "deletion"))
        rand_del += [{"arch": arch, "seed": s, "k": k, "draw": d, "error": r[k, d, s]}
                     for k in range(blocks + 1) for d in range(draws) for s in range(seeds)]
        er, tau = reorder_errors(net, Xte, yte, swaps, draws, seed_int(CHAPTER, "reorder"))
        reorder += [{"arch": arch, "seed": s, "swaps": sw, "draw": d, "kendall_tau": tau[i, d, s],
                     "error": er[i, d, s]}
                    for i, sw in enumerate(swaps) for d in range(draws) for s in range(seeds)]
    paths = path_table({"init": init["residual"], "trained": nets["residual"]}, Xte[:n_path_images],
                       yte[:n_path_images], path_samples, seed_int(CHAPTER, "paths"))
    setup = {"n_params": nets["residual"].n_params(), "n_train": len(ytr), "n_test": len(yte),
             "n_digits": len(ytr) + len(yte), "n_path_images": min(n_path_images, len(yte))}
    return {"veit_setup": pd.DataFrame([setup]), "veit_single_deletion": pd.DataFrame(single),
            "veit_random_deletion": pd.DataFrame(rand_del), "veit_reorder": pd.DataFrame(reorder),
            "veit_path_gradients": paths}


# ----------------------------------------------------------------------------------------------
# 3. One function, two implementations
# ----------------------------------------------------------------------------------------------

N_BITS = 8

#: what the stream must hold, and where: ``(position, subset)`` pairs, where position ``k`` is
#: the stream after ``k`` blocks and ``subset`` the bits (0-based) whose parity a linear head must
#: read there. Every implementation has six intermediate values (seven XOR gates in all, the last
#: one producing the output); they differ only in which XORs feed which.
IMPLEMENTATIONS: dict[str, tuple[tuple[int, tuple[int, ...]], ...]] = {
    # one chain: x1^x2, then ^x3, ..., then ^x7 after block 6; the output adds x8
    "serial": tuple((k, tuple(range(k + 1))) for k in range(1, 7)),
    # two chains of three XORs side by side (blocks 1-3), joined by the output
    "parallel": tuple((k, tuple(range(k + 1))) for k in range(1, 4))
    + tuple((k, tuple(range(4, 5 + k))) for k in range(1, 4)),
    # the same two chains one after the other (blocks 1-3, then 4-6): the depth footprint of the
    # serial chain, the dependency structure of the parallel one
    "staggered": tuple((k, tuple(range(k + 1))) for k in range(1, 4))
    + tuple((k + 3, tuple(range(4, 5 + k))) for k in range(1, 4)),
    # no intermediate targets: what training finds on its own
    "free": (),
}


def subset_parity(X: torch.Tensor, subset: Sequence[int]) -> torch.Tensor:
    """XOR of the bits ``subset`` of ``X (N, n)`` in {-1, +1} (``+1`` = bit 1), as ``(N,)`` in
    {-1, +1}."""
    bits = (X[:, list(subset)] > 0).long()
    return (2 * (bits.sum(1) % 2) - 1).to(X.dtype)


def parity_data() -> tuple[torch.Tensor, torch.Tensor]:
    """All ``2**8`` inputs ``X (256, 8)`` in {-1, +1} (book's bit order) and their parity ``y (256,)``."""
    from ...data.cube import cube, pm

    X = pm(cube(N_BITS))
    return X, subset_parity(X, range(N_BITS))


def aux_targets(X: torch.Tensor, plan) -> tuple[list[int], torch.Tensor]:
    """Positions ``[k, ...]`` and targets ``Z (N, T)`` of an implementation plan."""
    if not plan:
        return [], torch.zeros(X.shape[0], 0)
    return [k for k, _ in plan], torch.stack([subset_parity(X, s) for _, s in plan], 1)


def _aux_logits(streams: list[torch.Tensor], heads: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """Linear heads ``(M, T, w + 1)`` reading stream position ``positions[t]``: ``(M, T, N)``."""
    S = torch.stack([streams[k] for k in positions], 1)                     # (M, T, N, w)
    w = S.shape[-1]
    return torch.einsum("mtnw,mtw->mtn", S, heads[..., :w]) + heads[..., w:]


def _never_alone(ps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A batch of one network as a pair with a (detached) copy of itself; larger batches as
    they are. On CPU a batched product of one network takes another kernel than the same
    product in a batch of several (``baddbmm`` of a ``(1, N, w)`` stream with a ``(1, w, 1)``
    head, and the heads' ``einsum``, round differently), so a network left alone in its batch
    (its group's last to reach the target) would train differently according to its batch mates;
    computed as a pair it gets the numbers it gets in any larger batch. The callers keep the
    first row."""
    ps = list(ps)
    return [torch.cat([q, q.detach()]) for q in ps] if ps[0].shape[0] == 1 else ps


def train_implementation(X: torch.Tensor, y: torch.Tensor, plan, width: int, blocks: int,
                         seeds: Sequence[int], head_seeds: Sequence[int], target_loss: float,
                         max_steps: int, lr: float, aux_weight: float, desc: str = ""):
    """Train ``M = len(seeds)`` residual MLPs on ``y`` with the intermediate targets of ``plan``.

    The loss is the main logistic loss plus ``aux_weight`` times the logistic losses of linear
    heads reading the stream at the plan's positions (heads ``(M, T, w + 1)``, network ``i``'s
    drawn from ``head_seeds[i]``). A network is frozen (:func:`countingargs.nets.train.train_until`)
    at the first full-batch Adam step where its main loss is ``<= target_loss`` and the output
    and every head classify every input correctly. The heads are then dropped.

    Returns ``(network (BatchedResMLP), reached (M,) bool, steps (M,), initial parameters)``.
    """
    if max(k for k, _ in plan or [(0, ())]) > blocks:
        raise ValueError(f"the plan reads stream positions beyond the {blocks} blocks")
    positions, Z = aux_targets(X, plan)
    p0 = resmlp.init_params(len(seeds), X.shape[1], width, blocks, 1, seeds)
    params = list(p0.values())
    if positions:
        heads = [torch.randn(len(positions), width + 1, generator=torch.Generator().manual_seed(int(s))) * 0.1
                 for s in head_seeds]
        params.append(torch.stack(heads))
    zt = Z.T                                                                  # (T, N)

    def parts(ps):
        m = ps[0].shape[0]
        ps = _never_alone(ps)
        p = resmlp.as_params(ps)
        h, streams = resmlp.stream(p, resmlp.embed(p, X), return_all=True)
        f = resmlp.head(p, h).squeeze(-1)                                     # (M, N)
        a = _aux_logits(streams, ps[8], positions) if positions else None     # (M, T, N)
        return f[:m], (a[:m] if a is not None else None)

    def loss_fn(ps, ids, step):
        f, a = parts(ps)
        loss = losses.logistic(f, y)
        if a is not None:
            m, t, n = a.shape
            aux = losses.logistic(a.reshape(m * t, n), zt.repeat(m, 1)).reshape(m, t).sum(1)
            loss = loss + aux_weight * aux
        return loss

    def reached(ps, ids, step):
        f, a = parts(ps)
        ok = (losses.logistic(f, y) <= target_loss) & ((f * y) > 0).all(-1)
        if a is not None:
            ok &= ((a * zt) > 0).flatten(1).all(-1)
        return ok

    out = train_until(params, loss_fn, lr=lr, max_steps=max_steps, reached=reached, desc=desc)
    net = BatchedResMLP.from_params(out.params[:len(resmlp.PARAM_NAMES)])
    return net, out.reached, out.steps, p0


@torch.no_grad()
def match_loss(net: BatchedResMLP, X: torch.Tensor, y: torch.Tensor, target_loss: float) -> np.ndarray:
    """Scale each network's output layer (``w_out``, ``b_out``) by the factor ``c > 0`` that puts
    its logistic loss at exactly ``target_loss`` (bisection on ``log c``; the loss falls with
    ``c`` when every input is classified correctly). Modifies ``net``; returns ``c (M,)``.
    Networks that misclassify an input are left as they are (``c = nan``)."""
    f = net(X).squeeze(-1)                                                   # (M, N)
    ok = ((f * y) > 0).all(-1)
    lo, hi = torch.full((net.n_models,), -10.0), torch.full((net.n_models,), 10.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        above = losses.logistic(torch.exp(mid)[:, None] * f, y) >= target_loss
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    c = torch.where(ok, torch.exp((lo + hi) / 2), torch.ones_like(lo))
    net.w_out.mul_(c.view(-1, 1, 1))
    net.b_out.mul_(c.view(-1, 1, 1))
    return torch.where(ok, c, torch.full_like(c, float("nan"))).numpy()


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


@torch.no_grad()
def subproblem_energy(net: BatchedResMLP, X: torch.Tensor, a_idx: np.ndarray, b_idx: np.ndarray,
                      keep=None) -> np.ndarray:
    """Which sub-problem each block works on: a two-way ANOVA of what the block writes.

    The input is split into two halves with values ``a`` (``x_a``, index ``a_idx (N,)``) and
    ``b`` (``x_b``, ``b_idx (N,)``); ``X`` must hold every ``(a, b)`` pair once. Block ``l``
    writes ``delta_l(a, b) = h_{l+1} - h_l`` (``(M, N, w)``) into the stream. Its energy splits
    exactly into a part that depends on ``a`` only (row means), on ``b`` only (column means) and
    on both together (the interaction): ``||delta - mean||^2 = E_a + E_b + E_ab``.

    Returns the shares ``(M, L, 3)`` (``E_a, E_b, E_ab`` over their sum), with deleted blocks
    (``keep``) left at zero.
    """
    na, nb = int(a_idx.max()) + 1, int(b_idx.max()) + 1
    if len(a_idx) != na * nb or len(set(zip(a_idx.tolist(), b_idx.tolist()))) != na * nb:
        raise ValueError("X must contain every (x_a, x_b) pair exactly once")
    _, streams = net.stream(net.embed(X), keep=keep, return_all=True)
    M, L = net.n_models, net.n_blocks
    out = np.zeros((M, L, 3))
    order = np.lexsort((b_idx, a_idx))  # rows sorted by (a, b)
    for b in range(L):
        d = (streams[b + 1] - streams[b]).double().numpy()[:, order].reshape(M, na, nb, -1)
        d = d - d.mean(axis=(1, 2), keepdims=True)
        ra = d.mean(axis=2, keepdims=True)
        cb = d.mean(axis=1, keepdims=True)
        inter = d - ra - cb
        e = np.stack([(ra ** 2).sum((1, 2, 3)) * nb, (cb ** 2).sum((1, 2, 3)) * na,
                      (inter ** 2).sum((1, 2, 3))], axis=-1)
        tot = e.sum(-1, keepdims=True)
        out[:, b] = np.where(tot > 0, e / np.where(tot > 0, tot, 1), 0)
    return out


@torch.no_grad()
def block_energy(net: BatchedResMLP, X: torch.Tensor) -> np.ndarray:
    """Mean squared size of each block's write ``h_{l+1} - h_l``: ``(M, L)``."""
    _, streams = net.stream(net.embed(X), return_all=True)
    return np.stack([((streams[b + 1] - streams[b]) ** 2).sum(-1).mean(-1).numpy()
                     for b in range(net.n_blocks)], axis=1)


def _norm(p: dict) -> np.ndarray:
    return torch.sqrt(sum((v.detach() ** 2).flatten(1).sum(1) for v in p.values())).numpy()


def _task_data(task: str) -> tuple[torch.Tensor, torch.Tensor]:
    if task == "parity":
        return parity_data()
    if task == "halves":
        t = bit_tasks()
        return t["X"], t["y_halves"]
    raise ValueError(f"unknown task {task!r}; valid: 'parity', 'halves'")


def implementation_chunk(seed: int, chunk: int, task: str, condition: str, width: int, blocks: int,
                         init_seeds: Sequence[int], head_seeds: Sequence[int], target_loss: float,
                         max_steps: int, lr: float, aux_weight: float, desc: str = "") -> dict:
    """:func:`train_implementation` of one group of networks (``init_seeds``, ``head_seeds``:
    one each) on ``task`` (``"parity"``: :func:`parity_data`; ``"halves"``: the two-halves task
    of :func:`bit_tasks`) with the plan ``IMPLEMENTATIONS[condition]``. Returns ``params``
    (numpy, by name), ``reached`` and ``steps`` (``(M,)``). ``seed``: the first network's."""
    X, y = _task_data(task)
    net, ok, steps, _ = train_implementation(X, y, IMPLEMENTATIONS[condition], width, blocks,
                                             init_seeds, head_seeds, target_loss, max_steps, lr,
                                             aux_weight, desc=desc)
    return {"params": _numpy_params(net), "reached": ok, "steps": steps}


def _implementation_chunks(task: str, condition: str, width: int, blocks: int,
                           init_seeds: Sequence[int], head_seeds: Sequence[int], target_loss: float,
                           max_steps: int, lr: float, aux_weight: float, seeds_per_chunk: int,
                           desc: str) -> list[dict]:
    return [dict(seed=int(init_seeds[a]), task=task, condition=condition, width=int(width),
                 blocks=int(blocks), init_seeds=[int(s) for s in init_seeds[a:a + m]],
                 head_seeds=[int(s) for s in head_seeds[a:a + m]], target_loss=target_loss,
                 max_steps=max_steps, lr=lr, aux_weight=aux_weight,
                 desc=f"{desc} {a}-{a + m - 1}" if desc else "")
            for a, m in seed_groups(len(init_seeds), seeds_per_chunk)]


def _joined_implementations(task: str, width: int, blocks: int, init_seeds: Sequence[int],
                            parts: Sequence[dict]):
    """What :func:`train_implementation` returns, from the results of its chunks (in order)."""
    X, _ = _task_data(task)
    net = BatchedResMLP.from_params(_join_params([r["params"] for r in parts]))
    ok = np.concatenate([r["reached"] for r in parts])
    steps = np.concatenate([r["steps"] for r in parts])
    p0 = resmlp.init_params(len(init_seeds), X.shape[1], width, blocks, 1, init_seeds)
    return net, ok, steps, p0


def train_parity(conditions: Sequence[str], widths: Sequence[int], seeds: int, blocks: int,
                 target_loss: float, max_steps: int, lr: float, aux_weight: float,
                 other_width_conditions: Sequence[str] = ("serial", "parallel"),
                 seeds_per_chunk: int = 40, scheduler: str | None = None):
    """Train every implementation in ``conditions`` (keys of :data:`IMPLEMENTATIONS`) of 8-bit
    parity at the first width, and those in ``other_width_conditions`` at the other widths (the
    next size up), from the same initial weights per seed and width, and put every network that
    reached the target at exactly ``target_loss`` (:func:`match_loss`).

    The trainings run as chunks of :func:`implementation_chunk` (``seeds_per_chunk`` networks
    of one condition and width each, on ``scheduler``).

    Returns ``(table, nets)``: ``parity_training`` with one row per condition x width x seed
    (``n_params, reached, steps_to_target`` (-1 = never), ``loss_frozen`` (at the freeze),
    ``out_scale`` (the factor of :func:`match_loss`), ``final_loss``, ``param_norm`` and
    ``dist_init`` (Euclidean, all parameters)), and ``{(condition, width): BatchedResMLP}``.
    """
    bad = [c for c in [*conditions, *other_width_conditions] if c not in IMPLEMENTATIONS]
    if bad:
        raise ValueError(f"unknown conditions {bad}; valid: {sorted(IMPLEMENTATIONS)}")
    X, y = parity_data()
    cells = [(width, cond) for width in widths
             for cond in (conditions if width == widths[0] else other_width_conditions)]
    init = {w: [seed_int(CHAPTER, "parity-init", w, s) for s in range(seeds)] for w in widths}
    heads = {w: [seed_int(CHAPTER, "parity-heads", w, s) for s in range(seeds)] for w in widths}
    chunks, spans = [], []
    for width, cond in cells:
        cs = _implementation_chunks("parity", cond, width, blocks, init[width], heads[width],
                                    target_loss, max_steps, lr, aux_weight, seeds_per_chunk,
                                    desc=f"{cond} w={width}")
        spans.append((len(chunks), len(chunks) + len(cs)))
        chunks += cs
    done = map_chunks(implementation_chunk, [dict(c, chunk=i) for i, c in enumerate(chunks)],
                      name="depth-parity", scheduler=scheduler).results
    rows, nets = [], {}
    for (width, cond), (a, b) in zip(cells, spans):
        net, ok, steps, p0 = _joined_implementations("parity", width, blocks, init[width], done[a:b])
        with torch.no_grad():
            frozen = losses.logistic(net(X), y).numpy()
        scale = match_loss(net, X, y, target_loss)
        with torch.no_grad():
            final = losses.logistic(net(X), y).numpy()
        norm = _norm(net.detached())
        dist = _norm({k: net.detached()[k] - p0[k] for k in p0})
        rows += [{"condition": cond, "width": width, "seed": s, "n_params": net.n_params(),
                  "reached": bool(ok[s]), "steps_to_target": int(steps[s]) if ok[s] else -1,
                  "loss_frozen": frozen[s], "out_scale": scale[s], "final_loss": final[s],
                  "param_norm": norm[s], "dist_init": dist[s]} for s in range(seeds)]
        nets[(cond, width)] = net
    return pd.DataFrame(rows), nets


def measure_volume(nets: dict, radii: Sequence[float], tol: float, n_samples: int) -> dict[str, pd.DataFrame]:
    """Local volume (:func:`countingargs.estimators.volume.local_volume_batch`) of every network
    on the parity loss, with the same random directions for every network. Returns
    ``parity_volume`` (condition, width, seed, radius, frac_kept) and ``parity_r50``
    (condition, width, seed, r50: :func:`radius_at_half`)."""
    X, y = parity_data()
    vol, r50s = [], []
    for (cond, width), net in nets.items():
        frac = local_volume_batch(resmlp.loss_fn(X, y), net.detached(), radii, tol, n_samples=n_samples,
                                  seed=seed_int(CHAPTER, "volume", width))["fraction"]
        r50 = radius_at_half(radii, frac)
        vol += [{"condition": cond, "width": width, "seed": s, "radius": r, "frac_kept": frac[s, i]}
                for s in range(net.n_models) for i, r in enumerate(radii)]
        r50s += [{"condition": cond, "width": width, "seed": s, "r50": r50[s]} for s in range(net.n_models)]
    return {"parity_volume": pd.DataFrame(vol), "parity_r50": pd.DataFrame(r50s)}


def chain_drift(trace: np.ndarray, n_burnin: int, n_beta: float) -> np.ndarray:
    """Drift of LLC chains in LLC units: ``trace (K, C, burn-in + draws)`` of losses; the slope
    of the chain-mean loss over the draws (least squares), times the number of draws and
    ``n_beta``: how far the LLC estimate would move across the draw window. ``(K,)``."""
    draws = trace[:, :, n_burnin:].mean(1)                                    # (K, D)
    t = np.arange(draws.shape[1], dtype=float)
    t -= t.mean()
    slope = (draws * t).sum(1) / (t ** 2).sum()
    return slope * draws.shape[1] * n_beta


def llc_chunk(seed: int, chunk: int, params: dict, point_ids: Sequence[int], n_chains: int,
              step_size: float, localization: float, n_beta: float | None, n_burnin: int,
              n_draws: int) -> dict[str, np.ndarray]:
    """LLC of one group of parity networks (``params``: numpy arrays by name, leading dimension
    the networks), network ``k``'s chains drawing their noise from the stream
    ``(seed, "llc-point", point_ids[k])`` (:func:`countingargs.estimators.llc.estimate_llc_batch`),
    so a network's estimate does not depend on its group. Returns ``llc``, ``llc_chain_sd``,
    ``drift`` (:func:`chain_drift`), ``diverged`` (``(M,)`` each) and ``n_beta``."""
    X, y = parity_data()
    theta = {k: torch.from_numpy(np.array(v)) for k, v in params.items()}
    loss = resmlp.loss_fn(X, y)

    def loss_fn(th):  # one chain alone (one network, one chain) computed as a pair, see _never_alone
        m = next(iter(th.values())).shape[0]
        return loss(dict(zip(th, _never_alone(list(th.values())))))[:m]

    res = llc.estimate_llc_batch(loss_fn, theta, len(X), n_chains=n_chains, seed=seed,
                                 point_ids=list(point_ids), step_size=step_size,
                                 localization=localization, n_beta=n_beta, n_burnin=n_burnin,
                                 n_draws=n_draws)
    nb = res["settings"]["n_beta"]
    return {"llc": res["llc_mean"], "llc_chain_sd": res["llc_std"], "n_beta": nb,
            "drift": chain_drift(res["loss_trace"], n_burnin, nb), "diverged": res["diverged"]}


def measure_llc(nets: dict, conditions: Sequence[str], width: int, n_seeds: int,
                settings: dict[str, dict], n_chains: int, seeds_per_chunk: int = 16,
                scheduler: str | None = None) -> pd.DataFrame:
    """LLC (:func:`countingargs.estimators.llc.estimate_llc_batch`) of the first ``n_seeds``
    networks of each condition at ``width``, for each sampler setting (name -> keyword
    arguments ``step_size, localization, n_beta (None = n/log n), n_burnin, n_draws``). One row
    per setting x condition x seed: ``llc``, ``llc_chain_sd``, ``drift`` (:func:`chain_drift`),
    ``n_beta`` and ``diverged``.

    Chunks of :func:`llc_chunk`: ``seeds_per_chunk`` networks of one setting and condition
    each, on ``scheduler``. Network ``s``'s chains draw the noise stream of point id ``s`` under
    the setting's seed, whatever its chunk; the two conditions' networks of one seed share it
    (common random numbers for the paired difference)."""
    cells = [(name, cond) for name in settings for cond in conditions]
    groups = seed_groups(n_seeds, seeds_per_chunk)
    theta = {cond: {k: v[:n_seeds].numpy() for k, v in nets[(cond, width)].detached().items()}
             for cond in conditions}
    chunks = [dict(seed=seed_int(CHAPTER, "llc", name), params={k: v[a:a + m] for k, v in theta[cond].items()},
                   point_ids=list(range(a, a + m)), n_chains=n_chains, **settings[name])
              for name, cond in cells for a, m in groups]
    done = map_chunks(llc_chunk, [dict(c, chunk=i) for i, c in enumerate(chunks)], name="depth-llc",
                      scheduler=scheduler).results
    rows = []
    for j, (name, cond) in enumerate(cells):
        for (a, m), r in zip(groups, done[j * len(groups):(j + 1) * len(groups)]):
            rows += [{"setting": name, "condition": cond, "width": width, "seed": a + i, "llc": r["llc"][i],
                      "llc_chain_sd": r["llc_chain_sd"][i], "drift": r["drift"][i], "n_beta": r["n_beta"],
                      "diverged": bool(r["diverged"][i])} for i in range(m)]
    return pd.DataFrame(rows)


def llc_toys(settings: dict[str, dict], n: int, n_chains: int) -> pd.DataFrame:
    """The estimator on the toys of :data:`countingargs.estimators.llc.TOYS` (known learning
    coefficients) at each of the chapter's settings, with ``n`` setting ``n/log n`` where the
    setting leaves ``n_beta`` unset. One row per setting x toy x chain."""
    parts = []
    for name, kw in settings.items():
        df = llc.validate_on_toys(n, n_chains=n_chains, seed=seed_int(CHAPTER, "toys", name), **kw)
        parts.append(df.assign(setting=name))
    return pd.concat(parts, ignore_index=True)[["setting", "toy", "true_lambda", "multiplicity", "chain", "llc"]]


def subset_r2_profile(net: BatchedResMLP, X: torch.Tensor) -> dict[str, np.ndarray]:
    """For every stream position (after 0..L blocks) and every subset size ``k = 2..8``: the
    best in-sample ``R^2`` (:func:`countingargs.estimators.probes.ridge_r2_insample`; ``X`` is
    the whole cube) of a linear probe for the parity of any ``k`` of the 8 bits, and for ``k = 4``
    the best over splits of the bits into two halves of the smaller of the two halves' ``R^2``.
    Returns ``best (M, L + 1, 7)`` (sizes 2..8) and ``pair4 (M, L + 1)``."""
    subsets = [c for k in range(2, N_BITS + 1) for c in itertools.combinations(range(N_BITS), k)]
    Z = torch.stack([subset_parity(X, c) for c in subsets], 1)
    sizes = np.array([len(c) for c in subsets])
    index = {c: i for i, c in enumerate(subsets)}
    halves = [(index[c], index[tuple(sorted(set(range(N_BITS)) - set(c)))])
              for c in itertools.combinations(range(N_BITS), 4) if 0 in c]
    with torch.no_grad():
        _, streams = net.stream(net.embed(X), return_all=True)
    r2 = np.stack([ridge_r2_insample(h, Z).numpy() for h in streams], 1)     # (M, L+1, S)
    best = np.stack([r2[..., sizes == k].max(-1) for k in range(2, N_BITS + 1)], -1)
    pair4 = np.max([np.minimum(r2[..., a], r2[..., b]) for a, b in halves], axis=0)
    return {"best": best, "pair4": pair4}


def probe_implementations(nets: dict, width: int) -> pd.DataFrame:
    """:func:`subset_r2_profile` of every condition's networks at ``width``: one row per
    condition x seed x position x size ``k``, with ``best_r2`` and (for ``k = 4``) ``pair_r2``."""
    X, _ = parity_data()
    rows = []
    for (cond, w), net in nets.items():
        if w != width:
            continue
        pr = subset_r2_profile(net, X)
        M, P, K = pr["best"].shape
        rows += [{"condition": cond, "seed": s, "position": q, "k": k + 2, "best_r2": pr["best"][s, q, k],
                  "pair_r2": pr["pair4"][s, q] if k + 2 == 4 else np.nan}
                 for s in range(M) for q in range(P) for k in range(K)]
    return pd.DataFrame(rows)


def share_rows(net: BatchedResMLP, X: torch.Tensor, a_idx, b_idx, **labels) -> list[dict]:
    """Rows of per-block work shares (:func:`subproblem_energy`) and write energies
    (:func:`block_energy`), one per seed x block, with ``labels`` added to each."""
    sh = subproblem_energy(net, X, a_idx, b_idx)
    en = block_energy(net, X)
    return [{**labels, "seed": s, "block": b, "share_a": sh[s, b, 0], "share_b": sh[s, b, 1],
             "share_ab": sh[s, b, 2], "energy": en[s, b]}
            for s in range(net.n_models) for b in range(net.n_blocks)]


def _halves_index(X: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    bits = (X > 0).long().numpy()
    w = 2 ** np.arange(N_BITS // 2)[::-1]
    return bits[:, :N_BITS // 2] @ w, bits[:, N_BITS // 2:] @ w


def parity_block_shares(nets: dict, width: int) -> pd.DataFrame:
    """Where each condition's networks (at ``width``) work on bits 1-4 and on bits 5-8: rows of
    :func:`share_rows` with a ``condition`` column (the placement measure's positive controls)."""
    X, _ = parity_data()
    a_idx, b_idx = _halves_index(X)
    rows = []
    for (cond, w), net in nets.items():
        if w == width:
            rows += share_rows(net, X, a_idx, b_idx, condition=cond)
    return pd.DataFrame(rows)


# -- the two-halves task: where do two independent halves sit? -----------------------------------
GATES = {"xor": lambda a, b: a ^ b, "and": lambda a, b: a & b, "or": lambda a, b: a | b}


def chain(bits: np.ndarray, gates: Sequence[str]) -> np.ndarray:
    """A serial gate chain: ``z = bits[:, 0]``, then ``z = gate_i(z, bits[:, i + 1])``.
    ``bits (N, len(gates) + 1)`` of 0/1 ints -> ``(N,)`` 0/1."""
    if bits.shape[1] != len(gates) + 1:
        raise ValueError(f"{len(gates)} gates need {len(gates) + 1} input bits, got {bits.shape[1]}")
    z = bits[:, 0].copy()
    for i, name in enumerate(gates):
        if name not in GATES:
            raise ValueError(f"unknown gate {name!r}; valid: {sorted(GATES)}")
        z = GATES[name](z, bits[:, i + 1])
    return z


def bit_tasks(gates_g: Sequence[str] = ("xor", "and", "xor"),
              gates_h: Sequence[str] = ("xor", "or", "xor")) -> dict:
    """The previous version's two tasks on all 256 inputs (book's bit order), kept for part D
    and to show why they were not a fair serial/parallel pair.

    - ``y_halves = g(x_1..4) XOR h(x_5..8)`` with ``g, h`` gate chains (the *two-halves task*;
      it was the "parallel" task);
    - ``y_chain = h(g(x_1..4) XOR x_5, x_6, x_7, x_8)``: the same gates in one chain (the old
      "serial" task, a different function).

    Returns ``X (256, 8)`` in {-1, +1}, ``y_halves``, ``y_chain`` (``(256,)`` in {-1, +1}) and
    ``a_idx, b_idx`` (which value of ``x_1..4`` / ``x_5..8`` each row has).
    """
    from ...data.cube import cube_bits

    if len(gates_g) != 3 or len(gates_h) != 3:
        raise ValueError("g and h need three gates each for 8 bits")
    bits = cube_bits(N_BITS).astype(np.int64)
    g, h = chain(bits[:, :4], gates_g), chain(bits[:, 4:], gates_h)
    ser = chain(bits, list(gates_g) + ["xor"] + list(gates_h))
    X = torch.as_tensor(2 * bits - 1, dtype=torch.float32)
    a_idx, b_idx = _halves_index(X)
    return {"X": X, "y_halves": torch.as_tensor(2 * (g ^ h) - 1, dtype=torch.float32),
            "y_chain": torch.as_tensor(2 * ser - 1, dtype=torch.float32), "a_idx": a_idx, "b_idx": b_idx}


def run_two_halves(seeds: int, width: int, blocks: int, target_loss: float, max_steps: int,
                   lr: float, seeds_per_chunk: int = 40,
                   scheduler: str | None = None) -> dict[str, pd.DataFrame]:
    """Train the two-halves task freely (no intermediate targets; chunks of
    :func:`implementation_chunk`, ``seeds_per_chunk`` networks each, on ``scheduler``) and record
    where each block works: ``halves_training`` (seed, reached, steps_to_target) and
    ``halves_block_shares``."""
    t = bit_tasks()
    init = [seed_int(CHAPTER, "halves-init", width, s) for s in range(seeds)]
    chunks = _implementation_chunks("halves", "free", width, blocks, init, init, target_loss,
                                    max_steps, lr, 0.0, seeds_per_chunk, desc="two halves")
    done = map_chunks(implementation_chunk, [dict(c, chunk=i) for i, c in enumerate(chunks)],
                      name="depth-halves", scheduler=scheduler).results
    net, ok, steps, _ = _joined_implementations("halves", width, blocks, init, done)
    train = pd.DataFrame({"seed": range(seeds), "reached": ok,
                          "steps_to_target": np.where(ok, steps, -1)})
    shares = pd.DataFrame(share_rows(net, t["X"], t["a_idx"], t["b_idx"], task="two-halves"))
    return {"halves_training": train, "halves_block_shares": shares}


def fourier_weights(y: torch.Tensor) -> np.ndarray:
    """Fourier weight of a ``±1`` function on the 8-bit cube (book's bit order) at each degree
    ``0..8``: ``W_k = sum_{|S| = k} fhat(S)^2`` (they sum to 1). ``y (256,)``."""
    X, _ = parity_data()
    subsets = [c for k in range(N_BITS + 1) for c in itertools.combinations(range(N_BITS), k)]
    chars = torch.stack([X[:, list(c)].prod(1) if c else torch.ones(len(X)) for c in subsets], 1)
    coef = (chars * y[:, None]).mean(0).double().numpy()
    sizes = np.array([len(c) for c in subsets])
    return np.array([(coef[sizes == k] ** 2).sum() for k in range(N_BITS + 1)])


def task_spectra() -> pd.DataFrame:
    """Fourier weight by degree of the chapter's target (parity, the same for every
    implementation) and of the previous version's two tasks: one row per task x degree."""
    _, y = parity_data()
    t = bit_tasks()
    tasks = {"parity": y, "old parallel (two halves)": t["y_halves"], "old serial": t["y_chain"]}
    return pd.DataFrame([{"task": name, "degree": k, "weight": w}
                         for name, f in tasks.items() for k, w in enumerate(fourier_weights(f))])
