"""Chapter 02 (volume): the runs, returning tidy tables.

The random-network sampler is shared (:mod:`countingargs.nets.sampler`); the trainer is the
book's one trainer (:func:`countingargs.nets.train.train_until`). This module adds what only
this chapter needs: named target functions, consistency with a training set, Lempel-Ziv
complexity, training many networks from the prior until they fit a training set,
guess-and-check on the digits, and the experiment functions the notebook calls.

The heavy loops are chunks of :func:`countingargs.chunks.map_chunks`: the prior samples (in
the sampler), the SGD runs of volume vs SGD (:func:`vs_train_chunk`, cells ``(seed, target,
optimiser)``) and guess-and-check against SGD (:func:`gc_chunk`, cells ``(seed, size)``). Each
cell draws only from its own keyed streams, so the tables are the same whatever the grouping
of cells into chunks and wherever the chunks run (in process, or on ``scheduler``) on CPU.

Shapes: ``L = 2**n`` inputs of the cube, ``W = ceil(L / 64)`` words per packed function,
``K`` distinct functions, ``M`` networks.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ...data.cube import cube_bits
from ...nets.losses import binary_cross_entropy
from ...nets.mlp import forward
from ...nets.sampler import (
    FunctionCounts,
    check_architecture,
    check_device,
    count_rows,
    cube,
    draw_params,
    forward_block,
    n_params,
    pack_bits,
    pack_bits_np,
    sample_functions,
    torch_threads,
    unpack_bits,
    unpack_params,
)
from ...nets.seeding import chunk_generator, counter_minibatch, rng as seeded_rng, seed_int
from ...nets.train import train_until
from ...stats import progress


# ---------------------------------------------------------------------------------------------
# functions as named objects, targets, consistency
# ---------------------------------------------------------------------------------------------

# The targets of the reach table (a fixed design, the same in every profile): simple to hard
# functions of the first bits, in the book's one bit order (data.cube).
REACH_TARGETS = ("x1", "x1&x2", "x1|x2", "majority", "parity3", "x1^x2")


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


def lookup(keys: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Counts of the functions ``keys (K', W)`` in a counted sample ``codes (K, W)``,
    ``counts (K,)`` (0 where absent), as floats ``(K',)``."""
    d = {c.tobytes(): n for c, n in zip(codes, counts)}
    return np.array([d.get(c.tobytes(), 0) for c in keys], dtype=float)


# ---------------------------------------------------------------------------------------------
# Lempel-Ziv complexity (Valle-Perez et al. 2019)
# ---------------------------------------------------------------------------------------------
def lz76_words(s: np.ndarray) -> int:
    """Number of words in the Lempel-Ziv (1976) parsing of a sequence (Kaspar-Schuster). The
    plain reference for :func:`lz76_words_batch`."""
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
    K, L = bits.shape
    words = lz76_words_batch(np.concatenate([bits, bits[:, ::-1]]))   # one lockstep pass
    fwd, rev = words[:K], words[K:]
    const = bits.all(1) | ~bits.any(1)
    return np.where(const, math.log2(L), math.log2(L) * (fwd + rev) / 2)


# ---------------------------------------------------------------------------------------------
# training many networks from the prior until they fit a training set
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """``codes (M, W)`` functions at the end, ``fitted (M,)`` bool, ``steps (M,)`` steps taken
    until the network reached its stopping rule (``max_steps`` if it never did),
    ``outputs (M, B_eval)`` outputs on ``x_eval``."""

    codes: np.ndarray
    fitted: np.ndarray
    steps: np.ndarray
    outputs: torch.Tensor


def prior_layers(n_nets: int, n_inputs: int, hidden: Sequence[int], sigma_w: float,
                 sigma_b: float, seed: int, chunk: int, init: str = "gaussian",
                 device="cpu") -> list[torch.Tensor]:
    """The parameters of the first ``n_nets`` networks of the sampler's stream ``seed`` (chunks
    of ``chunk``), as a flat list ``[W1, b1, W2, b2, ...]`` in the layout of
    :func:`countingargs.nets.mlp.forward`: ``W (M, fan_in, fan_out)``, ``b (M, 1, fan_out)``."""
    bufs = []
    for c in range((n_nets + chunk - 1) // chunk):
        g = chunk_generator(seed, c, device)
        bufs.append(draw_params(min(chunk, n_nets - c * chunk), n_inputs, hidden, sigma_w,
                                sigma_b, g, device, init=init))
    buf = torch.cat(bufs)
    out = []
    for W_t, b in unpack_params(buf, n_inputs, hidden):
        out += [W_t.transpose(1, 2).contiguous(), b.transpose(1, 2).contiguous()]
    return out


def _pairs(flat: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)]


