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
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch

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
                     lr: float, batch_size: int, seed: int, desc: str = "") -> BatchedResMLP:
    """Adam on each network's mean cross-entropy over its own mini-batches, for ``steps``
    steps (no stopping rule). ``X (N, d_in)``, ``y (N,)`` class indices. Network ``i``'s
    mini-batch at step ``t`` (``batch_size`` examples without replacement) depends only on
    ``(seed, i, t)`` (:func:`countingargs.nets.seeding.counter_minibatch`). Returns a new module."""
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    n = X.shape[0]

    def loss_fn(params, ids, step):
        idx = counter_minibatch(seed, ids, step, n, batch_size)
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


def run_veit(seeds: int, blocks: int, width: int, steps: int, lr: float, draws: int,
             path_samples: int, n_path_images: int = 256) -> dict[str, pd.DataFrame]:
    """Train residual and plain MLPs on ``load_digits`` and lesion them.

    Returns the tables ``veit_setup`` (one row: sizes), ``veit_single_deletion`` (arch, seed,
    deleted_block (-1 = none), error), ``veit_random_deletion`` (arch, seed, k, draw, error),
    ``veit_reorder`` (arch, seed, swaps, draw, kendall_tau, error) and ``veit_path_gradients``
    (seed, k, grad_per_path, n_paths, grad_total, share) for the residual network.
    """
    Xtr, ytr, Xte, yte = digits_data()
    nets = {}
    for arch, residual in [("residual", True), ("plain", False)]:
        net = BatchedResMLP(seeds, 64, width, blocks, 10, residual=residual,
                            seeds=[seed_int(CHAPTER, "veit-init", s) for s in range(seeds)])
        nets[arch] = train_classifier(net, Xtr, ytr, steps, lr, 128, seed_int(CHAPTER, "veit-batches"),
                                      desc=f"digits {arch}")
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
    prof = path_length_profile(nets["residual"], Xte[:n_path_images], yte[:n_path_images],
                               path_samples, seed_int(CHAPTER, "paths"))
    npaths = np.array([math.comb(blocks, k) for k in range(blocks + 1)], dtype=float)
    total = prof * npaths[:, None]
    share = total / total.sum(0, keepdims=True)
    paths = [{"seed": s, "k": k, "grad_per_path": prof[k, s], "n_paths": npaths[k],
              "grad_total": total[k, s], "share": share[k, s]}
             for s in range(seeds) for k in range(blocks + 1)]
    setup = {"n_params": nets["residual"].n_params(), "n_train": len(ytr), "n_test": len(yte),
             "n_digits": len(ytr) + len(yte), "n_path_images": min(n_path_images, len(yte))}
    return {"veit_setup": pd.DataFrame([setup]), "veit_single_deletion": pd.DataFrame(single),
            "veit_random_deletion": pd.DataFrame(rand_del), "veit_reorder": pd.DataFrame(reorder),
            "veit_path_gradients": pd.DataFrame(paths)}


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
    """The two synthetic tasks on all ``2**n_bits`` inputs (rows in the book's bit order,
    :mod:`countingargs.data.cube`).

    - **parallel** ``y = g(x_a) XOR h(x_b)``: ``g`` a chain over the first half of the bits,
      ``h`` a chain over the second half; they can run side by side (depth ``len(g) + 1``).
    - **serial** ``y = chain(x)``: one chain over all bits with the same number of gates
      (``len(g) + len(h) + 1``) that must run one after the other (depth ``len(serial)``).
      By default its gates are ``g``'s, one XOR, then ``h``'s, so the serial task is
      ``h(g(x_a) XOR x_5, x_6, ...)``.

    Returns a dict with ``X (N, n_bits)`` in {-1, +1} (float32 tensor), ``y_parallel`` and
    ``y_serial`` in {-1, +1} (tensors ``(N,)``), the sub-targets ``g``, ``h`` in {-1, +1}
    (numpy ``(N,)``), and the index arrays ``a_idx``, ``b_idx`` (``(N,)``, which value of
    ``x_a`` / ``x_b`` each row has).
    """
    from ...data.cube import cube_bits

    half = n_bits // 2
    if gates_serial is None:
        gates_serial = list(gates_g) + ["xor"] + list(gates_h)
    if len(gates_g) + 1 != half or len(gates_h) + 1 != n_bits - half:
        raise ValueError(f"g and h need {half - 1} and {n_bits - half - 1} gates for {n_bits} bits")
    if len(gates_serial) + 1 != n_bits:
        raise ValueError(f"the serial chain needs {n_bits - 1} gates for {n_bits} bits")
    bits = cube_bits(n_bits).astype(np.int64)
    g = chain(bits[:, :half], gates_g)
    h = chain(bits[:, half:], gates_h)
    ser = chain(bits, gates_serial)
    weights = 2 ** np.arange(half)[::-1]
    return {
        "X": torch.as_tensor(2 * bits - 1, dtype=torch.float32),
        "y_parallel": torch.as_tensor(2 * (g ^ h) - 1, dtype=torch.float32),
        "y_serial": torch.as_tensor(2 * ser - 1, dtype=torch.float32),
        "g": (2 * g - 1).astype(float), "h": (2 * h - 1).astype(float),
        "a_idx": bits[:, :half] @ weights, "b_idx": bits[:, half:] @ weights[-(n_bits - half):],
    }


