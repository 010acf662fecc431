"""Which crops stand for a collection when only some can be shown (the reconstructions page)."""

from __future__ import annotations

import numpy as np

__all__ = ["spread_ids"]


def spread_ids(n: int, count: int) -> np.ndarray:
    """`count` ids evenly spread over 0 … n−1, first and last included (all of them when n ≤ count)."""
    if count <= 0 or n <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(np.int64))