def train_to_fit(x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor,
                 n_nets: int, hidden: Sequence[int], sigma_w: float = 1.0, sigma_b: float = 0.0,
                 activation: str = "relu", optimizer: str = "sgd", lr: float = 0.1,
                 batch_size: int | None = None, max_steps: int = 5000, seed: int = 0,
                 init: str = "gaussian", chunk: int = 2048,
                 loss_target: float | None = None, device: str = "cpu") -> TrainResult:
    """Train ``n_nets`` networks, batched, from the prior until each one fits the training set.

    ``x_train (k, n)``, ``y_train (k,)`` bool labels, ``x_eval (B, n)`` (e.g. the whole cube).
    The initial networks are those :func:`sample_functions` draws with ``seed`` and ``chunk``.
    Loss: mean binary cross-entropy of each network on its mini-batch (``batch_size`` examples
    drawn without replacement per network and step from a counter-based stream, so a network's
    batches do not depend on the others; ``None`` = full batch); ``optimizer`` is ``"sgd"``
    (plain) or ``"adam"`` (torch.optim, applied to the batched tensors: element-wise, so each
    network gets exactly its own update). A network stops (is frozen) at the first check where
    all its training outputs have the right sign (and, with ``loss_target``, its full-batch loss
    is at most ``loss_target``); checks happen before every step. Runs on one torch thread, or
    on ``device="cuda"`` (the initial networks then come from the GPU's streams, as in
    :func:`sample_functions` with that device; untested).
    """
    check_architecture(int(x_train.shape[1]), hidden, sigma_w, sigma_b, activation)
    k = x_train.shape[0]
    if y_train.shape != (k,):
        raise ValueError(f"y_train must have shape ({k},), got {tuple(y_train.shape)}")
    bs = k if batch_size is None else int(batch_size)
    if not 1 <= bs <= k:
        raise ValueError(f"batch_size must be in [1, {k}], got {batch_size}")
    check_device(device)
    xt, yt = x_train.float().to(device), y_train.bool().to(device)
    yf = yt.float()

    def loss_fn(ps, ids, t):
        if bs < k:
            sel = counter_minibatch(seed, ids, t, k, bs)
            return binary_cross_entropy(forward(_pairs(ps), xt[sel], activation)[..., 0], yf[sel])
        return binary_cross_entropy(forward(_pairs(ps), xt, activation)[..., 0], yf)

    def reached(ps, ids, t):
        out = forward(_pairs(ps), xt, activation)[..., 0]
        done = ((out > 0) == yt).all(1)
        if loss_target is not None:
            done &= binary_cross_entropy(out, yf) <= loss_target
        return done

    with torch_threads(1):
        params = prior_layers(n_nets, x_train.shape[1], hidden, sigma_w, sigma_b, seed, chunk, init,
                              device=device)
        tr = train_until(params, loss_fn, lr=lr, max_steps=max_steps, reached=reached,
                         optimizer=optimizer)
        with torch.no_grad():
            out_eval = forward(_pairs(tr.params), x_eval.float().to(device), activation)[..., 0].cpu()
    return TrainResult(pack_bits(out_eval > 0).numpy(), tr.reached, tr.steps, out_eval)


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
                    activation: str = "relu") -> GuessCheckResult:
    """Draw networks with parameters uniform in [-1, 1] until ``n_accept`` of them classify
    the training set perfectly (``output > 0`` <=> label), or ``max_draws`` networks were drawn.

    ``x_train (k, d)``, ``y_train (k,)`` bool, ``x_test (T, d)``, ``y_test (T,)``. Chunk ``c``
    uses :func:`chunk_generator` ``(seed, c)``; every network of a chunk is checked, so
    ``draws`` is a multiple of ``chunk`` (or ``max_draws``) and may end with more than
    ``n_accept`` accepted networks (all are kept). Runs with one torch thread."""
    with torch_threads(1):
        return _guess_and_check(x_train, y_train, x_test, y_test, hidden, n_accept, max_draws,
                                seed, chunk, activation)


def _guess_and_check(x_train, y_train, x_test, y_test, hidden, n_accept, max_draws, seed, chunk,
                     activation):
    d = x_train.shape[1]
    hidden = check_architecture(d, hidden, 1.0, 0.0, activation)
    xt = x_train.float().T.contiguous()
    xs = x_test.float().T.contiguous()
    yt, ys = y_train.bool(), y_test.bool()
    accepted, draws, c, n_acc = [], 0, 0, 0
    while n_acc < n_accept and draws < max_draws:
        m = min(chunk, max_draws - draws)
        buf = draw_params(m, d, hidden, 1.0, 0.0, chunk_generator(seed, c), init="uniform")
        out = forward_block(buf, xt, d, hidden, activation)
        ok = ((out > 0) == yt).all(1)
        if ok.any():
            accepted.append(buf[ok].clone())
            n_acc += int(ok.sum())
        draws += m
        c += 1
    params = torch.cat(accepted) if accepted else torch.empty(0, n_params(d, hidden))
    if len(params):
        acc = ((forward_block(params, xs, d, hidden, activation) > 0) == ys).float().mean(1)
    else:
        acc = torch.empty(0)
    return GuessCheckResult(acc.numpy(), draws, len(params), params)


# ---------------------------------------------------------------------------------------------
# experiment 1: the prior over functions
# ---------------------------------------------------------------------------------------------
def _const_share(fc: FunctionCounts, value: bool) -> float:
    code = pack_bits_np(np.full((1, fc.n_bits), value, bool))[0]
    return float(fc.counts[np.all(fc.codes == code, 1)].sum() / fc.n_samples)