def train_to_loss(net: BatchedResMLP, X: torch.Tensor, y_pm: torch.Tensor, target_loss: float,
                  max_steps: int, lr: float, desc: str = ""):
    """Full-batch Adam on a binary task until each network reaches ``target_loss``.

    ``X (N, d_in)``, ``y_pm (N,)`` in {-1, +1}; ``net`` has ``d_out = 1``. A network *reaches*
    the target at the first step where its mean logistic loss is ``<= target_loss`` and every
    example is classified correctly; it is frozen there (:func:`countingargs.nets.train.train_until`),
    so all successful networks sit at (about) the same training loss. Returns
    ``(trained module, steps_to_target (M,) with -1 where never reached, final_loss (M,))``.
    """
    def loss_fn(params, ids, step):
        return losses.logistic(resmlp.forward(resmlp.as_params(params), X, net.residual), y_pm)

    def reached(params, ids, step):
        f = resmlp.forward(resmlp.as_params(params), X, net.residual).squeeze(-1)
        return (losses.logistic(f, y_pm) <= target_loss) & ((f * y_pm) > 0).all(-1)

    out = train_until(list(net.detached().values()), loss_fn, lr=lr, max_steps=max_steps,
                      reached=reached, desc=desc)
    trained = BatchedResMLP.from_params(out.params, net.residual)
    with torch.no_grad():
        final = losses.logistic(trained(X), y_pm).numpy()
    return trained, np.where(out.reached, out.steps, -1), final


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
def stream_probe_profile(net: BatchedResMLP, X: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """In-sample ``R^2`` of linear probes for each target at every stream position (after
    0..L blocks): ``(M, L + 1, T)``. In-sample is the right estimator here: ``X`` is the whole
    cube, so there are no other inputs to generalise to
    (:func:`countingargs.estimators.probes.ridge_r2_insample`)."""
    _, streams = net.stream(net.embed(X), return_all=True)
    return np.stack([ridge_r2_insample(h, targets).numpy() for h in streams], axis=1)


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


def profile_depth(profile: np.ndarray) -> np.ndarray:
    """Centre of mass (block index, 0-based) of a non-negative profile ``(M, L)`` -> ``(M,)``;
    negative entries count as zero; ``nan`` where the profile is zero everywhere."""
    w = np.clip(profile, 0, None)
    tot = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, (w * np.arange(profile.shape[1])).sum(1) / tot, np.nan)


def _llc_rows(loss_fn, theta, n, width, task, steps, settings, chains, draws, burnin, n_seeds):
    rows = []
    sel = {k: v[:n_seeds] for k, v in theta.items()}
    for setting, (stp, loc) in settings.items():
        res = llc.estimate_llc_batch(loss_fn, sel, n, step_size=stp, localization=loc,
                                     n_chains=chains, n_draws=draws, n_burnin=burnin,
                                     seed=seed_int(CHAPTER, "llc"))
        rows += [{"width": width, "task": task, "seed": s, "setting": setting, "step_size": stp,
                  "localization": loc, "llc": res["llc_mean"][s], "llc_chain_sd": res["llc_std"][s],
                  "diverged": bool(res["diverged"][s]), "reached": bool(steps[s] >= 0)}
                 for s in range(len(res["llc_mean"]))]
    return rows


