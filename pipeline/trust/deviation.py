"""Deviation maps: where a crop differs from its aligned sprite — |crop − reconstruction| per pixel,
averaged over the channels and smoothed — and the variants of a sprite: its crops sorted by how much
they deviate, the strongest ones grouped by where they deviate (the damaged corner of a woodblock
that appears from page 120 on is one group).

A crop's deviation *score* is the mean of the top `TOP` share of its smoothed map: a compact defect
(a chipped corner, a recut stroke) scores high even when it covers a few per cent of the crop, where
the mean error over the whole crop would drown it in paper texture.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

__all__ = ["SIGMA", "TOP", "SCALE", "PAPER", "RED", "deviation_maps", "deviation_scores", "heat_tables", "coarse_maps",
           "variant_groups"]

SIGMA = 1.0        # px, the Gaussian smoothing of the maps (single-pixel noise is not a deviation)
TOP = 0.05         # share of the pixels whose mean is the score
GRID = 8           # side of the coarse map compared when grouping deviations
SIMILAR = 0.6      # mean cosine similarity of coarse maps between two groups that are joined
SCALE = 0.25       # the deviation drawn fully red in the pictures (a quarter of the intensity range)
PAPER = (246, 243, 236)   # RGB of no deviation in the pictures
RED = (170, 20, 20)       # RGB of a deviation of SCALE or more


def deviation_maps(crops: np.ndarray, recon: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """crops, recon (B, C, S, S) uint8 → (B, S, S) float32 in [0, 1]: smoothed |crop − reconstruction|."""
    diff = np.abs(crops.astype(np.int16) - recon.astype(np.int16)).mean(axis=1).astype(np.float32) / 255
    if sigma > 0:
        for i in range(len(diff)):
            diff[i] = cv2.GaussianBlur(diff[i], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return diff


def deviation_scores(maps: np.ndarray, top: float = TOP) -> np.ndarray:
    """(B, S, S) → (B,) the mean of each map's highest `top` share of pixels."""
    flat = maps.reshape(len(maps), -1)
    k = max(1, int(round(top * flat.shape[1])))
    return np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(axis=1)


def heat_tables(scale: float = SCALE, steps: int = 64) -> tuple[str, str, str]:
    """The pictures' colour ramp as the `tableValues` of an SVG feComponentTransfer (R, G, B): a map
    value m in [0, 1] is drawn PAPER at 0, RED from `scale` on, linearly between. The report's pages
    draw the maps in the browser (|crop − reconstruction| by CSS difference blending, then this
    filter), so no picture file is written per crop."""
    m = np.linspace(0, 1, steps + 1)
    t = np.clip(m / max(scale, 1e-6), 0, 1)
    return tuple(" ".join(f"{(p * (1 - v) + r * v) / 255:.4f}" for v in t) for p, r in zip(PAPER, RED))


def coarse_maps(maps: np.ndarray) -> np.ndarray:
    """(B, S, S) → (B, GRID²) unit vectors: where each crop deviates, at a coarse scale."""
    small = np.stack([cv2.resize(m, (GRID, GRID), interpolation=cv2.INTER_AREA) for m in maps]).reshape(len(maps), -1)
    small = small - small.mean(axis=1, keepdims=True)
    return small / np.maximum(np.linalg.norm(small, axis=1, keepdims=True), 1e-9)


def variant_groups(vectors: np.ndarray, scores: np.ndarray, similar: float = SIMILAR) -> list[list[int]]:
    """Group crops whose coarse maps (`coarse_maps`, (B, GRID²)) point at the same place: average
    linkage on cosine distance, cut where the mean similarity between two groups falls below
    `similar` (a defect seen one pixel further in some prints still joins its group). → groups of
    row indices, each sorted by score (highest first), groups by their size then their best score."""
    if len(vectors) == 1:
        return [[0]]
    if len(vectors) == 0:
        return []
    labels = fcluster(linkage(vectors, method="average", metric="cosine"), t=1 - similar, criterion="distance")
    groups = [sorted(np.flatnonzero(labels == g).tolist(), key=lambda i: -float(scores[i])) for g in np.unique(labels)]
    return sorted(groups, key=lambda g: (-len(g), -float(scores[g[0]])))