def _value_counts(setting: str, source: str, seed: int, lz: np.ndarray) -> pd.DataFrame:
    v, c = np.unique(np.round(lz, 6), return_counts=True)
    return pd.DataFrame(dict(setting=setting, source=source, seed=seed, lz=v, count=c))


@dataclass
class PriorSample:
    """One prior setting: ``pooled`` counts over all seeds, ``parts`` one per seed, and its
    tables: ``seeds`` (one row per seed), ``lz_hist`` (how many of the first ``lz_sample``
    networks of each seed have each LZ complexity; ``source`` is ``network``, ``ones-matched``
    for the same functions with their bits shuffled, or ``uniform`` for uniformly random
    functions) and ``ones_hist`` (how many of them have each number of ones)."""

    setting: str
    pooled: FunctionCounts
    parts: list
    seeds: pd.DataFrame
    lz_hist: pd.DataFrame
    ones_hist: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """One row: the pooled sample's size, distinct functions and singletons."""
        c = self.pooled.counts
        return pd.DataFrame([dict(setting=self.setting, samples=self.pooled.n_samples,
                                  distinct=self.pooled.n_distinct, singletons=int((c == 1).sum()))])


def ones_matched(bits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each function ``bits (K, L)``, a uniformly random function with the same number of
    ones (its bits in a random order, drawn independently per row)."""
    return rng.permuted(np.asarray(bits, bool), axis=1)


def sample_prior(setting: str, n_inputs: int, hidden: Sequence[int], n_samples: int,
                 sigma_w: float, sigma_b: float, activation: str, seeds: Sequence[int],
                 lz_sample: int, uniform: bool = False, encoding: str = "01",
                 scheduler: str | None = None, device: str = "cpu") -> PriorSample:
    """Sample ``n_samples`` networks per seed (stream ``seed_int("prior", setting, seed)``, inputs
    encoded as ``encoding``), count their functions, and measure the LZ complexity of the first
    ``lz_sample`` networks' functions, of the same functions with their bits shuffled (a random
    function with as many ones) and, with ``uniform``, of as many uniformly random functions.
    The complexities of all seeds and sources are computed in one batched call. ``scheduler``
    and ``device``: where the sampler runs (:func:`sample_functions`; CUDA draws other streams)."""
    L = 2 ** n_inputs
    parts, rows, sources = [], [], []
    for s in progress(list(seeds), desc=f"prior ({setting})"):
        fc, samp = sample_functions(n_inputs, hidden, n_samples, sigma_w, sigma_b, activation,
                                    seed=seed_int("prior", setting, s), keep_samples=True,
                                    encoding=encoding, scheduler=scheduler, device=device)
        parts.append(fc)
        bits = unpack_bits(samp[:lz_sample], L)
        del samp
        sources.append((s, "network", bits))
        sources.append((s, "ones-matched", ones_matched(bits, seeded_rng("prior-shuffle", setting, s))))
        if uniform:
            sources.append((s, "uniform", seeded_rng("prior-uniform", setting, s).random((lz_sample, L)) < 0.5))
        rows.append(dict(setting=setting, activation=activation, encoding=encoding,
                         sigma_w=sigma_w, sigma_b=sigma_b, seed=s, samples=fc.n_samples,
                         distinct=fc.n_distinct, singletons=int((fc.counts == 1).sum()),
                         p_const0=_const_share(fc, False), p_const1=_const_share(fc, True),
                         ones_mean=float(bits.sum(1).mean()),
                         imbalance_mean=float(np.abs(bits.sum(1) / L - 0.5).mean())))
    lz_all = np.split(lz_complexity(np.concatenate([b for _, _, b in sources])),
                      np.cumsum([len(b) for _, _, b in sources])[:-1])
    lz = {(s, src): v for (s, src, _), v in zip(sources, lz_all)}
    for r in rows:
        r.update(lz_mean_prior=float(lz[r["seed"], "network"].mean()),
                 lz_mean_uniform=float(lz[r["seed"], "uniform"].mean()) if uniform else np.nan,
                 lz_mean_matched=float(lz[r["seed"], "ones-matched"].mean()))
    hist = [_value_counts(setting, src, s, v) for (s, src), v in lz.items()]
    ones = [pd.DataFrame(dict(zip(("ones", "count"), np.unique(b.sum(1), return_counts=True))),
                         ).assign(setting=setting, seed=s) for s, src, b in sources if src == "network"]
    return PriorSample(setting, FunctionCounts.merge(parts), parts, pd.DataFrame(rows),
                       pd.concat(hist, ignore_index=True),
                       pd.concat(ones, ignore_index=True)[["setting", "seed", "ones", "count"]])


def top_functions(ps: PriorSample, n_inputs: int, k: int = 12) -> pd.DataFrame:
    """The ``k`` most frequent functions of the pooled sample: one row per (function, seed) with
    its name, LZ complexity, number of ones, pooled frequency ``p`` and the seed's ``p_seed``."""
    rows = []
    for rank, i in enumerate(ps.pooled.top(k)):
        code = ps.pooled.codes[i]
        bits = ps.pooled.bits([i])[0]
        for s, part in zip(ps.seeds.seed, ps.parts):
            rows.append(dict(setting=ps.setting, rank=rank + 1, function=describe(bits, n_inputs),
                             lz=float(lz_complexity(bits[None])[0]), ones=int(bits.sum()),
                             p=ps.pooled.counts[i] / ps.pooled.n_samples, seed=int(s),
                             p_seed=part.counts[np.all(part.codes == code, 1)].sum() / part.n_samples))
    return pd.DataFrame(rows)


