"""The Boolean cube ``{0,1}^n`` in the book's one bit order.

**Bit order (the only one used in the book).** Row ``i`` of :func:`cube` is the binary
expansion of ``i`` written most significant bit first: column 0 holds ``x_1``, the bit of value
``2^(n-1)``; column ``n-1`` holds ``x_n``, the bit of value 1. The rows are therefore in
lexicographic order, and a function ``f`` on the cube is its truth table ``f(row 0), f(row 1),
...`` in that order (``[0, 0, 0, 1]`` is ``x_1 AND x_2``).
"""
from __future__ import annotations

import numpy as np
import torch


def cube(n: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """All ``2**n`` points of ``{0,1}^n``, shape ``(2**n, n)``, in the book's bit order."""
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= 20:
        raise ValueError(f"n must be an integer in [1, 20], got {n!r}")
    i = torch.arange(2 ** int(n), device=device)
    shifts = torch.arange(int(n) - 1, -1, -1, device=device)
    return ((i[:, None] >> shifts) & 1).to(dtype)


def cube_bits(n: int) -> np.ndarray:
    """:func:`cube` as a numpy bool array ``(2**n, n)``."""
    return cube(n).numpy().astype(bool)


def pm(bits: torch.Tensor) -> torch.Tensor:
    """``{0,1}`` -> ``{-1,+1}`` (``0 -> -1``), float."""
    return bits.to(torch.float32) * 2 - 1
