"""Random networks on the n-bit cube: the prior over functions, volume, and what SGD finds.

This module is the random-network sampler shared by the chapters (02 volume, 03 llama). Everything is batched: a tensor call evaluates many networks at once,
never one network per Python iteration.

The system
----------
A fully connected network ``n -> hidden[0] -> ... -> 1`` is evaluated on all ``L = 2**n`` inputs
of the cube ``{0, 1}^n`` (input ``i`` has bits ``x_1 ... x_n`` = the binary digits of ``i``,
``x_1`` the most significant, so the inputs are in lexicographic order). With
``encoding="pm1"`` the same points are fed as ``{-1, +1}^n`` (bit 0 -> -1, bit 1 -> +1; same
order), the other common encoding of Boolean inputs. Its *function* is the
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

Chapter 02 (``chapters/ch02_volume``) trains networks from this prior until they fit a training
set and measures Lempel-Ziv complexity; chapter 03 (``chapters/ch03_llama``) joins hidden
activations to functions with :func:`sample_chunk`.
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..data.cube import cube as _cube
from .seeding import chunk_generator

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
ENCODINGS = ("01", "pm1")


def cube(n_inputs: int, dtype=torch.float32, device="cpu", encoding: str = "01") -> torch.Tensor:
    """All ``2**n_inputs`` points of ``{0,1}^n`` in the book's bit order (see
    :mod:`countingargs.data.cube`), shape ``(2**n, n)``, limited to ``n <= 16`` here; with
    ``encoding="pm1"`` the same points in ``{-1,+1}^n`` (bit 0 -> -1)."""
    if not isinstance(n_inputs, (int, np.integer)) or not 1 <= n_inputs <= 16:
        raise ValueError(f"n_inputs must be an integer in [1, 16], got {n_inputs!r}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    x = _cube(n_inputs, dtype=dtype, device=device)
    return x * 2 - 1 if encoding == "pm1" else x


def check_architecture(n_inputs, hidden, sigma_w, sigma_b, activation) -> list[int]:
    """The hidden widths as a list of ints, after checking every argument (a clear error names
    the bad one)."""
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
                 chunk_index: int = 0, device="cpu", encoding: str = "01") -> Chunk:
    """Functions *and* hidden activations of one chunk of random networks.

    The networks are exactly those of chunk ``chunk_index`` of :func:`sample_functions` with the
    same ``seed`` and ``chunk = n_nets``, so statistics of hidden units can be joined to the
    functions. Returns a :class:`Chunk`."""
    hidden = check_architecture(n_inputs, hidden, sigma_w, sigma_b, activation)
    check_device(device)
    g = chunk_generator(seed, chunk_index, device)
    buf = draw_params(n_nets, n_inputs, hidden, sigma_w, sigma_b, g, device)
    x_t = cube(n_inputs, device=device, encoding=encoding).T.contiguous()
    out, hid = forward_block(buf, x_t, n_inputs, hidden, activation, return_hidden=True)
    codes = pack_bits(out > 0)
    return Chunk(buf, out, codes, [h.transpose(1, 2) for h in hid])


def check_device(device) -> torch.device:
    """``torch.device(device)``; a clear error when CUDA is asked for and not available."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={str(device)!r} was asked for, but torch.cuda.is_available() "
                           f"is False on {platform.node()} (torch {torch.__version__}); use "
                           "device='cpu' or run on a machine (or Dask worker) with a CUDA GPU")
    return dev


def _chunk_codes(args):
    (n_inputs, hidden, n_nets, sigma_w, sigma_b, activation, seed, ci, block, device,
     init, encoding) = args
    t0 = time.perf_counter()
    g = chunk_generator(seed, ci, device)
    buf = draw_params(n_nets, n_inputs, hidden, sigma_w, sigma_b, g, device, init=init)
    t1 = time.perf_counter()
    x_t = cube(n_inputs, device=device, encoding=encoding).T.contiguous()
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


def sample_task(*, seed: int, chunk: int, first: int, stop: int, size: int, n_samples: int,
                n_inputs: int, hidden: list, sigma_w: float, sigma_b: float, activation: str,
                block: int, device: str, encoding: str, keep_samples: bool):
    """One task of :func:`sample_functions` (a unit of :func:`countingargs.chunks.map_chunks`,
    numbered ``chunk``): sampler chunks ``first .. stop-1`` of ``size`` networks (the last chunk of
    the run holds the rest of ``n_samples``), each with its own generator ``(seed, c)``. Returns
    the distinct functions and their counts, the per-network codes if ``keep_samples`` (else
    None) and the time per stage. How chunks are grouped into tasks never changes the counts."""
    check_device(device)
    parts = [_chunk_codes((n_inputs, hidden, min(size, n_samples - c * size), sigma_w, sigma_b,
                           activation, seed, c, block, device, "gaussian", encoding))
             for c in range(first, stop)]
    codes = np.concatenate([p[0] for p in parts])
    distinct, counts = count_rows(codes)
    timing = {k: sum(p[1][k] for p in parts) for k in ("random", "forward", "encode")}
    return distinct, counts, (codes if keep_samples else None), timing


