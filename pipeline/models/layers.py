"""Which layer is in front: shared by decompose (torch) and the report (no torch), so kept apart."""

from __future__ import annotations

import numpy as np

__all__ = ["front_layer"]


def front_layer(sprite: np.ndarray, occlusion: np.ndarray) -> np.ndarray:
    """The front-most non-empty layer of each crop: sprite (B, L), occlusion (B, L, L) → (B,):
    among non-empty layers, the one in front of the most others (layer 0 when all are empty)."""
    nonempty = sprite >= 0
    depth = (occlusion.astype(np.int64) * nonempty[:, None, :]).sum(2) + 1
    depth = np.where(nonempty, depth, 0)
    return depth.argmax(1)
