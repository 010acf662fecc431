"""Pixels for the report and the exports: fast PNG writing, the one colour palette, coloured
masks, and the sprites drawn as the model placed them (re-rendered from decompose.h5's stored
transformation parameters, so no encoder pass is needed for 50,000 crops).

Arrays are uint8 (C, H, W) as in the HDF5 files unless said otherwise; PNGs are written with
OpenCV at compression level 1 (a 28×28 grey PNG in well under 0.1 ms).
"""

from __future__ import annotations

import colorsys
import os

import cv2
import numpy as np
import torch

from pipeline.models.sprites.transforms import apply_sequence, color, soft_clamp, turn_eighths

__all__ = ["palette", "palette_rgb", "layer_rgb", "LAYER_COLOURS", "BACKGROUND_COLOUR", "to_hwc", "to_uint8",
           "write_png", "png_bytes", "rgba", "colour_labels", "display_size", "front_layer",
           "sprite_bank", "render_aligned"]

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


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


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


def front_layer(sprite: np.ndarray, occlusion: np.ndarray) -> np.ndarray:
    """The layer of decompose.h5's `front` sprite: sprite (B, L), occlusion (B, L, L) → (B,).

    Same rule as the decompose stage: among non-empty layers, the one occluding the most others."""
    nonempty = sprite >= 0
    depth = (occlusion.astype(np.int64) * nonempty[:, None, :]).sum(2) + 1
    depth = np.where(nonempty, depth, 0)
    return depth.argmax(1)


@torch.no_grad()
def sprite_bank(model) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(K, C, s, s) colours, (K, 1, s, s) masks or None (opaque), (M, C, S, S) backgrounds or None."""
    colours = to_uint8(soft_clamp(model.prototypes))
    masks = to_uint8(soft_clamp(model.masks)) if model.masks is not None else None
    bkgs = to_uint8(soft_clamp(model.backgrounds)) if model.backgrounds is not None else None
    return colours, masks, bkgs


@torch.no_grad()
def render_aligned(model, sprites: np.ndarray, betas: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Draw sprite `sprites[b]` with the stored parameters of its layer, as the model did.

    `betas` maps "name" (sprite transforms), "layer_name" (layer transforms) and, with
    model.rotations > 1, "quarter_turns" to (B, P) arrays;
    returns uint8 colour (B, C, H, W) and alpha (B, 1, H, W). Empty layers (sprite −1) are blank.
    Mirrors SpriteModel.render_chosen: spatial maps in one resampling, then colour (which
    commutes with bilinear sampling)."""
    C, H = model.C, model.H
    k = torch.from_numpy(sprites.astype(np.int64))
    src = soft_clamp(model.prototypes.detach())
    if model.masks is not None:
        src = torch.cat([src, model.masks.detach()], dim=1)
    else:
        src = torch.cat([src, src.new_ones(src.shape[0], 1, *src.shape[2:])], dim=1)
    x = src[k.clamp(min=0)]
    if "quarter_turns" in betas:   # the selection's turn of each sprite, before its transformations
        eighths = (torch.from_numpy(np.asarray(betas["quarter_turns"])).reshape(-1) * 2).round().long() % 8
        x = torch.cat([turn_eighths(xi[None], int(t)) for xi, t in zip(x, eighths)]) if len(x) else x
    names = list(model.sprite_seq) + [f"layer_{n}" for n in model.layer_seq]
    seq = list(model.sprite_seq) + list(model.layer_seq)
    tensors = [torch.from_numpy(np.ascontiguousarray(betas[n])).float() for n in names]
    spatial = [(n, b) for n, b in zip(seq, tensors) if n not in ("color", "identity")]
    out = apply_sequence(x, [n for n, _ in spatial], [b for _, b in spatial], (H, H), C,
                         padding_mode=model.padding, options=model.options)
    rgb, mask = out[:, :C], out[:, C:C + 1]
    for n, b in zip(seq, tensors):
        if n == "color":
            rgb = color(rgb, b)
    alpha = soft_clamp(mask) if model.masks is not None else torch.ones_like(mask)
    alpha = alpha * (k >= 0).to(alpha.dtype)[:, None, None, None]
    return to_uint8(rgb), to_uint8(alpha)


@torch.no_grad()
def sample_images(model, crops: np.ndarray, semantic: np.ndarray, instance: np.ndarray) -> list[dict]:
    """The layer-by-layer pictures of a few crops, recomputed with the model (DTI-Sprites figures).

    crops (B, C, S, S) uint8; semantic/instance (B, S, S) from decompose.h5. Returns per crop:
    `semantic`, `instance` (H, W, 3), `background` (H, W, 4) or None, `layers` [(H, W, 4)], and
    `sprites` [k or −1 per layer]."""
    x = torch.from_numpy(crops).float() / 255
    d = model.decompose(x)
    K, L = model.K, model.L
    sem_colours, inst_colours = palette_rgb(K), layer_rgb(L)
    colour, alpha = to_uint8(d.layers), to_uint8(d.alphas)           # (L, B, C, H, W), (L, B, 1, H, W)
    backdrop = to_uint8(d.backdrop) if model.M else None
    choice = d.choice.cpu().numpy()
    out = []
    for b in range(len(crops)):
        sprites = [int(k) if k < K else -1 for k in choice[b]]
        out.append({
            "semantic": colour_labels(semantic[b], sem_colours),
            "instance": colour_labels(instance[b], inst_colours),
            "background": rgba(backdrop[b], None) if backdrop is not None else None,
            "layers": [rgba(colour[l, b], alpha[l, b]) for l in range(L)],
            "sprites": sprites,
        })
    return out