def run_bits(seeds: int, blocks: int, widths: Sequence[int], target_loss: float, max_steps: int,
             lr: float, radii: Sequence[float], vol_samples: int, vol_tol: float, llc_seeds: int,
             llc_settings: dict, llc_chains: int, llc_draws: int, llc_burnin: int) -> dict[str, pd.DataFrame]:
    """Train both bit tasks at every width to ``target_loss`` and measure the solutions.

    ``llc_settings``: ``{"main": (step, localization), "alt": (step, localization)}``; the LLC
    is estimated on the first ``llc_seeds`` networks of the first width. Returns the tables
    ``bits_training``, ``bits_volume``, ``bits_r50``, ``bits_llc``, ``bits_placement``,
    ``bits_block_shares`` and ``bits_probe_r2`` (see the notebook for their columns).
    """
    tasks = bit_tasks()
    Xb = tasks["X"]
    subt = np.stack([tasks["g"], tasks["h"]], axis=1)
    rows = {k: [] for k in ("training", "volume", "r50", "llc", "placement", "block_shares", "probe_r2")}
    for width in widths:
        for task in ["parallel", "serial"]:
            y = tasks[f"y_{task}"]
            net = BatchedResMLP(seeds, 8, width, blocks, 1,
                                seeds=[seed_int(CHAPTER, "bits-init", width, s) for s in range(seeds)])
            net, steps, final = train_to_loss(net, Xb, y, target_loss, max_steps, lr,
                                              desc=f"{task} w={width}")
            ok = steps >= 0
            rows["training"] += [{"width": width, "task": task, "seed": s, "n_params": net.n_params(),
                                  "reached": bool(ok[s]), "steps_to_target": int(steps[s]),
                                  "final_loss": final[s]} for s in range(seeds)]
            loss_fn = resmlp.loss_fn(Xb, y)
            theta = net.detached()
            frac = local_volume_batch(loss_fn, theta, radii, vol_tol, n_samples=vol_samples,
                                      seed=seed_int(CHAPTER, "volume"))["fraction"]
            r50 = radius_at_half(radii, frac)
            if width == widths[0]:
                rows["llc"] += _llc_rows(loss_fn, theta, len(Xb), width, task, steps, llc_settings,
                                         llc_chains, llc_draws, llc_burnin, llc_seeds)
            rows["r50"] += [{"width": width, "task": task, "seed": s, "r50": r50[s],
                             "reached": bool(ok[s])} for s in range(seeds)]
            rows["volume"] += [{"width": width, "task": task, "seed": s, "radius": r,
                                "frac_kept": frac[s, i], "reached": bool(ok[s])}
                               for s in range(seeds) for i, r in enumerate(radii)]
            sh = subproblem_energy(net, Xb, tasks["a_idx"], tasks["b_idx"])     # (M, L, 3)
            en = block_energy(net, Xb)                                          # (M, L)
            da, db = profile_depth(sh[..., 0] * en), profile_depth(sh[..., 1] * en)
            rows["placement"] += [{"width": width, "task": task, "seed": s, "depth_a": da[s],
                                   "depth_b": db[s], "relative_depth": da[s] - db[s],
                                   "reached": bool(ok[s])} for s in range(seeds)]
            rows["block_shares"] += [{"width": width, "task": task, "seed": s, "block": b,
                                      "share_a": sh[s, b, 0], "share_b": sh[s, b, 1],
                                      "share_ab": sh[s, b, 2], "energy": en[s, b]}
                                     for s in range(seeds) for b in range(blocks)]
            if task == "parallel":
                pr = stream_probe_profile(net, Xb, subt)                         # (M, L+1, 2)
                rows["probe_r2"] += [{"width": width, "seed": s, "position": q, "r2_g": pr[s, q, 0],
                                      "r2_h": pr[s, q, 1]} for s in range(seeds) for q in range(blocks + 1)]
    return {f"bits_{k}": pd.DataFrame(v) for k, v in rows.items()}