def prior_scatter(ps: PriorSample, n_top: int) -> pd.DataFrame:
    """log10 P(f), LZ complexity, number of ones and count of the ``n_top`` most frequent
    functions of the pooled sample."""
    idx = ps.pooled.top(n_top)
    bits = ps.pooled.bits(idx)
    return pd.DataFrame(dict(setting=ps.setting,
                             logp=np.log10(ps.pooled.counts[idx] / ps.pooled.n_samples),
                             lz=lz_complexity(bits), ones=bits.sum(1), count=ps.pooled.counts[idx]))


def rank_frequency(ps: PriorSample, points: int = 80) -> pd.DataFrame:
    """Rank-frequency curve of each seed's sample at about ``points`` log-spaced ranks."""
    rows = []
    for s, part in zip(ps.seeds.seed, ps.parts):
        c = np.sort(part.counts)[::-1]
        ranks = np.unique(np.geomspace(1, len(c), points).round().astype(int))
        rows.append(pd.DataFrame(dict(setting=ps.setting, seed=int(s), rank=ranks,
                                      p=c[ranks - 1] / part.n_samples)))
    return pd.concat(rows, ignore_index=True)


def reach(prior: FunctionCounts, n_inputs: int, targets: Sequence[str], sizes: Sequence[int],
          seeds: Sequence[int]) -> pd.DataFrame:
    """Rejection sampling's reach on the cube: for each target and seed, one random order of the
    inputs (``rng("reach", target, seed)``) whose first ``k`` inputs are the training set of size
    ``k`` (nested training sets, so each size only rechecks the functions that fitted the
    previous one); per size, the share of the prior sample that fits, how many networks and
    distinct functions were accepted, and how many of those were seen at least twice."""
    L = 2 ** n_inputs
    rows = []
    for tname in targets:
        tb = target_bits(tname, n_inputs)
        for s in seeds:
            order = seeded_rng("reach", tname, s).permutation(L)
            codes, counts = prior.codes, prior.counts
            for k in sorted(sizes):
                m = consistent_mask(codes, tb, order[:k], L)
                codes, counts = codes[m], counts[m]
                rows.append(dict(target=tname, k=k, seed=s, accept_rate=counts.sum() / prior.n_samples,
                                 accepted=int(counts.sum()), distinct=len(counts),
                                 seen_twice=int((counts >= 2).sum())))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# experiment 2: volume vs SGD on the small cube
# ---------------------------------------------------------------------------------------------
def parse_optimiser(name: str) -> tuple[str, int | None, bool]:
    """``'sgd'``, ``'adam'``, ``'sgd-b4'``, ``'sgd-long'`` -> (optimizer, batch size or None,
    trained on to a low loss). ``-long``: training goes on after the first fit until the
    training loss is at most the ``long_loss`` of :func:`volume_vs_sgd`."""
    base, *opts = name.split("-")
    if base not in ("sgd", "adam") or any(o != "long" and not (o.startswith("b") and o[1:].isdigit())
                                          for o in opts):
        raise ValueError(f"unknown optimiser {name!r}; valid: sgd or adam, optionally with -bN "
                         "(mini-batch of N) and -long (trained on to a low loss)")
    batch = [int(o[1:]) for o in opts if o != "long"]
    return base, (batch[0] if batch else None), "long" in opts


# -- statistics of P_SGD against P_B, and their calibration -----------------------------------
def order_stat(pb: np.ndarray, ps: np.ndarray) -> float:
    """Spearman correlation of the counts ``pb`` (prior sample) and ``ps`` (SGD runs) over the
    functions seen at least twice in either sample (the chapter's test 2a); NaN if undefined."""
    sel = (pb >= 2) | (ps >= 2)
    return _spearman(pb[sel], ps[sel])


def lit_stat(pb: np.ndarray, ps: np.ndarray, k: int) -> tuple[float, int]:
    """Pearson correlation of log P_B and log P_SGD over the functions seen at least ``k``
    times in *both* samples (the statistic of the volume-vs-SGD literature), and how many such
    functions there are; NaN if fewer than three or a constant side."""
    sel = (pb >= k) & (ps >= k)
    a, b = np.log(pb[sel]), np.log(ps[sel])
    if sel.sum() < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan"), int(sel.sum())
    return float(np.corrcoef(a, b)[0, 1]), int(sel.sum())


def _summary(values, name: str) -> dict:
    v = np.asarray(values, float)
    ok = v[np.isfinite(v)]
    if not len(ok):
        return {name: np.nan, f"{name}_lo": np.nan, f"{name}_hi": np.nan, f"{name}_nan": len(v)}
    lo, hi = np.quantile(ok, [0.025, 0.975])
    return {name: float(ok.mean()), f"{name}_lo": float(lo), f"{name}_hi": float(hi),
            f"{name}_nan": int(len(v) - len(ok))}


