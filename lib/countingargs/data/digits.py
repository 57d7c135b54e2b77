"""Data sets that ship inside packages (no downloads): scikit-learn's ``load_digits``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DigitsSplit:
    """A fixed stratified split of the 1,797 8x8 digits into a training pool, a validation set
    (for early stopping and choices such as the temperature) and a test set.
    Features are pixel intensities scaled to [0, 1]; labels are 0..9."""

    x_pool: torch.Tensor
    y_pool: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits_split(n_test: int = 500, n_val: int = 297, seed: int = 0) -> DigitsSplit:
    """Stratified pool/validation/test split of ``load_digits`` (deterministic for ``seed``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    if n_test + n_val >= len(y):
        raise ValueError(f"n_test + n_val = {n_test + n_val} leaves no training pool of {len(y)} digits")
    x = (x / 16.0).astype(np.float32)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=n_test, stratify=y,
                                                      random_state=seed)
    x_pool, x_val, y_pool, y_val = train_test_split(x_rest, y_rest, test_size=n_val,
                                                    stratify=y_rest, random_state=seed + 1)
    t = lambda a, dt=torch.float32: torch.as_tensor(a, dtype=dt)  # noqa: E731
    return DigitsSplit(t(x_pool), t(y_pool, torch.long), t(x_val), t(y_val, torch.long),
                       t(x_test), t(y_test, torch.long))


def stratified_subsets(y: torch.Tensor, n: int, seeds: list[int]) -> torch.Tensor:
    """One stratified subset of size ``n`` of the indices of ``y`` per seed: ``(len(seeds), n)``.
    Each class gets ``n / n_classes`` places (remainder to the first classes); a seed picks
    which examples fill them. Subsets of the whole pool are the pool itself (reordered)."""
    y = torch.as_tensor(y)
    classes = torch.unique(y)
    if n > len(y):
        raise ValueError(f"subset size {n} exceeds the pool of {len(y)} examples")
    counts = torch.bincount(y)
    if n == len(y):
        quota = {int(c): int(counts[c]) for c in classes}
    else:
        base, extra = divmod(n, len(classes))
        quota = {int(c): base + (1 if i < extra else 0) for i, c in enumerate(classes)}
        short = [c for c, q in quota.items() if q > counts[c]]
        if short:
            raise ValueError(f"subset size {n}: classes {short} have too few examples")
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        parts = []
        for c in classes:
            idx = torch.nonzero(y == c).squeeze(1)
            parts.append(idx[torch.randperm(len(idx), generator=g)[: quota[int(c)]]])
        sel = torch.cat(parts)
        out.append(sel[torch.randperm(len(sel), generator=g)])
    return torch.stack(out)
