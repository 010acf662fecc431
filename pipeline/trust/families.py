"""Sprite families: sprites that show the same motif up to a turn, a flip, a shift, a scale or a
colour change (the multi-dsprites example learns one sprite per shape *and angle*) are grouped
without labels. Over-cluster, then read the families: this is also how to choose K.

Each sprite is reduced to its *shape*: its mask (sprites with transparency) or, for opaque sprites,
its ink — the distance of each pixel from the sprite's border colour, scaled to [0, 1] (so a colour
or contrast change does not count). The shape is moved so that its centre of mass is the centre.
For every pair (a, b) the search tries TURNS turns × 2 mirrorings × SCALES scales of b (each
recentred) and keeps the best soft IoU with a, Σ min / Σ max; the distance is 1 − that IoU.
Families are the groups of an average-linkage clustering cut at `threshold` (default THRESHOLD:
two families join when their sprites overlap by 80 % on average once aligned).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

__all__ = ["THRESHOLD", "TURNS", "SCALES", "SIDE", "shapes", "family_distances", "families", "family_of_sprite"]

THRESHOLD = 0.2
TURNS = 24                                 # every 15°
SCALES = (0.8, 0.9, 1.0, 1.12, 1.25)
SIDE = 32                                  # shapes are compared at most this many px wide


def shapes(colours: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """(K, C, s, s) uint8 colours and (K, 1, s, s) uint8 masks or None → (K, n, n) float32 shapes in
    [0, 1], n = min(s, SIDE)."""
    if masks is not None:
        shape = masks[:, 0].astype(np.float32) / 255
    else:
        grey = colours.astype(np.float32).mean(axis=1) / 255                       # (K, s, s)
        ring = np.concatenate([grey[:, 0], grey[:, -1], grey[:, 1:-1, 0], grey[:, 1:-1, -1]], axis=1)
        shape = np.abs(grey - np.median(ring, axis=1)[:, None, None])
        shape /= np.maximum(shape.reshape(len(shape), -1).max(axis=1), 1e-6)[:, None, None]
    n = min(shape.shape[-1], SIDE)
    if n != shape.shape[-1]:
        shape = np.stack([cv2.resize(s, (n, n), interpolation=cv2.INTER_AREA) for s in shape])
    return shape


def _centred(img: np.ndarray) -> np.ndarray:
    """`img` shifted so that its centre of mass is the image centre."""
    n = img.shape[-1]
    total = float(img.sum())
    if total <= 1e-6:
        return img
    ys, xs = np.mgrid[0:n, 0:n]
    cy, cx = float((img * ys).sum() / total), float((img * xs).sum() / total)
    shift = np.float32([[1, 0, (n - 1) / 2 - cx], [0, 1, (n - 1) / 2 - cy]])
    return cv2.warpAffine(img, shift, (n, n), flags=cv2.INTER_LINEAR, borderValue=0)


def _versions(shape: np.ndarray) -> np.ndarray:
    """(n, n) → (TURNS · 2 · len(SCALES), n²): the shape turned, mirrored and scaled, each recentred."""
    n = shape.shape[-1]
    centre = ((n - 1) / 2, (n - 1) / 2)
    base = _centred(shape)
    out = []
    for mirrored in (base, base[:, ::-1].copy()):
        for t in range(TURNS):
            for scale in SCALES:
                m = cv2.getRotationMatrix2D(centre, 360.0 * t / TURNS, scale)
                out.append(_centred(cv2.warpAffine(mirrored, m, (n, n), flags=cv2.INTER_LINEAR, borderValue=0)).ravel())
    return np.stack(out)


def family_distances(shape: np.ndarray) -> np.ndarray:
    """(K, n, n) shapes → (K, K) symmetric distances: 1 − the best soft IoU over the search."""
    K = len(shape)
    plain = np.stack([_centred(s).ravel() for s in shape])                      # (K, n²)
    d = np.zeros((K, K), np.float64)
    for b in range(K):
        versions = _versions(shape[b])                                            # (V, n²)
        for a in range(b):
            inter = np.minimum(versions, plain[a]).sum(axis=1)
            union = np.maximum(versions, plain[a]).sum(axis=1)
            d[a, b] = d[b, a] = 1.0 - float((inter / np.maximum(union, 1e-6)).max())
    return d


def families(distances: np.ndarray, threshold: float = THRESHOLD) -> list[list[int]]:
    """The families (lists of sprite ids, each sorted; families ordered by their first sprite)."""
    K = len(distances)
    if K < 2:
        return [[k] for k in range(K)]
    labels = fcluster(linkage(squareform(distances, checks=False), method="average"), t=threshold, criterion="distance")
    groups = [sorted(np.flatnonzero(labels == g).tolist()) for g in np.unique(labels)]
    return sorted(groups)


def family_of_sprite(groups: list[list[int]], K: int) -> np.ndarray:
    """(K,) the family id of each sprite: the smallest sprite id of its family."""
    out = np.arange(K, dtype=np.int64)
    for g in groups:
        out[g] = g[0]
    return out