def calibrate(pb: np.ndarray, ps: np.ndarray, pa: np.ndarray, pbb: np.ndarray,
              rng: np.random.Generator, reps: int, k_lit: int, split_reps: int = 20) -> dict:
    """What the statistics of one cell would be if SGD sampled exactly from P_B.

    ``pb``, ``ps``, ``pa``, ``pbb``: counts ``(K,)`` of the same functions in the whole prior
    sample (both halves, ``A`` accepted networks), in the ``n`` SGD runs, and in halves a and b.

    * ``*_null`` (ceiling): parametric bootstrap with the estimated P_B as the truth:
      ``pb' ~ Multinomial(A, pb / A)``, ``ps' ~ Multinomial(n, pb / A)`` (same sample sizes,
      same selection rule), ``reps`` times: mean, 2.5 % and 97.5 % quantiles, NaN replicates.
    * ``spearman_split`` (ceiling without a model): half a against ``n`` networks drawn without
      replacement from half b (both exact samples of P_B; half a has only ``A / 2`` networks,
      so this ceiling is lower than the one at the real sample sizes), mean of ``split_reps``.
    * ``spearman_floor``: SGD's counts shuffled over the functions (SGD frequencies unrelated
      to volume, same two marginal distributions, same selection), mean of ``reps``.
    """
    A, n = int(pb.sum()), int(ps.sum())
    p = pb / A
    PB, PS = rng.multinomial(A, p, size=reps), rng.multinomial(n, p, size=reps)
    rho_null = [order_stat(PB[r], PS[r]) for r in range(reps)]
    lit_null = [lit_stat(PB[r], PS[r], k_lit)[0] for r in range(reps)]
    floor = [order_stat(pb, rng.permutation(ps)) for _ in range(reps)]
    m = int(min(n, pbb.sum()))
    split = [order_stat(pa, rng.multivariate_hypergeometric(pbb.astype(np.int64), m))
             for _ in range(split_reps)]
    out = {**_summary(rho_null, "spearman_null"), **_summary(lit_null, "lit_null")}
    out.update(spearman_floor=float(np.nanmean(floor)) if np.isfinite(floor).any() else np.nan,
               spearman_split=float(np.nanmean(split)) if np.isfinite(split).any() else np.nan)
    return out


def proportion_null(n: int, top_b: int, n_b: int, rng: np.random.Generator,
                    reps: int) -> dict:
    """Test 2b's statistic if SGD sampled exactly from P_B: SGD's ``n`` runs put
    ``X ~ Binomial(n, q)`` on the top-10 functions, the measuring half puts
    ``Y ~ Binomial(n_b, q)``, with ``q = top_b / n_b`` as the truth; returns the mean and the
    2.5 % and 97.5 % quantiles of ``log2((max(X, 0.5) / n) / (max(Y, 0.5) / n_b))``."""
    q = top_b / max(n_b, 1)
    x = np.maximum(rng.binomial(n, q, reps), 0.5) / max(n, 1)
    y = np.maximum(rng.binomial(max(n_b, 1), q, reps), 0.5) / max(n_b, 1)
    return _summary(np.log2(x / y), "log2_ratio_null")


def vs_train_chunk(seed: int, chunk: int, cells: Sequence[Sequence], setting: str,
                   n_inputs: int, hidden: Sequence[int], sigma_w: float, sigma_b: float,
                   activation: str, encoding: str, train_size: int, lrs: dict, sgd_runs: int,
                   max_steps: int, long_loss: float, device: str = "cpu") -> list[dict]:
    """The SGD runs of some cells of :func:`volume_vs_sgd` (a unit of
    :func:`countingargs.chunks.map_chunks`): for each ``[seed, target, optimiser]`` in
    ``cells``, ``sgd_runs`` networks trained together (one batched :func:`train_to_fit`) from the
    initial networks ``seed_int("vs-train", setting, seed, target)`` on the training set
    ``rng("vs-split", seed, target)``, rebuilt here from those keys. Each cell depends only on
    its own keys, so the results do not depend on how cells are grouped into chunks nor where
    the chunks run (``seed`` and ``chunk`` name the chunk in reports). Returns one dict per
    cell: ``codes (sgd_runs, W)``, ``fitted`` and ``steps``."""
    L = 2 ** n_inputs
    X = cube(n_inputs, encoding=encoding)
    out = []
    for s, tname, oname in cells:
        tb = target_bits(tname, n_inputs)
        S = np.sort(seeded_rng("vs-split", int(s), tname).choice(L, train_size, replace=False))
        opt, bs, long = parse_optimiser(oname)
        tr = train_to_fit(X[S], torch.from_numpy(tb[S]), X, sgd_runs, hidden, sigma_w, sigma_b,
                          activation, opt, lrs[opt], bs, max_steps,
                          seed=seed_int("vs-train", setting, int(s), tname),
                          loss_target=long_loss if long else None, device=device)
        out.append(dict(codes=tr.codes, fitted=tr.fitted, steps=tr.steps))
    return out


