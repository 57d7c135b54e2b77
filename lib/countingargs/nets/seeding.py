"""Seeding: every random stream of the book derives from integers through one function.

:func:`seed_int` maps a tuple of keys (non-negative integers or strings), such as
``(base_seed, "init", width, n_train, seed)``, to a 63-bit seed with numpy's
``SeedSequence``: different key tuples give independent streams, and no hand-made arithmetic
(``s * 7919 + width * 104729``) can make two conditions collide.

:func:`counter_uniform` gives per-network random numbers that depend only on
``(seed, network id, step)``, not on which other networks share the batch: a network trained in
a batch of 1,000 or alone (or in another chunk on another worker) sees the same mini-batches.
"""
from __future__ import annotations

import hashlib
from typing import Union

import numpy as np
import torch

Key = Union[int, str, np.integer]


def _key(k: Key) -> int:
    if isinstance(k, str):
        return int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "little")
    k = int(k)
    if k < 0:
        raise ValueError(f"seed keys must be >= 0, got {k}")
    return k


def seed_int(*keys: Key) -> int:
    """A 63-bit seed from ``keys`` (SeedSequence of the keys; at least one key)."""
    if not keys:
        raise ValueError("seed_int needs at least one key")
    state = np.random.SeedSequence([_key(k) for k in keys]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def generator(*keys: Key, device="cpu") -> torch.Generator:
    """A torch generator seeded with :func:`seed_int` of ``keys``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed_int(*keys))
    return g


def rng(*keys: Key) -> np.random.Generator:
    """A numpy generator seeded with :func:`seed_int` of ``keys``."""
    return np.random.default_rng(seed_int(*keys))


def chunk_generator(seed: int, chunk_index: int, device="cpu") -> torch.Generator:
    """The generator of chunk ``chunk_index`` of stream ``seed``: the same numbers whatever the
    number of workers or the order in which chunks are drawn."""
    if seed < 0 or chunk_index < 0:
        raise ValueError(f"seed and chunk_index must be >= 0, got {seed}, {chunk_index}")
    return generator(seed, chunk_index, device=device)


# -- counter-based per-network random numbers ---------------------------------------------------
_M64 = (1 << 64) - 1


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _srl(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical shift right of int64 (as if unsigned)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _splitmix(z: torch.Tensor) -> torch.Tensor:
    z = z + _GOLDEN
    z = (z ^ _srl(z, 30)) * _MIX1
    z = (z ^ _srl(z, 27)) * _MIX2
    return z ^ _srl(z, 31)


def counter_uniform(seed: int, ids: torch.Tensor, step: int, n: int) -> torch.Tensor:
    """Uniform numbers in ``[0, 1)``, shape ``(len(ids), n)``: row ``i`` depends only on
    ``(seed, ids[i], step)`` (SplitMix64 of a counter), so it is the same in any batch."""
    ids = torch.as_tensor(ids, dtype=torch.int64)
    base = _splitmix(torch.tensor([seed_int(seed)], dtype=torch.int64, device=ids.device))
    h = _splitmix(_splitmix(base ^ ids.view(-1, 1)) ^ int(step))
    j = torch.arange(n, dtype=torch.int64, device=ids.device).view(1, -1)
    z = _splitmix(h + j * _GOLDEN)
    return _srl(z, 11).double() * (1.0 / (1 << 53))


def counter_minibatch(seed: int, ids: torch.Tensor, step: int, n_data: int, batch: int) -> torch.Tensor:
    """Indices ``(len(ids), batch)`` of a mini-batch drawn without replacement from
    ``n_data`` examples, per network, depending only on ``(seed, id, step)``."""
    if not 1 <= batch <= n_data:
        raise ValueError(f"batch must be in [1, {n_data}], got {batch}")
    return counter_uniform(seed, ids, step, n_data).argsort(1)[:, :batch]
