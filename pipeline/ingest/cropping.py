"""Cutting a page into crops (`ingest.crop`): whole, components, grid, boxes.

Every function returns boxes `(x, y, w, h)` in the pixels of the array it was given, in reading
order (top to bottom, left to right). Turning them into square crops and scaling them back to
source coordinates is the caller's job (`pipeline.ingest.sources.pages`).

* `whole`: the page itself.
* `components`: the page is binarised (Otsu's global threshold, or an adaptive Gaussian one for
  uneven lighting), ink being the minority class (so light ink on dark film works too); the
  connected components (8-connectivity) are found with OpenCV; a small part lying above or below
  a larger one (their horizontal extents overlap), at most `merge_distance` px away and with at
  most half its ink, is merged into it — the dot of an i or a j, an accent, a detached stroke —
  while parts side by side are never merged, so neighbouring letters stay apart. Then parts whose
  longer side is below `min_size` or above `max_size` px (0 = no limit), or longer than
  `max_aspect` times their shorter side (rules, frame lines), are dropped; the rest get `margin`
  px on each side.
* `grid`: tiles of `tile` px overlapping by `overlap` px; the last row and column are aligned
  with the page's edge so every pixel is covered (a page smaller than a tile is one tile).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["binarize", "components", "grid", "reading_order", "BoxPx"]

BoxPx = tuple[int, int, int, int]


def binarize(grey: np.ndarray, method: str = "otsu") -> np.ndarray:
    """(H, W) uint8 grey → (H, W) uint8 mask, 1 = ink (the minority class)."""
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"binarize expects an (H, W) uint8 array; got {grey.shape} {grey.dtype}")
    if method == "otsu":
        _, mask = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    elif method == "adaptive":
        # a neighbourhood of about a sixteenth of the page: a few letters high at usual resolutions
        block = int(np.clip(min(grey.shape) // 16, 15, 151)) | 1
        mask = cv2.adaptiveThreshold(grey, 1, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY_INV, block, 10)
        if mask.mean() > 0.5:
            mask = cv2.adaptiveThreshold(grey, 1, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, block, -10)
        return mask
    else:
        raise ValueError(f"unknown binarisation {method!r}: otsu or adaptive")
    if mask.mean() > 0.5:  # light ink on a dark ground
        mask = 1 - mask
    return mask


def _grey(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    return arr.reshape(arr.shape[0], arr.shape[1])


def _merge(stats: np.ndarray, distance: int) -> np.ndarray:
    """Union-find labels after merging each small part into its nearest stacked, larger part."""
    n = len(stats)
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if distance < 0 or n < 2:
        return parent
    x0, y0 = stats[:, 0], stats[:, 1]
    x1, y1 = x0 + stats[:, 2], y0 + stats[:, 3]
    ink = stats[:, 4]
    order = np.argsort(ink, kind="stable")  # small parts first
    for i in order:
        overlap_x = np.minimum(x1, x1[i]) - np.maximum(x0, x0[i])
        gap_y = np.maximum(y0 - y1[i], y0[i] - y1)  # < 0 when the rows overlap
        ok = (overlap_x > 0) & (gap_y <= distance) & (ink >= 2 * ink[i])
        ok[i] = False
        if ok.any():
            candidates = np.flatnonzero(ok)
            j = candidates[np.argmin(np.maximum(gap_y[candidates], 0) * 1e6 - ink[candidates])]
            ri, rj = root(i), root(j)
            if ri != rj:
                parent[ri] = rj
    return np.array([root(i) for i in range(n)])


def components(arr: np.ndarray, *, binarization: str = "otsu", min_size: int = 8, max_size: int = 0,
               max_aspect: float = 10.0, merge_distance: int = 8, margin: int = 2) -> list[BoxPx]:
    """Boxes of the glyph-like connected components of a page (see the module docstring).

    Args:
        arr: (H, W) or (H, W, C) uint8 page.
    Returns:
        (x, y, w, h) boxes in `arr` pixels, margin included, clipped to the page, in reading order.

    Example:
        >>> page = np.full((40, 60), 255, np.uint8); page[10:30, 5:15] = 0; page[10:30, 30:40] = 0
        >>> components(page, min_size=5, margin=0)
        [(5, 10, 10, 20), (30, 10, 10, 20)]
    """
    H, W = arr.shape[:2]
    mask = binarize(_grey(arr), binarization)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    stats = stats[1:].astype(np.int64)  # label 0 = the ground
    # single-pixel specks cannot become anything; dropping them keeps the merge cheap on noisy scans
    stats = stats[stats[:, 4] >= 2] if max(min_size, 1) > 2 else stats
    if len(stats) == 0:
        return []
    groups = _merge(stats, merge_distance)
    boxes = []
    for g in np.unique(groups):
        part = stats[groups == g]
        x0, y0 = part[:, 0].min(), part[:, 1].min()
        x1, y1 = (part[:, 0] + part[:, 2]).max(), (part[:, 1] + part[:, 3]).max()
        w, h = int(x1 - x0), int(y1 - y0)
        longer, shorter = max(w, h), max(1, min(w, h))
        if longer < min_size or (max_size and longer > max_size) or longer / shorter > max_aspect:
            continue
        bx0, by0 = max(0, int(x0) - margin), max(0, int(y0) - margin)
        bx1, by1 = min(W, int(x1) + margin), min(H, int(y1) + margin)
        boxes.append((bx0, by0, bx1 - bx0, by1 - by0))
    return reading_order(boxes)


def grid(width: int, height: int, tile: int, overlap: int = 0) -> list[BoxPx]:
    """Tiles of `tile` px with `overlap` px in common, covering the whole page, row by row."""
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"grid needs tile ≥ 1 and 0 ≤ overlap < tile; got tile={tile}, overlap={overlap}")

    def starts(length):
        if length <= tile:
            return [0]
        step = tile - overlap
        out = list(range(0, length - tile + 1, step))
        if out[-1] != length - tile:
            out.append(length - tile)
        return out

    return [(x, y, min(tile, width), min(tile, height)) for y in starts(height) for x in starts(width)]


def reading_order(boxes: list[BoxPx]) -> list[BoxPx]:
    """Sort boxes into lines (a box joins the line its vertical centre falls in), lines top to
    bottom, boxes left to right within a line."""
    lines: list[list] = []  # [top, bottom, members]
    for b in sorted(boxes, key=lambda b: (b[1] + b[3] / 2, b[0])):
        cy = b[1] + b[3] / 2
        for line in lines:
            if line[0] <= cy <= line[1]:
                line[2].append(b)
                line[0], line[1] = min(line[0], b[1]), max(line[1], b[1] + b[3])
                break
        else:
            lines.append([b[1], b[1] + b[3], [b]])
    lines.sort(key=lambda line: line[0])
    return [b for line in lines for b in sorted(line[2], key=lambda b: (b[0], b[1]))]
