"""Pixels for the report and the exports: fast PNG writing, the one colour palette, coloured
masks, and the pictures decompose.h5 keeps (the model's bank, the layers of sample crops).

Arrays are uint8 (C, H, W) as in the HDF5 files unless said otherwise; PNGs are written with
OpenCV at compression level 1 (a 28×28 grey PNG in well under 0.1 ms).
"""

from __future__ import annotations

import colorsys
import os

import cv2
import numpy as np

__all__ = ["palette", "palette_rgb", "layer_rgb", "LAYER_COLOURS", "BACKGROUND_COLOUR", "to_hwc",
           "write_png", "png_bytes", "rgba", "colour_labels", "display_size", "sprite_bank", "sample_pictures"]

# Distinct, colour-blind-friendly first (Okabe–Ito, then Tableau), then golden-angle hues.
_BASE = ["#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442", "#7f3c8d",
         "#8c564b", "#17becf", "#bcbd22", "#e377c2", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
         "#9467bd", "#7f7f7f", "#aec7e8", "#98df8a"]
BACKGROUND_COLOUR = "#f2f0eb"  # the paper colour of the report: mask label 0
# Layer colours of instance masks (layer l → LAYER_COLOURS[l % len]); greys-to-warm, unlike sprites.
LAYER_COLOURS = ["#4d4d4d", "#b07aa1", "#59a14f", "#edc948", "#76b7b2", "#ff9da7", "#9c755f", "#bab0ac"]


def palette(n: int) -> list[str]:
    """The colour of sprites 0..n−1, used for borders, bars and semantic masks everywhere."""
    out = []
    for k in range(n):
        if k < len(_BASE):
            out.append(_BASE[k])
        else:
            h = (k * 0.618033988749895) % 1.0
            r, g, b = colorsys.hsv_to_rgb(h, 0.65, 0.85)
            out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


def _hex_rgb(colours: list[str]) -> np.ndarray:
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=np.uint8).reshape(-1, 3)


def palette_rgb(n: int) -> np.ndarray:
    """(n + 1, 3) uint8: row 0 the background, row k + 1 sprite k (the semantic-mask labels)."""
    return _hex_rgb([BACKGROUND_COLOUR] + palette(n))


def layer_rgb(L: int) -> np.ndarray:
    """(L + 1, 3) uint8: row 0 the background, row l + 1 layer l (the instance-mask labels)."""
    return _hex_rgb([BACKGROUND_COLOUR] + [LAYER_COLOURS[l % len(LAYER_COLOURS)] for l in range(L)])


def to_hwc(a: np.ndarray) -> np.ndarray:
    """(C, H, W) → (H, W) for C = 1, else (H, W, C)."""
    return a[0] if a.shape[0] == 1 else np.ascontiguousarray(a.transpose(1, 2, 0))


def png_bytes(hwc: np.ndarray) -> bytes:
    """PNG of an (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA uint8 array."""
    if hwc.ndim == 3:
        hwc = cv2.cvtColor(hwc, cv2.COLOR_RGB2BGR if hwc.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", hwc, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"could not encode an image of shape {hwc.shape} as PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, hwc: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(png_bytes(hwc))


def rgba(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """uint8 colour (C, H, W) and alpha (1, H, W) (None = opaque) → (H, W, 4)."""
    rgb = np.repeat(colour, 3, axis=0) if colour.shape[0] == 1 else colour[:3]
    a = np.full_like(rgb[:1], 255) if alpha is None else alpha
    return np.ascontiguousarray(np.concatenate([rgb, a], axis=0).transpose(1, 2, 0))


def colour_labels(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(H, W) integer labels → (H, W, 3) colours (labels beyond the table wrap around)."""
    return colours[labels.astype(np.int64) % len(colours)]


def display_size(side: int, target: int = 96) -> int:
    """On-screen side of a side×side image: a whole multiple near `target` (crisp pixels)."""
    return side * max(1, round(target / side))


def sprite_bank(dec) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The model's bank as decompose.h5 keeps it: (K, C, s, s) colours, (K, 1, s, s) masks or None
    (opaque), (M, C, S, S) backgrounds or None."""
    get = lambda name: dec[f"prototypes/{name}"][()] if f"prototypes/{name}" in dec else None  # noqa: E731
    return get("colours"), get("masks"), get("backgrounds")


def sample_pictures(dec, rows: np.ndarray, ids: np.ndarray, C: int, K: int, L: int) -> list[dict]:
    """The layer-by-layer pictures of the sample crops `ids` (rows `rows` of decompose.h5's
    sample/*), as the DTI-Sprites figures show them. Returns per crop: `semantic`, `instance`
    (H, W, 3), `background` (H, W, 4) or None, `layers` [(H, W, 4)], and `sprites` [k or −1 per layer]."""
    sem_colours, inst_colours = palette_rgb(K), layer_rgb(L)
    layers = dec["sample/layers"][rows.min():rows.max() + 1][rows - rows.min()] if len(rows) else []
    backdrop = dec["sample/backdrop"][rows.min():rows.max() + 1][rows - rows.min()] \
        if len(rows) and "sample/backdrop" in dec else None
    out = []
    for j, i in enumerate(ids.tolist()):
        out.append({
            "semantic": colour_labels(dec["semantic"][i], sem_colours),
            "instance": colour_labels(dec["instance"][i], inst_colours),
            "background": rgba(backdrop[j], None) if backdrop is not None else None,
            "layers": [rgba(layer[:C], layer[C:]) for layer in layers[j]],
            "sprites": [int(k) for k in dec["sprite"][i]],
        })
    return out