def _groups(items: list, size: int) -> list[list]:
    if size < 1:
        raise ValueError(f"the group size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]


def volume_vs_sgd(n_inputs: int, hidden: Sequence[int], sigma_w: float, sigma_b: float,
                  prior_samples: int, train_size: int, targets: Sequence[str],
                  optimisers: Sequence[str], lrs: dict, sgd_runs: int, max_steps: int,
                  seeds: Sequence[int], setting: str = "main", activation: str = "relu",
                  encoding: str = "01", long_loss: float = 0.01, null_reps: int = 200,
                  k_lit: int = 5, scatter_seed: int = 0, cells_per_chunk: int = 1,
                  scheduler: str | None = None, device: str = "cpu") -> dict[str, pd.DataFrame]:
    """P_B(f|S) by exact rejection sampling against P_SGD(f|S) from ``sgd_runs`` training runs,
    per seed (fresh prior sample in two halves, fresh training set), target and optimiser, for
    one prior ``setting`` (activation, input encoding, sigma_w).

    Streams: the prior halves ``seed_int("vs-prior", setting, seed, "a" | "b")``, the training
    set ``rng("vs-split", seed, target)`` (the same in every setting), the initial networks
    ``seed_int("vs-train", setting, seed, target)`` (the same for every optimiser), the
    calibration ``rng("vs-null", setting, seed, target, optimiser)``. Returns the tables
    ``volume_vs_sgd`` (one row per cell: the statistics, their calibration (:func:`calibrate`),
    step counts, and how much each run's final function on the held-out inputs still agrees
    with its initial one, against another run's initial one), ``volume_vs_sgd_scatter`` (the
    functions compared in seed ``scatter_seed``) and ``offset_error`` (distribution of the
    off-S error per cell and source: each optimiser and ``volume``). ``scheduler``: where the
    prior halves are sampled (:func:`sample_functions`) and the SGD runs trained
    (:func:`vs_train_chunk` through :func:`countingargs.chunks.map_chunks`, ``cells_per_chunk``
    cells ``(seed, target, optimiser)`` per chunk); the same tables anywhere on CPU, whatever
    the grouping. ``device``: where the prior is sampled and the networks trained (CUDA: other
    streams)."""
    from ...chunks import map_chunks

    L = 2 ** n_inputs
    halves = {}
    for s in progress(list(seeds), desc=f"volume vs SGD, prior ({setting})"):
        halves[s] = tuple(sample_functions(n_inputs, hidden, prior_samples // 2, sigma_w, sigma_b,
                                           activation, seed=seed_int("vs-prior", setting, s, h),
                                           encoding=encoding, scheduler=scheduler, device=device)
                          for h in "ab")
    cells = [[int(s), str(t), str(o)] for s in seeds for t in targets for o in optimisers]
    common = dict(setting=setting, n_inputs=n_inputs, hidden=[int(h) for h in hidden],
                  sigma_w=float(sigma_w), sigma_b=float(sigma_b), activation=activation,
                  encoding=encoding, train_size=int(train_size),
                  lrs={k: float(v) for k, v in lrs.items()}, sgd_runs=int(sgd_runs),
                  max_steps=int(max_steps), long_loss=float(long_loss), device=str(device))
    chunks = [dict(seed=g[0][0], chunk=i, cells=g, **common)
              for i, g in enumerate(_groups(cells, cells_per_chunk))]
    run = map_chunks(vs_train_chunk, chunks, name=f"vs-train-{setting}", scheduler=scheduler)
    trained = {tuple(c): r for c, r in zip(cells, (r for res in run.results for r in res))}
    rows, scatter, errs = [], [], []
    for s in seeds:
        half_a, half_b = halves[s]
        both = FunctionCounts.merge([half_a, half_b])
        for tname in targets:
            tb = target_bits(tname, n_inputs)
            S = np.sort(seeded_rng("vs-split", s, tname).choice(L, train_size, replace=False))
            test = np.setdiff1d(np.arange(L), S)
            m_all = consistent_mask(both.codes, tb, S, L)
            pb_codes, pb_counts = both.codes[m_all], both.counts[m_all]
            m_a = consistent_mask(half_a.codes, tb, S, L)
            m_b = consistent_mask(half_b.codes, tb, S, L)
            top10 = half_a.codes[m_a][np.argsort(-half_a.counts[m_a], kind="stable")[:10]]
            n_b = int(half_b.counts[m_b].sum())
            top10_b = lookup(top10, half_b.codes[m_b], half_b.counts[m_b]).sum()
            err_pb = offset_errors(pb_codes, tb, test, L)
            errs.append(_error_hist(setting, s, tname, "volume", err_pb, pb_counts, len(test)))
            train_seed = seed_int("vs-train", setting, s, tname)
            init = unpack_bits(sample_functions(n_inputs, hidden, sgd_runs, sigma_w, sigma_b,
                                                activation, seed=train_seed, keep_samples=True,
                                                encoding=encoding, device=device)[1], L)[:, test]
            for oname in optimisers:
                tr = trained[int(s), str(tname), str(oname)]
                fit = tr["fitted"]
                sc, sn = count_rows(tr["codes"][fit])
                keys, _ = count_rows(np.concatenate([pb_codes, sc]))
                pb, ps = lookup(keys, pb_codes, pb_counts), lookup(keys, sc, sn)
                pa = lookup(keys, half_a.codes[m_a], half_a.counts[m_a])
                pbb = lookup(keys, half_b.codes[m_b], half_b.counts[m_b])
                cal = calibrate(pb, ps, pa, pbb, seeded_rng("vs-null", setting, s, tname, oname),
                                null_reps, k_lit)
                lit, n_lit = lit_stat(pb, ps, k_lit)
                cal.update(proportion_null(int(sn.sum()), int(top10_b), n_b,
                                           seeded_rng("vs-null-top10", setting, s, tname, oname),
                                           null_reps))
                final = unpack_bits(tr["codes"], L)[:, test]
                err_sgd = offset_errors(sc, tb, test, L)
                errs.append(_error_hist(setting, s, tname, oname, err_sgd, sn, len(test)))
                rows.append(dict(setting=setting, seed=s, target=tname, optimiser=oname,
                                 train_size=train_size, prior_samples=both.n_samples,
                                 accepted=int(pb_counts.sum()), pb_distinct=len(pb_counts),
                                 sgd_runs=sgd_runs, sgd_fitted=int(fit.sum()), sgd_distinct=len(sn),
                                 median_steps=float(np.median(tr["steps"][fit])),
                                 p90_steps=float(np.percentile(tr["steps"][fit], 90)),
                                 fit_at_init=float((tr["steps"][fit] == 0).mean()),
                                 init_agree=float((final[fit] == init[fit]).mean()),
                                 init_agree_other=float((final[fit] == np.roll(init, 1, 0)[fit]).mean()),
                                 n_compared=int(((pb >= 2) | (ps >= 2)).sum()),
                                 spearman=order_stat(pb, ps), lit=lit, lit_n=n_lit, k_lit=k_lit,
                                 long_loss=long_loss, **cal,
                                 sgd_top10=int(lookup(top10, sc, sn).sum()), sgd_n=int(sn.sum()),
                                 pb_top10_b=int(top10_b), pb_n_b=n_b,
                                 acc_sgd=1 - np.average(err_sgd, weights=sn) / len(test),
                                 acc_pb=1 - np.average(err_pb, weights=pb_counts) / len(test),
                                 gen_sgd=float(np.average(err_sgd <= 0.1 * len(test), weights=sn)),
                                 gen_pb=float(np.average(err_pb <= 0.1 * len(test), weights=pb_counts))))
                if s == scatter_seed:
                    sel = (pb >= 2) | (ps >= 2)
                    scatter.append(pd.DataFrame(dict(setting=setting, target=tname, optimiser=oname,
                                                     n_b=pb[sel], n_sgd=ps[sel],
                                                     total_b=pb_counts.sum(), total_sgd=sn.sum())))
    return {"volume_vs_sgd": pd.DataFrame(rows),
            "volume_vs_sgd_scatter": pd.concat(scatter, ignore_index=True),
            "offset_error": pd.concat(errs, ignore_index=True)}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation, NaN when fewer than three pairs or a constant side (reported as
    undefined by the analysis, never filled in)."""
    from scipy import stats as st

    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(st.spearmanr(a, b).statistic)


def _error_hist(setting, seed, target, source, err, weight, n_test) -> pd.DataFrame:
    """Share of the weight at each number of off-S errors ``0..n_test``."""
    h = np.bincount(np.asarray(err, int), weights=np.asarray(weight, float), minlength=n_test + 1)
    return pd.DataFrame(dict(setting=setting, seed=seed, target=target, source=source,
                             errors=np.arange(n_test + 1), n_test=n_test, share=h / h.sum()))


# ---------------------------------------------------------------------------------------------
# experiment 3: guess-and-check against SGD on the digits
# ---------------------------------------------------------------------------------------------
GC_METHODS = ("guess-and-check", "sgd-first-fit", "sgd-low-loss", "sgd-small-lr")


@functools.lru_cache(maxsize=1)
def _digits():
    """``load_digits``, pixels / 16, as float32, and the labels (read once per process)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data / 16.0, dtype=torch.float32), d.target


