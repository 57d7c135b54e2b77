"""Random networks on the n-bit cube: the prior over functions, volume, and what SGD finds.

This module is the sampler and the batched trainer behind chapter 2 (``02_volume``); other
chapters may reuse them. Everything is batched: a tensor call evaluates many networks at once,
never one network per Python iteration.

The system
----------
A fully connected network ``n -> hidden[0] -> ... -> 1`` is evaluated on all ``L = 2**n`` inputs
of the cube ``{0, 1}^n`` (input ``i`` has bits ``x_1 ... x_n`` = the binary digits of ``i``,
``x_1`` the most significant, so the inputs are in lexicographic order). Its *function* is the
``L``-bit string ``f_i = [output(x_i) > 0]``. The prior is Gaussian:
``W ~ N(0, sigma_w**2 / fan_in)``, ``b ~ N(0, sigma_b**2)``, activation ``relu`` or ``tanh``.

Exact encoding: a function is packed into ``W = ceil(L / 64)`` 64-bit words (bit ``i % 64`` of
word ``i // 64`` is ``f_i``), stored as ``int64``; two networks compute the same function iff
their words are equal. Counting sorts the words (no hashing, so no collisions).

Speed (see ``benchmarks/sampler.py``)
-------------------------------------
* Random numbers: one ``normal_`` call per *chunk* of networks (``chunk`` networks x P
  parameters) with that chunk's own generator, seeded from ``(seed, chunk index)``. torch's CPU
  ``normal_`` runs on one thread, so chunks are spread over a pool of worker threads (one torch
  thread each): random numbers are drawn on all cores at once, and the counts do not depend on
  the number of workers.
* Arithmetic in cache: each chunk is evaluated in sub-blocks of ``block`` networks (default 64,
  about 1.3 MB of activations, which stays in L2), in the transposed layout
  ``h^T = W^T h_prev^T``: layer 1 of the whole block is one ``addmm``
  ``(block*h1, n) @ (n, L)``, the next layers are ``baddbmm`` calls on ``(block, h, L)``.
  Out-of-cache batched matmuls of these sizes run 3 to 5 times slower on a 2-core machine.
* On CUDA (``device="cuda"``) one chunk is one set of tensor calls, no threads; the results have
  the same format but a different random stream.

Usage of the benchmark (prints networks/s, achieved GFLOP/s over the whole wall time, the same
run's dense float32 matmul GFLOP/s, their ratio, the speedup over a per-network loop and a time
breakdown)::

    python benchmarks/sampler.py                 # 7->40->40->1 relu, 2e5 networks
    python benchmarks/sampler.py --samples 1000000 --device cuda --chunk 65536

Main entry points
-----------------
``sample_functions(n_inputs, hidden, n_samples, sigma_w, sigma_b, activation, seed, chunk)``
    -> :class:`FunctionCounts` (distinct functions and how often each appeared).
``sample_chunk(n_inputs, hidden, n_nets, sigma_w, sigma_b, activation, seed, chunk_index)``
    -> :class:`Chunk` with the parameters, the functions *and* the hidden activations.
``train_to_fit(...)``: many networks from the same prior, trained (SGD or Adam, batched) until
    each one fits a training set; returns the functions they end at.
``lz_complexity(bits)``: Lempel-Ziv complexity of bit strings as in Valle-Perez et al. (2019).
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

ACTIVATIONS = ("relu", "tanh")


class torch_threads:
    """Context manager: run the block with ``n`` torch threads, then restore the old count.
    The trainer uses one thread: its tensors are small, and on a busy 2-core machine every
    parallel region of a small op can wait a whole scheduler slice for its second thread."""

    def __init__(self, n: int):
        self.n = int(n)

    def __enter__(self):
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)
        return False


# ---------------------------------------------------------------------------------------------
# the cube, parameters, forward passes
# ---------------------------------------------------------------------------------------------
def cube(n_inputs: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """All ``2**n_inputs`` points of ``{0,1}^n``, shape ``(2**n, n)``, lexicographic order
    (row ``i`` holds the binary digits of ``i``, most significant first)."""
    if not isinstance(n_inputs, (int, np.integer)) or not 1 <= n_inputs <= 16:
        raise ValueError(f"n_inputs must be an integer in [1, 16], got {n_inputs!r}")
    i = torch.arange(2 ** n_inputs, device=device)
    shifts = torch.arange(n_inputs - 1, -1, -1, device=device)
    return ((i[:, None] >> shifts) & 1).to(dtype)


def cube_bits(n_inputs: int) -> np.ndarray:
    """``cube(n)`` as a numpy bool array ``(2**n, n)``."""
    return cube(n_inputs).numpy().astype(bool)


def _check(n_inputs, hidden, sigma_w, sigma_b, activation):
    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if not (sigma_w > 0 and sigma_b >= 0):
        raise ValueError(f"need sigma_w > 0 and sigma_b >= 0, got {sigma_w}, {sigma_b}")
    if not isinstance(n_inputs, (int, np.integer)) or n_inputs < 1:
        raise ValueError(f"n_inputs must be a positive integer, got {n_inputs!r}")
    return hidden


def layer_sizes(n_inputs: int, hidden: Sequence[int]) -> list[int]:
    return [int(n_inputs), *[int(h) for h in hidden], 1]


def n_params(n_inputs: int, hidden: Sequence[int]) -> int:
    """Parameters of one network (weights and biases)."""
    s = layer_sizes(n_inputs, hidden)
    return sum(a * b + b for a, b in zip(s[:-1], s[1:]))


def forward_flops(n_inputs: int, hidden: Sequence[int]) -> int:
    """Floating-point operations of one network's forward pass on all ``2**n`` inputs:
    ``2 * fan_in * fan_out`` per layer and input (multiply-adds), plus the bias adds and the
    activations (one each per unit and input)."""
    s = layer_sizes(n_inputs, hidden)
    L = 2 ** n_inputs
    mm = sum(2 * a * b for a, b in zip(s[:-1], s[1:]))
    return L * (mm + sum(s[1:]) + sum(s[1:-1]))


def chunk_generator(seed: int, chunk_index: int, device="cpu") -> torch.Generator:
    """The generator of chunk ``chunk_index`` of stream ``seed`` (independent of worker count)."""
    if seed < 0 or chunk_index < 0:
        raise ValueError(f"seed and chunk_index must be >= 0, got {seed}, {chunk_index}")
    state = np.random.SeedSequence([int(seed), int(chunk_index)]).generate_state(2, np.uint32)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
    return g


def draw_params(n_nets: int, n_inputs: int, hidden: Sequence[int], sigma_w: float,
                sigma_b: float, generator: torch.Generator, device="cpu",
                init: str = "gaussian") -> torch.Tensor:
    """Parameters of ``n_nets`` networks as one flat buffer ``(n_nets, P)`` (one ``normal_``
    call, or ``uniform_`` in [-1, 1] when ``init="uniform"``, as in Chiang et al.'s
    guess-and-check). Read it with :func:`unpack_params`. Gaussian: weights scaled by
    ``sigma_w / sqrt(fan_in)``, biases by ``sigma_b`` (``sigma_*`` are ignored for uniform)."""
    s = layer_sizes(n_inputs, hidden)
    P = n_params(n_inputs, hidden)
    buf = torch.empty(n_nets, P, device=device)
    if init == "gaussian":
        buf.normal_(generator=generator)
        o = 0
        for a, b in zip(s[:-1], s[1:]):
            buf[:, o:o + a * b].mul_(sigma_w / math.sqrt(a))
            o += a * b
            buf[:, o:o + b].mul_(sigma_b)
            o += b
    elif init == "uniform":
        buf.uniform_(-1.0, 1.0, generator=generator)
    else:
        raise ValueError(f"init must be 'gaussian' or 'uniform', got {init!r}")
    return buf


def unpack_params(buf: torch.Tensor, n_inputs: int, hidden: Sequence[int]):
    """Views of a flat buffer ``(M, P)`` as per-layer ``(W_t, b)`` pairs in the *transposed*
    layout used by the fast path: ``W_t (M, fan_out, fan_in)``, ``b (M, fan_out, 1)``.
    The standard weight of layer ``l`` of network ``m`` is ``W_t[m].T`` (``(fan_in, fan_out)``)."""
    s = layer_sizes(n_inputs, hidden)
    M = buf.shape[0]
    if buf.shape[1] != n_params(n_inputs, hidden):
        raise ValueError(f"buffer has {buf.shape[1]} parameters per network, the architecture "
                         f"{s} needs {n_params(n_inputs, hidden)}")
    out, o = [], 0
    for a, b in zip(s[:-1], s[1:]):
        W_t = buf[:, o:o + a * b].view(M, b, a)
        o += a * b
        bias = buf[:, o:o + b].view(M, b, 1)
        o += b
        out.append((W_t, bias))
    return out


def _act(h: torch.Tensor, activation: str) -> torch.Tensor:
    return h.relu_() if activation == "relu" else h.tanh_()


def forward_block(buf: torch.Tensor, x_t: torch.Tensor, n_inputs: int, hidden: Sequence[int],
                  activation: str = "relu", return_hidden: bool = False):
    """Outputs of networks ``buf (M, P)`` on inputs ``x_t (n, B)`` (transposed inputs).

    Returns ``out (M, B)`` and, if asked, the hidden activations as a list of ``(M, h_l, B)``
    tensors (transposed layout). Layer 1 of all M networks is one ``addmm``; later layers are
    ``baddbmm``. Keep ``M`` small (about 64) for the activations to stay in cache."""
    layers = unpack_params(buf, n_inputs, hidden)
    M, B = buf.shape[0], x_t.shape[1]
    W_t, b = layers[0]
    h1 = layers[0][0].shape[1]
    h = torch.addmm(b.reshape(M * h1, 1), W_t.reshape(M * h1, n_inputs), x_t)
    h = _act(h, activation).view(M, h1, B)
    hid = [h] if return_hidden else None
    for W_t, b in layers[1:-1]:
        h = _act(torch.baddbmm(b, W_t, h), activation)
        if return_hidden:
            hid.append(h)
    W_t, b = layers[-1]
    out = torch.baddbmm(b, W_t, h).view(M, B)
    return (out, hid) if return_hidden else out


def forward_per_network(buf: torch.Tensor, x: torch.Tensor, n_inputs: int,
                        hidden: Sequence[int], activation: str = "relu") -> torch.Tensor:
    """The straightforward reference: a Python loop over networks, each a chain of
    ``x @ W + b`` in the standard layout, on one torch thread (faster than two for matrices
    this small). ``x (B, n)``; returns ``(M, B)``."""
    with torch_threads(1):
        return _forward_per_network(buf, x, n_inputs, hidden, activation)


def _forward_per_network(buf, x, n_inputs, hidden, activation):
    outs = []
    act = torch.relu if activation == "relu" else torch.tanh
    for m in range(buf.shape[0]):
        layers = unpack_params(buf[m:m + 1], n_inputs, hidden)
        h = x
        for i, (W_t, b) in enumerate(layers):
            h = h @ W_t[0].T + b[0].T
            if i < len(layers) - 1:
                h = act(h)
        outs.append(h[:, 0])
    return torch.stack(outs)


# ---------------------------------------------------------------------------------------------
# exact encoding of functions
# ---------------------------------------------------------------------------------------------
def n_words(n_bits: int) -> int:
    return (n_bits + 63) // 64


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """``bits (M, L)`` bool -> ``(M, ceil(L/64))`` int64 words; bit ``i % 64`` of word ``i // 64``
    is ``bits[:, i]`` (word values are two's-complement views of the 64-bit patterns)."""
    if bits.dim() != 2:
        raise ValueError(f"pack_bits wants (M, L) bits, got shape {tuple(bits.shape)}")
    M, L = bits.shape
    W = n_words(L)
    if L % 64:
        bits = torch.nn.functional.pad(bits, (0, 64 * W - L))
    shifts = torch.arange(64, device=bits.device, dtype=torch.int64)
    return (bits.view(M, W, 64).to(torch.int64) << shifts).sum(-1)


def unpack_bits(words: np.ndarray | torch.Tensor, n_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``(K, W)`` words -> ``(K, n_bits)`` bool (numpy)."""
    w = np.ascontiguousarray(np.asarray(words, dtype=np.int64))
    if w.ndim != 2 or w.shape[1] != n_words(n_bits):
        raise ValueError(f"words of shape {w.shape} do not hold {n_bits} bits")
    b = np.unpackbits(w.view(np.uint8).reshape(w.shape[0], -1), axis=1, bitorder="little")
    return b[:, :n_bits].astype(bool)


def pack_bits_np(bits: np.ndarray) -> np.ndarray:
    """numpy version of :func:`pack_bits` (``(K, L)`` bool -> ``(K, W)`` int64)."""
    return pack_bits(torch.from_numpy(np.ascontiguousarray(bits, dtype=bool))).numpy()


def count_rows(codes: np.ndarray, weights: np.ndarray | None = None):
    """Distinct rows of ``codes (N, W)`` int64 and their (weighted) counts, sorted
    lexicographically. Exact (sort-based, no hashing)."""
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (N, W), got shape {codes.shape}")
    if weights is None:
        weights = np.ones(len(codes), dtype=np.int64)
    if len(codes) == 0:
        return codes.copy(), np.zeros(0, np.int64)
    order = np.lexsort(codes.T[::-1])
    c = codes[order]
    new = np.ones(len(c), dtype=bool)
    new[1:] = np.any(c[1:] != c[:-1], axis=1)
    starts = np.flatnonzero(new)
    counts = np.add.reduceat(np.asarray(weights)[order], starts)
    return c[starts], counts.astype(np.int64)


@dataclass
class FunctionCounts:
    """Distinct functions and their counts.

    ``codes (K, W)`` int64 packed functions (see :func:`pack_bits`), ``counts (K,)``,
    ``n_samples`` = counts.sum(), ``n_bits`` = 2**n_inputs, ``timing`` seconds per stage."""

    codes: np.ndarray
    counts: np.ndarray
    n_bits: int
    timing: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())

    @property
    def n_distinct(self) -> int:
        return int(len(self.counts))

    def bits(self, idx=None) -> np.ndarray:
        """Bit strings ``(K', n_bits)`` of functions ``idx`` (all if None)."""
        c = self.codes if idx is None else self.codes[idx]
        return unpack_bits(c, self.n_bits)

    def top(self, k: int) -> np.ndarray:
        """Indices of the ``k`` most frequent functions (ties broken by code order)."""
        return np.argsort(-self.counts, kind="stable")[:k]

    @staticmethod
    def merge(parts: Sequence["FunctionCounts"]) -> "FunctionCounts":
        if not parts:
            raise ValueError("merge needs at least one FunctionCounts")
        codes, counts = count_rows(np.concatenate([p.codes for p in parts]),
                                   np.concatenate([p.counts for p in parts]))
        return FunctionCounts(codes, counts, parts[0].n_bits)


# ---------------------------------------------------------------------------------------------
# the sampler
# ---------------------------------------------------------------------------------------------
@dataclass
class Chunk:
    """One chunk of random networks: ``params (M, P)`` flat buffer, ``out (M, L)`` outputs,
    ``codes (M, W)`` packed functions, ``hidden`` list of ``(M, L, h_l)`` activations
    (standard layout, inputs by units)."""

    params: torch.Tensor
    out: torch.Tensor
    codes: torch.Tensor
    hidden: list


def sample_chunk(n_inputs: int, hidden: Sequence[int], n_nets: int, sigma_w: float = 1.0,
                 sigma_b: float = 0.0, activation: str = "relu", seed: int = 0,
                 chunk_index: int = 0, device="cpu") -> Chunk:
    """Functions *and* hidden activations of one chunk of random networks.

    The networks are exactly those of chunk ``chunk_index`` of :func:`sample_functions` with the
    same ``seed`` and ``chunk = n_nets``, so statistics of hidden units can be joined to the
    functions. Returns a :class:`Chunk`."""
    hidden = _check(n_inputs, hidden, sigma_w, sigma_b, activation)
    g = chunk_generator(seed, chunk_index, device)
    buf = draw_params(n_nets, n_inputs, hidden, sigma_w, sigma_b, g, device)
    x_t = cube(n_inputs, device=device).T.contiguous()
    out, hid = forward_block(buf, x_t, n_inputs, hidden, activation, return_hidden=True)
    codes = pack_bits(out > 0)
    return Chunk(buf, out, codes, [h.transpose(1, 2) for h in hid])


def _chunk_codes(args):
    (n_inputs, hidden, n_nets, sigma_w, sigma_b, activation, seed, ci, block, device,
     init) = args
    t0 = time.perf_counter()
    g = chunk_generator(seed, ci, device)
    buf = draw_params(n_nets, n_inputs, hidden, sigma_w, sigma_b, g, device, init=init)
    t1 = time.perf_counter()
    x_t = cube(n_inputs, device=device).T.contiguous()
    codes = torch.empty(n_nets, n_words(2 ** n_inputs), dtype=torch.int64, device=device)
    t_fwd = t_pack = 0.0
    for s in range(0, n_nets, block):
        ta = time.perf_counter()
        out = forward_block(buf[s:s + block], x_t, n_inputs, hidden, activation)
        tb = time.perf_counter()
        codes[s:s + block] = pack_bits(out > 0)
        t_pack += time.perf_counter() - tb
        t_fwd += tb - ta
    codes = codes.cpu().numpy()
    return codes, {"random": t1 - t0, "forward": t_fwd, "encode": t_pack}


def sample_functions(n_inputs: int = 7, hidden: Sequence[int] = (40, 40),
                     n_samples: int = 100_000, sigma_w: float = 1.0, sigma_b: float = 0.0,
                     activation: str = "relu", seed: int = 0, chunk: int = 2048,
                     device: str = "cpu", workers: int | None = None, block: int = 64,
                     keep_samples: bool = False):
    """Sample ``n_samples`` random networks and count the functions they compute.

    Networks are drawn in chunks of ``chunk`` (the last one may be smaller); chunk ``c`` uses
    :func:`chunk_generator` ``(seed, c)``, so the counts are a function of the arguments only
    (not of ``workers``, ``block`` or the number of torch threads). ``workers`` threads (default:
    torch's thread count, 1 on CUDA) each run one torch thread.

    Returns :class:`FunctionCounts`; with ``keep_samples=True`` also the per-network codes
    ``(n_samples, W)`` in sampling order."""
    hidden = _check(n_inputs, hidden, sigma_w, sigma_b, activation)
    if n_samples < 1 or chunk < 1 or block < 1:
        raise ValueError(f"n_samples, chunk and block must be >= 1, got {n_samples}, {chunk}, {block}")
    dev = torch.device(device)
    if dev.type == "cuda":
        workers, block = 1, chunk
    n_chunks = (n_samples + chunk - 1) // chunk
    jobs = [(n_inputs, hidden, min(chunk, n_samples - c * chunk), sigma_w, sigma_b, activation,
             seed, c, block, device, "gaussian") for c in range(n_chunks)]
    t0 = time.perf_counter()
    threads_before = torch.get_num_threads()
    workers = workers or threads_before
    results = []
    if workers == 1:
        with torch_threads(1 if dev.type == "cpu" else threads_before):
            results = [_chunk_codes(j) for j in jobs]
    else:
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as ex:
                results = list(ex.map(_chunk_codes, jobs))
        finally:
            torch.set_num_threads(threads_before)
    t1 = time.perf_counter()
    all_codes = np.concatenate([r[0] for r in results])
    codes, counts = count_rows(all_codes)
    t2 = time.perf_counter()
    timing = {k: sum(r[1][k] for r in results) / workers for k in ("random", "forward", "encode")}
    timing.update(sample_wall=t1 - t0, count=t2 - t1, total=t2 - t0, workers=workers)
    fc = FunctionCounts(codes, counts, 2 ** n_inputs, timing)
    return (fc, all_codes) if keep_samples else fc


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