def sample_functions(n_inputs: int = 7, hidden: Sequence[int] = (40, 40),
                     n_samples: int = 100_000, sigma_w: float = 1.0, sigma_b: float = 0.0,
                     activation: str = "relu", seed: int = 0, chunk: int = 2048,
                     device: str = "cpu", workers: int | None = None, block: int = 64,
                     keep_samples: bool = False, encoding: str = "01",
                     scheduler: str | None = None, per_task: int | None = None,
                     checkpoint: str | None = None):
    """Sample ``n_samples`` random networks and count the functions they compute.

    Networks are drawn in chunks of ``chunk`` (the last one may be smaller); chunk ``c`` uses
    :func:`chunk_generator` ``(seed, c)``, so the counts are a function of the arguments only
    (not of ``workers``, ``block``, ``scheduler``, ``per_task`` or the number of torch threads).
    ``encoding`` (``"01"`` or ``"pm1"``, see :func:`cube`) changes the inputs only: the networks
    drawn are the same.

    Where it runs (:func:`countingargs.chunks.map_chunks`): the chunks are grouped into tasks of
    ``per_task`` networks (a multiple of ``chunk``; default one chunk in process, on Dask about
    four tasks per worker thread and at most 64 chunks), each counted where it runs, then merged. ``scheduler`` ``""`` (the default, unless
    the environment variable ``COUNTINGARGS_SCHEDULER`` says otherwise) runs them in this
    process on ``workers`` threads (default: torch's thread count, 1 on CUDA) of one torch
    thread each; ``"local"``, ``"local:N"``, ``"tcp://HOST:PORT"`` or a scheduler file runs them
    on Dask distributed. ``checkpoint``: a folder where finished tasks are kept (a killed run
    resumes). ``device="cuda"`` draws other random numbers than the CPU: same format, other
    counts (keep such results apart); it fails clearly where CUDA is missing.

    Returns :class:`FunctionCounts` (its ``timing`` holds the stages and, under ``"run"``, where
    it ran); with ``keep_samples=True`` also the per-network codes ``(n_samples, W)`` in
    sampling order."""
    from ..chunks import default_scheduler, get_client, map_chunks, parse_scheduler

    hidden = check_architecture(n_inputs, hidden, sigma_w, sigma_b, activation)
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if n_samples < 1 or chunk < 1 or block < 1:
        raise ValueError(f"n_samples, chunk and block must be >= 1, got {n_samples}, {chunk}, {block}")
    if scheduler is None:
        scheduler = default_scheduler()
    kind, _ = parse_scheduler(scheduler)
    dev = torch.device(device)
    if kind == "inprocess":
        check_device(device)
    if dev.type == "cuda":
        workers, block = 1, chunk
    n_chunks = (n_samples + chunk - 1) // chunk
    if per_task is None and kind == "inprocess":
        per_task = chunk
    elif per_task is None:  # about 4 tasks per worker thread, at most 64 chunks per task
        slots = max(sum(get_client(scheduler).nthreads().values()), 1)
        per_task = chunk * min(max(n_chunks // (4 * slots), 1), 64)
    if per_task < chunk or per_task % chunk:
        raise ValueError(f"per_task must be a positive multiple of chunk={chunk}, got {per_task}")
    step = per_task // chunk
    tasks = [dict(seed=seed, chunk=t, first=c, stop=min(c + step, n_chunks), size=chunk,
                  n_samples=n_samples, n_inputs=int(n_inputs), hidden=hidden,
                  sigma_w=float(sigma_w), sigma_b=float(sigma_b), activation=activation,
                  block=block, device=str(device), encoding=encoding, keep_samples=keep_samples)
             for t, c in enumerate(range(0, n_chunks, step))]
    t0 = time.perf_counter()
    threads_before = torch.get_num_threads()
    workers = workers or threads_before
    run = map_chunks(sample_task, tasks, name="sample_functions", scheduler=scheduler,
                     threads=1 if dev.type == "cpu" else None, workers=workers,
                     checkpoint=checkpoint)
    t1 = time.perf_counter()
    results = run.results
    if len(results) == 1:
        codes, counts = results[0][0], results[0][1]
    else:
        codes, counts = count_rows(np.concatenate([r[0] for r in results]),
                                   np.concatenate([r[1] for r in results]))
    t2 = time.perf_counter()
    par = workers if kind == "inprocess" else max(run.info.get("workers") or 1, 1)
    timing = {k: sum(r[3][k] for r in results) / par for k in ("random", "forward", "encode")}
    timing.update(sample_wall=t1 - t0, count=t2 - t1, total=t2 - t0, workers=par, run=run.info)
    fc = FunctionCounts(codes, counts, 2 ** n_inputs, timing)
    if keep_samples:
        return fc, np.concatenate([r[2] for r in results])
    return fc