_PAIRS = [(a, b) for a in range(10) for b in range(a + 1, 10)]


def gc_chunk(seed: int, chunk: int, cells: Sequence[Sequence[int]], hidden: Sequence[int],
             n_accept: int, max_draws: int, sgd_runs: int, lr: float, max_steps: int,
             loss_target: float, small_lr: float) -> list[tuple[dict, list[pd.DataFrame]]]:
    """Some cells ``[seed, k]`` of :func:`guess_and_check_digits` (a unit of
    :func:`countingargs.chunks.map_chunks`): the digits, the class pair and the training set
    are rebuilt from the cell's keys, guess-and-check and the SGD variants draw from the cell's
    own streams, so a cell's result does not depend on the chunk that holds it nor on where it
    runs. Returns per cell its row of ``guess_and_check`` and its tables of ``gc_networks``."""
    Xd, yd = _digits()
    variants = [("sgd-first-fit", lr, None), ("sgd-low-loss", lr, loss_target),
                ("sgd-small-lr", small_lr, None)]
    out = []
    for s, k in cells:
        s, k = int(s), int(k)
        a, b = _PAIRS[seeded_rng("gc-pair", s).integers(len(_PAIRS))]
        pool = np.flatnonzero((yd == a) | (yd == b))
        rng = seeded_rng("gc-split", s, k)
        tr = np.concatenate([rng.choice(np.flatnonzero(yd == a), k // 2, replace=False),
                             rng.choice(np.flatnonzero(yd == b), k - k // 2, replace=False)])
        te = np.setdiff1d(pool, tr)
        ytr, yte = torch.from_numpy(yd[tr] == b), torch.from_numpy(yd[te] == b)
        g = guess_and_check(Xd[tr], ytr, Xd[te], yte, hidden, n_accept, max_draws,
                            seed=seed_int("gc-draw", s, k))
        row = dict(seed=s, classes=f"{a}v{b}", k=k, n_test=len(te), lr=lr, small_lr=small_lr,
                   loss_target=loss_target, draws=g.draws, accepted=g.accepted,
                   acc_gc=float(g.test_acc.mean()) if g.accepted else np.nan)
        nets = []
        if g.accepted:
            o = forward_block(g.params[:n_accept], Xd[tr].T.contiguous(), Xd.shape[1], hidden)
            nets.append(_net_rows(s, k, "guess-and-check", o, ytr, g.test_acc[:n_accept],
                                  np.zeros(len(o))))
        x_eval = torch.cat([Xd[tr], Xd[te]])
        for name, rate, lt in variants:
            r = train_to_fit(Xd[tr], ytr, x_eval, sgd_runs, hidden, init="uniform",
                             optimizer="sgd", lr=rate, max_steps=max_steps,
                             seed=seed_int("gc-sgd", s, k), loss_target=lt)
            acc = ((r.outputs[:, k:] > 0) == yte).float().mean(1).numpy()
            f = r.fitted
            tag = name.removeprefix("sgd-").replace("-", "_")
            row[f"acc_sgd_{tag}"] = float(acc[f].mean()) if f.any() else np.nan
            row[f"fit_share_{tag}"] = float(f.mean())
            row[f"median_steps_{tag}"] = float(np.median(r.steps[f])) if f.any() else np.nan
            nets.append(_net_rows(s, k, name, r.outputs[f, :k], ytr, acc[f], r.steps[f]))
        out.append((row, nets))
    return out


def guess_and_check_digits(seeds: Sequence[int], sizes: Sequence[int], hidden: Sequence[int],
                           n_accept: int, max_draws: int, sgd_runs: int, lr: float,
                           max_steps: int, loss_target: float, small_lr: float,
                           cells_per_chunk: int = 1,
                           scheduler: str | None = None) -> dict[str, pd.DataFrame]:
    """Chiang et al.'s guess-and-check on two-class subsets of ``load_digits`` (pixels / 16).

    Per seed a random class pair (``rng("gc-pair", seed)``), per size ``k`` a balanced training
    set (``rng("gc-split", seed, k)``), the rest of the two classes as the test set; networks
    accepted by guess-and-check (stream ``seed_int("gc-draw", seed, k)``) against SGD from the
    same prior (stream ``seed_int("gc-sgd", seed, k)``, the same initial networks for every
    variant): learning rate ``lr`` stopped at the first fit (``sgd-first-fit``) or once its
    training loss is at most ``loss_target`` (``sgd-low-loss``), and learning rate ``small_lr``
    stopped at the first fit (``sgd-small-lr``, many more steps).

    The cells ``(seed, k)`` run as chunks of :func:`countingargs.chunks.map_chunks`
    (:func:`gc_chunk`, ``cells_per_chunk`` cells each) on ``scheduler``; the same tables
    whatever the grouping and wherever they run on CPU.

    Returns ``guess_and_check`` (one row per seed and size: draws, accepted networks, mean test
    accuracy of each method, fitted share and median steps of each SGD variant) and
    ``gc_networks`` (one row per network: method, training loss (mean binary cross-entropy),
    test accuracy, steps; the first ``n_accept`` accepted networks of guess-and-check)."""
    from ...chunks import map_chunks

    cells = [[int(s), int(k)] for s in seeds for k in sizes]
    common = dict(hidden=[int(h) for h in hidden], n_accept=int(n_accept),
                  max_draws=int(max_draws), sgd_runs=int(sgd_runs), lr=float(lr),
                  max_steps=int(max_steps), loss_target=float(loss_target),
                  small_lr=float(small_lr))
    chunks = [dict(seed=g[0][0], chunk=i, cells=g, **common)
              for i, g in enumerate(_groups(cells, cells_per_chunk))]
    run = map_chunks(gc_chunk, chunks, name="guess-and-check", scheduler=scheduler)
    done = [cell for res in run.results for cell in res]
    return {"guess_and_check": pd.DataFrame([row for row, _ in done]),
            "gc_networks": pd.concat([n for _, nets in done for n in nets], ignore_index=True)}


def _net_rows(seed, k, method, out_train, y_train, test_acc, steps) -> pd.DataFrame:
    """One row per network: its training loss (from ``out_train (M, k)``), test accuracy, steps."""
    loss = binary_cross_entropy(out_train, y_train.float()).numpy()
    return pd.DataFrame(dict(seed=seed, k=k, method=method, train_loss=loss,
                             test_acc=np.asarray(test_acc, float), steps=np.asarray(steps, int)))
