"""Chapter 02 (volume): targets, consistency, Lempel-Ziv complexity, the trainer to fit a
training set, guess-and-check. The random-network sampler is shared: :mod:`countingargs.nets.sampler`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ...nets.sampler import (  # noqa: F401
    ACTIVATIONS,
    torch_threads,
    cube,
    cube_bits,
    _check,
    layer_sizes,
    n_params,
    forward_flops,
    chunk_generator,
    draw_params,
    unpack_params,
    forward_block,
    forward_per_network,
    n_words,
    pack_bits,
    unpack_bits,
    pack_bits_np,
    count_rows,
    FunctionCounts,
    Chunk,
    sample_chunk,
    sample_functions,
)


# ---------------------------------------------------------------------------------------------
# functions as named objects, targets, consistency
# ---------------------------------------------------------------------------------------------
def target_bits(name: str, n_inputs: int) -> np.ndarray:
    """Truth table ``(2**n,)`` bool of a named target: ``zero``, ``one``, ``x1`` ... ``xn``,
    ``x1&x2``, ``x1|x2``, ``x1^x2``, ``parity3`` (x1^x2^x3), ``parity`` (all bits),
    ``majority`` (more than half of the bits set)."""
    X = cube_bits(n_inputs)
    n = n_inputs
    lits = {f"x{i + 1}": X[:, i] for i in range(n)}
    if name in lits:
        return lits[name].copy()
    table = {
        "zero": np.zeros(2 ** n, bool), "one": np.ones(2 ** n, bool),
        "x1&x2": X[:, 0] & X[:, 1] if n >= 2 else None,
        "x1|x2": X[:, 0] | X[:, 1] if n >= 2 else None,
        "x1^x2": X[:, 0] ^ X[:, 1] if n >= 2 else None,
        "parity3": X[:, :3].sum(1) % 2 == 1 if n >= 3 else None,
        "parity": X.sum(1) % 2 == 1,
        "majority": X.sum(1) * 2 > n,
    }
    if name not in table or table[name] is None:
        raise ValueError(f"unknown target {name!r} for n={n}; valid: zero, one, x1..x{n}, "
                         "x1&x2, x1|x2, x1^x2, parity3, parity, majority")
    return table[name]


def describe(bits: np.ndarray, n_inputs: int) -> str:
    """A short name for a truth table: a constant (``0``, ``1``), a literal or negated literal
    (``x3``, ``¬x3``), true on a single input (``only 0000000``) or on all but one
    (``all but 0000000``), or an AND/OR of two literals; otherwise its hexadecimal code
    (input 0 first)."""
    bits = np.asarray(bits, bool)
    X = cube_bits(n_inputs)
    if not bits.any():
        return "0"
    if bits.all():
        return "1"
    lits = [(f"x{i + 1}", X[:, i]) for i in range(n_inputs)]
    lits += [(f"¬x{i + 1}", ~X[:, i]) for i in range(n_inputs)]
    for nm, v in lits:
        if np.array_equal(bits, v):
            return nm
    if bits.sum() == 1 or (~bits).sum() == 1:
        i = int(np.flatnonzero(bits if bits.sum() == 1 else ~bits)[0])
        point = "".join("1" if b else "0" for b in X[i])
        return (f"only {point}" if bits.sum() == 1 else f"all but {point}")
    for i, (a, va) in enumerate(lits):
        for b, vb in lits[i + 1:]:
            if a.lstrip("¬") == b.lstrip("¬"):
                continue
            if np.array_equal(bits, va & vb):
                return f"{a}∧{b}"
            if np.array_equal(bits, va | vb):
                return f"{a}∨{b}"
    return "0x" + "".join(f"{int(''.join('1' if v else '0' for v in bits[i:i + 4]), 2):x}"
                          for i in range(0, len(bits), 4))


def consistent_mask(fc_codes: np.ndarray, target: np.ndarray, train_idx: np.ndarray,
                    n_bits: int) -> np.ndarray:
    """Which functions (rows of ``fc_codes (K, W)``) agree with ``target (n_bits,)`` on the
    inputs ``train_idx``. Exact, word-wise: ``((code ^ target) & mask) == 0``."""
    t = pack_bits_np(np.asarray(target, bool)[None])[0]
    m = np.zeros(n_bits, bool)
    m[np.asarray(train_idx)] = True
    mask = pack_bits_np(m[None])[0]
    return np.all(((fc_codes ^ t) & mask) == 0, axis=1)


def offset_errors(fc_codes: np.ndarray, target: np.ndarray, test_idx: np.ndarray,
                  n_bits: int) -> np.ndarray:
    """Number of inputs in ``test_idx`` where each function disagrees with ``target``."""
    bits = unpack_bits(fc_codes, n_bits)
    return (bits[:, test_idx] != np.asarray(target, bool)[test_idx]).sum(1)


# ---------------------------------------------------------------------------------------------
# Lempel-Ziv complexity (Valle-Perez et al. 2019)
# ---------------------------------------------------------------------------------------------
def lz76_words(s: np.ndarray) -> int:
    """Number of words in the Lempel-Ziv (1976) parsing of a sequence (Kaspar-Schuster)."""
    s = bytes(np.asarray(s, dtype=np.uint8))
    n = len(s)
    if n <= 1:
        return n
    c, i, k, l, k_max = 1, 0, 1, 1, 1
    while True:
        if s[i + k - 1] == s[l + k - 1]:
            k += 1
            if l + k > n:
                c += 1
                break
        else:
            k_max = max(k, k_max)
            i += 1
            if i == l:
                c += 1
                l += k_max
                if l + 1 > n:
                    break
                i, k, k_max = 0, 1, 1
            else:
                k = 1
    return c


def lz76_words_batch(bits: np.ndarray) -> np.ndarray:
    """:func:`lz76_words` of many sequences at once: ``bits (K, n)`` -> ``(K,)`` int.
    The Kaspar-Schuster state machine, vectorised over sequences (one numpy step per
    comparison, all sequences in lockstep)."""
    S = np.ascontiguousarray(np.asarray(bits, dtype=np.uint8))
    K, n = S.shape
    if n <= 1:
        return np.full(K, n, dtype=np.int64)
    c = np.ones(K, np.int64)
    i = np.zeros(K, np.int64)
    k = np.ones(K, np.int64)
    l = np.ones(K, np.int64)
    kmax = np.ones(K, np.int64)
    act = np.arange(K)
    flat = S.ravel()
    while act.size:
        base = act * n
        eq = flat[base + i[act] + k[act] - 1] == flat[base + l[act] + k[act] - 1]
        done = np.zeros(act.size, bool)
        # equal: extend the match
        a = act[eq]
        k[a] += 1
        end = l[a] + k[a] > n
        c[a[end]] += 1
        done[np.flatnonzero(eq)[end]] = True
        # different: try the next start i, or close the word
        ne = np.flatnonzero(~eq)
        b = act[ne]
        kmax[b] = np.maximum(k[b], kmax[b])
        i[b] += 1
        close = i[b] == l[b]
        bc = b[close]
        c[bc] += 1
        l[bc] += kmax[bc]
        stop = l[bc] + 1 > n
        done[ne[close][stop]] = True
        bo = bc[~stop]
        i[bo], k[bo], kmax[bo] = 0, 1, 1
        k[b[~close]] = 1
        act = act[~done]
    return c


def lz_complexity(bits: np.ndarray) -> np.ndarray:
    """Valle-Perez et al.'s symmetrised LZ complexity of bit strings ``(K, L)`` -> ``(K,)``:
    ``log2(L)`` for a constant string, else ``log2(L) * (N(x) + N(reversed x)) / 2`` with
    ``N`` the LZ76 word count."""
    bits = np.atleast_2d(np.asarray(bits, bool))
    L = bits.shape[1]
    fwd = lz76_words_batch(bits)
    rev = lz76_words_batch(bits[:, ::-1])
    const = bits.all(1) | ~bits.any(1)
    return np.where(const, math.log2(L), math.log2(L) * (fwd + rev) / 2)


# ---------------------------------------------------------------------------------------------
# the batched trainer
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """``codes (M, W)`` functions at the end, ``fitted (M,)`` bool, ``steps (M,)`` steps taken
    until the network fitted S (``max_steps`` if it never did), ``outputs (M, B_eval)`` outputs
    on ``x_eval``."""

    codes: np.ndarray
    fitted: np.ndarray
    steps: np.ndarray
    outputs: torch.Tensor


def forward_std(layers, x: torch.Tensor, activation: str) -> torch.Tensor:
    """Forward pass with per-network inputs ``x (M, B, n)`` and layers ``[(W (M,a,b),
    b (M,1,b))]`` in the standard layout; returns ``(M, B)``."""
    h = x
    for i, (W, b) in enumerate(layers):
        h = torch.baddbmm(b, h, W)
        if i < len(layers) - 1:
            h = torch.relu(h) if activation == "relu" else torch.tanh(h)
    return h[..., 0]


def train_to_fit(x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor,
                 n_nets: int, hidden: Sequence[int], sigma_w: float = 1.0, sigma_b: float = 0.0,
                 activation: str = "relu", optimizer: str = "sgd", lr: float = 0.1,
                 batch_size: int | None = None, max_steps: int = 5000, seed: int = 0,
                 init: str = "gaussian", chunk: int = 2048, device="cpu",
                 loss_target: float | None = None, threads: int | None = None) -> TrainResult:
    """Train ``n_nets`` networks, batched, from the prior until each one fits the training set.

    ``x_train (k, n)``, ``y_train (k,)`` bool labels, ``x_eval (B, n)`` (e.g. the whole cube).
    Initial parameters are chunk ``c`` of :func:`chunk_generator` ``(seed, c)`` in chunks of
    ``chunk`` networks, i.e. the same networks :func:`sample_functions` draws with that seed and
    chunk size. Loss: mean binary cross-entropy of each network on its mini-batch
    (``batch_size`` examples drawn without replacement per network and step; ``None`` = full
    batch), summed over networks, so each network gets exactly its own gradient.
    ``optimizer``: ``"sgd"`` (plain) or ``"adam"`` (betas 0.9, 0.999, eps 1e-8), element-wise,
    so networks stay independent. A network stops (is frozen and leaves the batch) at the first
    check where all its training outputs have the right sign (and, with ``loss_target``, its
    full-batch loss is at most ``loss_target``). Checks happen before every step.
    Runs with ``threads`` torch threads (default 1 on CPU, see :class:`torch_threads`); the
    result does not depend on it.
    """
    with torch_threads(threads if threads is not None else
                       (torch.get_num_threads() if torch.device(device).type == "cuda" else 1)):
        return _train_to_fit(x_train, y_train, x_eval, n_nets, hidden, sigma_w, sigma_b,
                             activation, optimizer, lr, batch_size, max_steps, seed, init, chunk,
                             device, loss_target)


def _train_to_fit(x_train, y_train, x_eval, n_nets, hidden, sigma_w, sigma_b, activation,
                  optimizer, lr, batch_size, max_steps, seed, init, chunk, device, loss_target):
    n = x_train.shape[1]
    hidden = _check(n, hidden, sigma_w, sigma_b, activation)
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    k = x_train.shape[0]
    if y_train.shape != (k,):
        raise ValueError(f"y_train must have shape ({k},), got {tuple(y_train.shape)}")
    bs = k if batch_size is None else int(batch_size)
    if not 1 <= bs <= k:
        raise ValueError(f"batch_size must be in [1, {k}], got {batch_size}")
    bufs = []
    for c in range((n_nets + chunk - 1) // chunk):
        g = chunk_generator(seed, c, device)
        bufs.append(draw_params(min(chunk, n_nets - c * chunk), n, hidden, sigma_w, sigma_b, g,
                                device, init=init))
    buf = torch.cat(bufs)
    final = []  # standard-layout parameters of all networks (written when a network stops)
    for W_t, b in unpack_params(buf, n, hidden):
        final.append(W_t.transpose(1, 2).contiguous())
        final.append(b.transpose(1, 2).contiguous())
    work = [p.clone() for p in final]            # parameters of the networks still training
    mom = [(torch.zeros_like(p), torch.zeros_like(p)) for p in work]
    ids = torch.arange(n_nets, device=device)    # which network each working row is
    xt = x_train.to(device).float()
    yt = y_train.to(device).bool()
    yf = yt.float()
    steps = torch.full((n_nets,), max_steps, dtype=torch.long, device=device)
    fitted = torch.zeros(n_nets, dtype=torch.bool, device=device)
    gen = torch.Generator(device=device).manual_seed(int(seed) + 7919)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    pairs = lambda ps: [(ps[2 * i], ps[2 * i + 1]) for i in range(len(ps) // 2)]
    for t in range(max_steps + 1):
        M = len(ids)
        with torch.no_grad():
            out = forward_std(pairs(work), xt.expand(M, k, n), activation)
            done = ((out > 0) == yt).all(1)
            if loss_target is not None:
                full = torch.nn.functional.binary_cross_entropy_with_logits(
                    out, yf.expand(M, k), reduction="none").mean(1)
                done &= full <= loss_target
            if done.any():
                di = ids[done]
                steps[di] = t
                fitted[di] = True
                for f, w in zip(final, work):
                    f[di] = w[done]
                keep = ~done
                ids = ids[keep]
                work = [w[keep] for w in work]
                mom = [(a[keep], v[keep]) for a, v in mom]
        M = len(ids)
        if M == 0 or t == max_steps:
            break
        sub = [w.requires_grad_() for w in work]
        if bs < k:
            sel = torch.rand(M, k, generator=gen, device=device).argsort(1)[:, :bs]
            xb, yb = xt[sel], yf[sel]
        else:
            xb, yb = xt.expand(M, k, n), yf.expand(M, k)
        logits = forward_std(pairs(sub), xb, activation)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, yb, reduction="none").mean(1).sum()
        grads = torch.autograd.grad(loss, sub)
        with torch.no_grad():
            work = [w.detach() for w in sub]
            for w, gr, (m1, m2) in zip(work, grads, mom):
                if optimizer == "sgd":
                    w.sub_(gr, alpha=lr)
                else:
                    tt = t + 1  # every working network has taken exactly t steps
                    m1.mul_(beta1).add_(gr, alpha=1 - beta1)
                    m2.mul_(beta2).addcmul_(gr, gr, value=1 - beta2)
                    denom = (m2 / (1 - beta2 ** tt)).sqrt_().add_(eps)
                    w.addcdiv_(m1, denom, value=-lr / (1 - beta1 ** tt))
    if len(ids):  # never fitted: keep their last parameters
        for f, w in zip(final, work):
            f[ids] = w.detach()
    with torch.no_grad():
        out_eval = forward_std(pairs(final), x_eval.to(device).float().expand(n_nets, *x_eval.shape),
                               activation)
    return TrainResult(pack_bits(out_eval > 0).cpu().numpy(), fitted.cpu().numpy(),
                       steps.cpu().numpy(), out_eval)


# ---------------------------------------------------------------------------------------------
# guess and check on real data (Chiang et al. 2023)
# ---------------------------------------------------------------------------------------------
@dataclass
class GuessCheckResult:
    """``test_acc (A,)`` test accuracy of each accepted network, ``draws`` networks drawn,
    ``accepted`` = A, ``params (A, P)`` the accepted parameter vectors."""

    test_acc: np.ndarray
    draws: int
    accepted: int
    params: torch.Tensor


def guess_and_check(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                    y_test: torch.Tensor, hidden: Sequence[int], n_accept: int,
                    max_draws: int, seed: int = 0, chunk: int = 16384,
                    activation: str = "relu", device="cpu") -> GuessCheckResult:
    """Draw networks with parameters uniform in [-1, 1] until ``n_accept`` of them classify
    the training set perfectly (``output > 0`` <=> label), or ``max_draws`` networks were drawn.

    ``x_train (k, d)``, ``y_train (k,)`` bool, ``x_test (T, d)``, ``y_test (T,)``. Chunk ``c``
    uses :func:`chunk_generator` ``(seed, c)``; every network of a chunk is checked, so
    ``draws`` is a multiple of ``chunk`` (or ``max_draws``) and may end with more than
    ``n_accept`` accepted networks (all are kept). Runs with one torch thread."""
    with torch_threads(1 if torch.device(device).type == "cpu" else torch.get_num_threads()):
        return _guess_and_check(x_train, y_train, x_test, y_test, hidden, n_accept, max_draws,
                                seed, chunk, activation, device)


def _guess_and_check(x_train, y_train, x_test, y_test, hidden, n_accept, max_draws, seed, chunk,
                     activation, device):
    d = x_train.shape[1]
    hidden = _check(1, hidden, 1.0, 0.0, activation)
    xt = x_train.to(device).float().T.contiguous()
    xs = x_test.to(device).float().T.contiguous()
    yt, ys = y_train.to(device).bool(), y_test.to(device).bool()
    accepted, draws, c = [], 0, 0
    n_acc = 0
    while n_acc < n_accept and draws < max_draws:
        m = min(chunk, max_draws - draws)
        buf = draw_params(m, d, hidden, 1.0, 0.0, chunk_generator(seed, c, device), device,
                          init="uniform")
        out = forward_block(buf, xt, d, hidden, activation)
        ok = ((out > 0) == yt).all(1)
        if ok.any():
            accepted.append(buf[ok].clone())
            n_acc += int(ok.sum())
        draws += m
        c += 1
    P = n_params(d, hidden)
    params = torch.cat(accepted) if accepted else torch.empty(0, P, device=device)
    if len(params):
        acc = ((forward_block(params, xs, d, hidden, activation) > 0) == ys).float().mean(1)
    else:
        acc = torch.empty(0)
    return GuessCheckResult(acc.cpu().numpy(), draws, len(params), params)
