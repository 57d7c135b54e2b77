"""Chunk functions for tests/test_chunks.py (importable by Dask workers and subprocesses: they
are pickled by reference)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def draw(seed: int, chunk: int, n: int, log: str | None = None, sleep: float = 0.0):
    """``n`` numbers of stream ``(seed, chunk)``; appends ``chunk`` to ``log`` when computed."""
    if log:
        with open(log, "a") as fh:
            fh.write(f"{chunk}\n")
    time.sleep(sleep)
    return np.random.default_rng([seed, chunk]).random(n)


def fails(seed: int, chunk: int, bad: int):
    if chunk == bad:
        raise ValueError(f"chunk {chunk} is broken")
    return chunk


def flaky(seed: int, chunk: int, marker: str):
    """Fails on its first call for each chunk (a marker file per chunk), then succeeds."""
    m = Path(f"{marker}.{chunk}")
    if not m.exists():
        m.write_text(str(os.getpid()))
        raise RuntimeError("first attempt fails")
    return chunk * 10
