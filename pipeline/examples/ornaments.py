"""`ornaments` and `ornaments-variant`: printers' ornaments cut from (synthetic) early books.

One ornament per crop: a fleuron, flower, leaf or small vignette as printed from a woodcut or
cast typographic ornament on a hand press. The motifs are our own vector drawings (polygons and
cubic Bézier outlines, symmetric petals and leaves, stroked scrolls), filled with OpenCV's
`fillPoly`/`polylines` at 4× and averaged down: no fonts, nothing downloaded.

A motif is a list of operations in unit coordinates (y down): `ink` parts (filled outlines, some
with holes, or stroked lines) and `cut` details (white lines and dots cut into a part: veins,
piercings, rings). Look-alike motifs share their parts and differ only by their cuts or by a
petal count.

Statistics of one image (64×64 RGB):
* class: quotas by the set's frequencies (the commonest 3.2× the rarest), shuffled; every class
  present once count ≥ number of motifs;
* 4 books (fewer for small counts), pages of 24 crops, `images/book{b}/page{p}/{i}.png`; each
  book has its own paper tone, ink colour, ink spread, show-through strength and verso type
  size; each page jitters the paper tone (±2%) and ink and sets the page's foxing rate;
* placement: the motif's longest side is 62% of the crop ×0.9–1.1 (56–68%), turned ±4°,
  shifted ±3 px;
* printing: ink spread (the inked outline grown by 0–0.3 px), ragged edges, 0–3 small gaps
  where the ink did not take (breaking thin lines), a fine speckle of uninked pixels (2–7%), ink
  density varying smoothly over the crop (about 0.6–1), ink brown-black;
* paper: a tone per book and page, smooth mottling (±4%) and a light gradient, fibres (2–7
  short curved hairs, darker or lighter), grain; foxing spots (Poisson, soft rust-brown discs
  with a darker core), a tide-mark (the edge of an old water stain: a thin brown line bounding
  a faintly darker region) in some crops, a dirt speck now and then; the verso's text showing
  through over the whole crop (mirrored lines of small letter shapes, blurred, a few % darker);
* camera: Gaussian blur σ 0.3–0.55 px and noise σ 1.5–3 grey levels.

`ornaments` (8 motifs) is printed on warm, yellowed paper with rust foxing; `ornaments-variant`
(9 other motifs) on cooler, greyer paper with fewer but larger grey-brown stains, more
tide-marks, blacker ink and stronger show-through, and its generator starts from another seed
(seed + 1 000 003), so that seed 0 of the two examples differ.

Ground truth: `semantic` = class + 1 and `instance` = 1 on the motif's silhouette as drawn: the
union of its ink parts, at crop resolution (pixels whose 4×4 sub-pixels are at least half
covered). Cut details (veins, piercings) lie inside the silhouette and are part of it; the
paper between separate parts (between the petals of a rosette, inside a frame, between the
turns of a scroll) is not. Printing defects (spread, gaps, speckle) do not change the mask.
The label in labels.csv is the motif class.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from scipy import ndimage

from pipeline.examples._io import Sample, class_labels, make_rng, write_collection

SIZE = 64
SUPER = 4                  # the motif is drawn at 4× and averaged down
BIG = SIZE * SUPER
FILL = 0.62                # longest side of the motif / crop side, ×0.9–1.1
BOOKS = 4
PER_PAGE = 24
_SHIFT = 4                 # fixed-point bits of the coordinates given to OpenCV
_ONE = 1 << _SHIFT

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(float) + 0.5


# --- vector drawing ------------------------------------------------------------------------------

def _bez(p0, p1, p2, p3, n: int = 18) -> np.ndarray:
    """Points of a cubic Bézier curve."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2, p3 = (np.asarray(p, float) for p in (p0, p1, p2, p3))
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def _cat(*parts) -> np.ndarray:
    return np.concatenate([np.atleast_2d(np.asarray(p, float)) for p in parts])


def _ellipse(cx, cy, rx, ry, a0=0.0, a1=360.0, n: int = 40) -> np.ndarray:
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _turn(points, degrees: float, about=(0.0, 0.0)) -> np.ndarray:
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    about = np.asarray(about, float)
    return (np.asarray(points, float) - about) @ rot.T + about


def _mirror(points) -> np.ndarray:
    """Mirrored about the vertical axis (a closed outline stays closed)."""
    return np.asarray(points, float)[::-1] * (-1, 1)


def _almond(base, tip, width: float) -> np.ndarray:
    """A pointed petal or leaf from `base` to `tip`, about `width` wide at its widest."""
    base, tip = np.asarray(base, float), np.asarray(tip, float)
    d = tip - base
    v = np.array([-d[1], d[0]]) / np.hypot(*d) * width / 1.6
    right = _bez(base, base + 0.3 * d + 1.3 * v, base + 0.75 * d + 0.9 * v, tip)
    left = _bez(tip, base + 0.75 * d - 0.9 * v, base + 0.3 * d - 1.3 * v, base)
    return _cat(right, left[1:])


def _heart() -> np.ndarray:
    """A heart-shaped leaf, tip down at (0, 0.85), notch at (0, -0.42), lobes up to y ≈ -0.7."""
    right = _cat(_bez((0, 0.85), (0.35, 0.55), (0.95, 0.05), (0.75, -0.45)),
                 _bez((0.75, -0.45), (0.6, -0.8), (0.15, -0.75), (0, -0.42))[1:])
    return _cat(right, _mirror(right)[1:])


def _spiral(cx, cy, r0, r1, a0, a1, n: int = 48) -> np.ndarray:
    a, r = np.radians(np.linspace(a0, a1, n)), np.linspace(r0, r1, n)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)


def _rect(x0, y0, x1, y1) -> np.ndarray:
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], float)


# An operation: (mode, kind, contours, width). mode "ink" inks the part and adds it to the
# silhouette, "cut" clears ink inside it (the silhouette keeps it); kind "poly" fills the
# contours (nested contours make holes), "line" strokes each contour `width` wide.

def _fill(*contours, cut: bool = False):
    return ("cut" if cut else "ink", "poly", [np.asarray(c, float) for c in contours], 0.0)


def _stroke(points, width: float, cut: bool = False):
    return ("cut" if cut else "ink", "line", [np.asarray(points, float)], float(width))


def _dot(x, y, r, cut: bool = False):
    return _fill(_ellipse(x, y, r, r, n=24), cut=cut)


# --- the main set --------------------------------------------------------------------------------

def _hedera(veined: bool) -> list:
    """The Aldine leaf: a heart-shaped ivy leaf, tip down, its stem curling up from the notch."""
    leaf = _heart() * 0.85 + (0, 0.12)
    stem = _cat(_bez((0, -0.2), (0.02, -0.6), (-0.1, -0.85), (-0.4, -0.88)),
                _bez((-0.4, -0.88), (-0.62, -0.9), (-0.68, -0.66), (-0.5, -0.6))[1:])
    ops = [_fill(leaf), _stroke(stem, 0.1), _dot(-0.5, -0.6, 0.08)]
    if veined:  # white midrib and four side veins cut into the leaf
        ops += [_stroke([(0, -0.12), (0, 0.62)], 0.09, cut=True)]
        for (x0, y0), (x1, y1) in (((0, 0.05), (0.4, -0.2)), ((0, 0.34), (0.3, 0.12))):
            ops += [_stroke([(x0, y0), (x1, y1)], 0.07, cut=True), _stroke([(-x0, y0), (-x1, y1)], 0.07, cut=True)]
    return ops


def _rosette(petals: int, width: float) -> list:
    """Pointed petals around a disc with a white ring."""
    ops = [_fill(_turn(_almond((0, -0.2), (0, -1.0), width), 360 * k / petals)) for k in range(petals)]
    return ops + [_dot(0, 0, 0.3), _stroke(_ellipse(0, 0, 0.19, 0.19), 0.06, cut=True)]


def _fleur_de_lis() -> list:
    side = _cat(_bez((0.08, 0.2), (0.25, -0.55), (0.95, -0.62), (0.82, 0.1)),
                _bez((0.82, 0.1), (0.72, -0.26), (0.42, -0.28), (0.22, 0.22))[1:])
    return [_fill(_almond((0, 0.22), (0, -1.0), 0.36)), _fill(side), _fill(_mirror(side)),
            _fill(_almond((0, 0.3), (0, 0.95), 0.2)), _fill(_almond((0.05, 0.3), (0.45, 0.85), 0.17)),
            _fill(_almond((-0.05, 0.3), (-0.45, 0.85), 0.17)), _fill(_rect(-0.48, 0.18, 0.48, 0.36))]


def _tulip() -> list:
    return [_stroke([(0, 0.2), (0.03, 0.6), (0, 0.98)], 0.1),
            _fill(_almond((0, 0.15), (0, -0.98), 0.36)),
            _fill(_almond((0, 0.18), _turn((0, -0.82), 32, (0, 0.18)), 0.3)),
            _fill(_almond((0, 0.18), _turn((0, -0.82), -32, (0, 0.18)), 0.3)),
            _fill(_ellipse(0, 0.06, 0.38, 0.24)),
            _fill(_almond((0, 0.8), (0.62, 0.32), 0.18)), _fill(_almond((0, 0.8), (-0.62, 0.32), 0.18))]


def _quatrefoil() -> list:
    """Four heart-leaves, tips outward, round a pierced boss, with lozenges between them."""
    ops = [_fill(_turn(_heart() * 0.45 + (0, 0.6), 90 * k)) for k in range(4)]
    ops += [_dot(0, 0, 0.22), _dot(0, 0, 0.09, cut=True)]
    for k in range(4):
        c = _turn((0, 0.8), 45 + 90 * k)
        ops.append(_fill(_turn([(0, -0.13), (0.08, 0), (0, 0.13), (-0.08, 0)], 45 + 90 * k) + c))
    return ops


def _arabesque() -> list:
    """A vignette: two scrolls curling out of a central drop."""
    scroll = _cat([(0.0, 0.42)], _spiral(0.5, -0.02, 0.44, 0.12, 120, -250))
    return [_stroke(scroll, 0.11), _stroke(_mirror(scroll), 0.11),
            _dot(*_spiral(0.5, -0.02, 0.12, 0.12, -250, -250, 1)[0], 0.09),
            _dot(*_spiral(-0.5, -0.02, 0.12, 0.12, 70, 70, 1)[0], 0.09),
            _fill(_almond((0, 0.32), (0, -0.8), 0.26)), _fill(_almond((0, 0.36), (0, 0.82), 0.18))]


# --- the variant's set ---------------------------------------------------------------------------

def _oak_leaf(veined: bool) -> list:
    t = np.linspace(0, 1, 90)
    y = 0.72 - 1.67 * t
    w = 0.5 * np.sin(np.pi * t) ** 0.7 * (0.6 + 0.4 * np.abs(np.sin(4 * np.pi * t)) ** 0.6)
    right = np.stack([w, y], 1)
    ops = [_stroke([(0, 0.6), (0.05, 0.85), (0.16, 1.0)], 0.09), _fill(_cat(right, _mirror(right)[1:]))]
    if veined:
        ops.append(_stroke([(0, 0.62), (0, -0.82)], 0.08, cut=True))
        for k in range(4):
            tk = (k + 0.5) / 4
            yk = 0.72 - 1.67 * tk
            wk = 0.5 * np.sin(np.pi * tk) ** 0.7
            ops += [_stroke([(0, yk + 0.14), (0.62 * wk, yk)], 0.06, cut=True),
                    _stroke([(0, yk + 0.14), (-0.62 * wk, yk)], 0.06, cut=True)]
    return ops


def _foil(petals: int, width: float) -> list:
    """Rounded petals round a disc with a white ring."""
    ops = [_fill(_turn(_ellipse(0, -0.58, width, 0.42), 360 * k / petals)) for k in range(petals)]
    return ops + [_dot(0, 0, 0.27), _stroke(_ellipse(0, 0, 0.16, 0.16), 0.055, cut=True)]


def _thistle() -> list:
    ops = [_stroke([(0, 0.3), (0, 0.98)], 0.09),
           _fill(_almond((0, 0.62), (0.62, 0.3), 0.17)), _fill(_almond((0, 0.62), (-0.62, 0.3), 0.17))]
    for a in (-50, -25, 0, 25, 50):
        ops.append(_fill(_almond((0, -0.3), _turn((0, -1.0), a, (0, -0.3)), 0.11)))
    ops.append(_fill(_ellipse(0, -0.1, 0.36, 0.3)))
    for o in (-0.14, 0.14):  # a lattice cut into the head
        ops += [_stroke([(o - 0.22, -0.32), (o + 0.22, 0.12)], 0.05, cut=True),
                _stroke([(o + 0.22, -0.32), (o - 0.22, 0.12)], 0.05, cut=True)]
    return ops + [_fill([(-0.3, 0.12), (0.3, 0.12), (0.08, 0.4), (-0.08, 0.4)])]


def _acorn() -> list:
    ops = [_stroke([(0, -0.3), (0.04, -0.75), (0.2, -0.95)], 0.1),
           _fill(_ellipse(0, 0.32, 0.33, 0.5)), _dot(0, 0.85, 0.06),
           _stroke(_ellipse(0, 0.32, 0.2, 0.36, 195, 245, 10), 0.06, cut=True),
           _fill(_ellipse(0, -0.16, 0.5, 0.27))]
    for y in (-0.24, -0.1):  # bands cut across the cup
        half = 0.5 * np.sqrt(1 - ((y + 0.16) / 0.27) ** 2) * 0.8
        ops.append(_stroke([(-half, y), (half, y)], 0.05, cut=True))
    return ops


def _cross_pattee(pierced: bool) -> list:
    arm = [(-0.1, 0), (0.1, 0), (0.44, -0.96), (0, -0.84), (-0.44, -0.96)]
    ops = [_fill(_turn(arm, 90 * k)) for k in range(4)] + [_dot(0, 0, 0.16)]
    if pierced:  # a pierced boss with a dot, and a hole in each arm
        ops += [_dot(0, 0, 0.11, cut=True), _dot(0, 0, 0.05)]
        ops += [_dot(*_turn((0, -0.6), 90 * k), 0.085, cut=True) for k in range(4)]
    return ops


def _lozenge() -> list:
    """A vignette: a lozenge frame with knobs, a four-petal flower inside."""
    outer = np.array([(0, -1), (0.72, 0), (0, 1), (-0.72, 0)], float)
    ops = [_fill(outer, outer * 0.76)]
    ops += [_fill(_turn(_almond((0, 0), (0, -0.44), 0.17), 90 * k)) for k in range(4)]
    return ops + [_dot(0.86, 0, 0.1), _dot(-0.86, 0, 0.1)]


# --- the two sets and their paper ----------------------------------------------------------------

@dataclass(frozen=True)
class Style:
    """One example: its motifs and frequencies, paper, ink, stains and show-through."""
    name: str
    classes: tuple[str, ...]
    frequency: tuple[float, ...]
    paper: tuple[float, float, float]          # mean paper RGB
    yellowing: tuple[float, float, float]      # per-book tint direction (× U(-1, 1))
    ink: tuple[float, float, float]            # mean ink RGB
    foxing: float                              # mean foxing spots per crop
    fox_colour: tuple[float, float, float]
    fox_radius: tuple[float, float]            # px
    fox_alpha: tuple[float, float]             # peak opacity
    tide: float                                # probability of a tide-mark in a crop
    show: tuple[float, float]                  # show-through strength (per book)
    seed_offset: int


MAIN = Style(
    name="ornaments",
    classes=("hedera", "hedera_veined", "rosette6", "rosette8", "fleur_de_lis", "tulip", "quatrefoil",
             "arabesque"),
    frequency=(16, 6, 12, 8, 14, 9, 10, 5),
    paper=(232, 215, 178), yellowing=(4, 2, -12), ink=(46, 34, 26),
    foxing=1.6, fox_colour=(176, 112, 62), fox_radius=(0.6, 2.2), fox_alpha=(0.2, 0.5), tide=0.18,
    show=(0.08, 0.15),
    seed_offset=0,
)

VARIANT = Style(
    name="ornaments-variant",
    classes=("oak_leaf", "oak_leaf_veined", "cinquefoil", "heptafoil", "thistle", "acorn", "cross_pattee",
             "cross_pattee_pierced", "lozenge"),
    frequency=(7, 15, 10, 6, 12, 9, 16, 5, 8),
    paper=(214, 213, 204), yellowing=(2, 2, -5), ink=(33, 32, 35),
    foxing=0.6, fox_colour=(150, 130, 105), fox_radius=(1.5, 4.5), fox_alpha=(0.15, 0.4), tide=0.35,
    show=(0.14, 0.22),
    seed_offset=1_000_003,
)

_MOTIFS = {
    "hedera": lambda: _hedera(False), "hedera_veined": lambda: _hedera(True),
    "rosette6": lambda: _rosette(6, 0.42), "rosette8": lambda: _rosette(8, 0.32),
    "fleur_de_lis": _fleur_de_lis, "tulip": _tulip, "quatrefoil": _quatrefoil, "arabesque": _arabesque,
    "oak_leaf": lambda: _oak_leaf(False), "oak_leaf_veined": lambda: _oak_leaf(True),
    "cinquefoil": lambda: _foil(5, 0.3), "heptafoil": lambda: _foil(7, 0.22),
    "thistle": _thistle, "acorn": _acorn,
    "cross_pattee": lambda: _cross_pattee(False), "cross_pattee_pierced": lambda: _cross_pattee(True),
    "lozenge": _lozenge,
}

CLASSES = list(MAIN.classes)
VARIANT_CLASSES = list(VARIANT.classes)


def _draw(ops: list, centre: np.ndarray, scale: float, angle: float, size: int,
          origin: np.ndarray = np.zeros(2)) -> tuple[np.ndarray, np.ndarray]:
    """Silhouette and ink (uint8 0/1, size×size) of a motif: unit point p goes to
    centre + scale · R(angle) · (p - origin), in canvas pixel coordinates."""
    sil = np.zeros((size, size), np.uint8)
    ink = np.zeros((size, size), np.uint8)
    c, s = np.cos(angle), np.sin(angle)
    matrix = scale * np.array([[c, -s], [s, c]])
    for mode, kind, contours, width in ops:
        pts = [np.round(((p - origin) @ matrix.T + centre) * _ONE).astype(np.int32) for p in contours]
        targets = ((sil, 1), (ink, 1)) if mode == "ink" else ((ink, 0),)
        for canvas, value in targets:
            if kind == "poly":
                cv2.fillPoly(canvas, pts, value, cv2.LINE_8, _SHIFT)
            else:
                cv2.polylines(canvas, pts, False, value, max(1, int(round(width * scale))), cv2.LINE_8, _SHIFT)
    return sil, ink


@lru_cache(maxsize=None)
def _motif(name: str) -> tuple[list, np.ndarray, float]:
    """The motif's operations, the centre of its silhouette's box and its longest side (unit)."""
    ops = _MOTIFS[name]()
    ref = 160.0
    sil, _ = _draw(ops, np.array([400.0, 400.0]), ref, 0.0, 800)
    rows, cols = np.nonzero(sil)
    centre = np.array([(cols.min() + cols.max()) / 2, (rows.min() + rows.max()) / 2]) - 400.0
    return ops, centre / ref, (max(np.ptp(rows), np.ptp(cols)) + 1) / ref


def _pool(a: np.ndarray) -> np.ndarray:
    return a.reshape(SIZE, SUPER, SIZE, SUPER).mean(axis=(1, 3))


def _smooth(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth noise, about unit variance, varying over SIZE / cells px."""
    noise = ndimage.zoom(rng.standard_normal((cells + 1, cells + 1)), SIZE / cells, order=3, mode="nearest")
    return noise[:SIZE, :SIZE]


# --- the verso's text ----------------------------------------------------------------------------

def _arc(cx, cy, rx, ry, a0, a1):
    return _ellipse(cx, cy, rx, ry, a0, a1, max(4, int(abs(a1 - a0) / 30) + 1))


# Small letter skeletons in x-height units (x right, y down, baseline 0, x-height -1): strokes, advance.
_LETTERS = [
    ([[(0, 0), (0, -1)], _cat([(0, -0.6)], _arc(0.33, -0.6, 0.33, 0.4, 180, 360), [(0.66, 0)])], 0.66),   # n
    ([_arc(0.33, -0.5, 0.33, 0.5, 0, 360)], 0.66),                                                        # o
    ([[(0, 0), (0, -1)], [(0, -1.4), (0, -1.3)]], 0.0),                                                    # i
    ([[(0, 0), (0, -1.5)]], 0.0),                                                                          # l
    ([_cat([(0.05, -0.5), (0.66, -0.5)], _arc(0.33, -0.5, 0.33, 0.5, 0, -310))], 0.66),                    # e
    ([[(0, 0.5), (0, -1)], _arc(0.33, -0.5, 0.33, 0.5, 0, 360)], 0.66),                                   # p
    ([_arc(0.3, -0.5, 0.3, 0.5, 0, 360), [(0.6, 0), (0.6, -1.5)]], 0.6),                                  # d
    ([[(0.55, -0.9), (0.3, -1.0), (0.05, -0.8), (0.55, -0.2), (0.3, 0), (0.0, -0.1)]], 0.55),              # s
    ([[(0.15, -1.3), (0.15, 0)], [(0, -0.9), (0.42, -0.9)]], 0.42),                                       # t
]


def _verso(rng: np.random.Generator, xheight: float, leading: float) -> np.ndarray:
    """Lines of small letters (coverage 0–1, SIZE×SIZE), mirrored as seen through the leaf."""
    canvas = np.zeros((BIG, BIG), np.uint8)
    skew = np.tan(np.radians(rng.uniform(-1.5, 1.5)))
    thick = max(1, int(round(0.3 * xheight * SUPER)))
    y = rng.uniform(0, leading) - leading
    while y < SIZE + 2 * xheight:
        x = rng.uniform(-6, 0)
        while x < SIZE + 2:
            for _ in range(int(rng.integers(1, 9))):  # a word
                strokes, advance = _LETTERS[int(rng.integers(len(_LETTERS)))]
                for stroke in strokes:
                    p = np.asarray(stroke, float) * xheight + (x, y)
                    p[:, 1] += p[:, 0] * skew
                    cv2.polylines(canvas, [np.round((p * SUPER - 0.5) * _ONE).astype(np.int32)], False, 1,
                                  thick, cv2.LINE_8, _SHIFT)
                x += (advance + 0.45) * xheight
            x += rng.uniform(0.8, 1.3) * xheight
        y += leading
    return _pool(canvas.astype(np.float32))[:, ::-1]


# --- paper and print -----------------------------------------------------------------------------

@dataclass
class _Book:
    paper: np.ndarray
    ink: np.ndarray
    spread: float
    show: float
    xheight: float
    leading: float


def _book(rng: np.random.Generator, style: Style) -> _Book:
    paper = np.array(style.paper) * rng.uniform(0.96, 1.03) + np.array(style.yellowing) * rng.uniform(-1, 1)
    ink = np.array(style.ink) + rng.uniform(-8, 8) + rng.uniform(-4, 4, size=3)
    xheight = rng.uniform(2.2, 3.0)
    return _Book(paper, ink, rng.uniform(0.0, 0.1), rng.uniform(*style.show), xheight,
                 xheight * rng.uniform(2.6, 3.2))


def _paper(rng: np.random.Generator, style: Style, tone: np.ndarray, book: _Book, foxing: float) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi)
    gradient = 0.05 * ((_XX - SIZE / 2) * np.cos(a) + (_YY - SIZE / 2) * np.sin(a)) / (SIZE / 2)
    light = 1 + 0.03 * _smooth(rng, 3) + 0.012 * _smooth(rng, 10) + gradient
    fibres = np.zeros((2, BIG, BIG), np.uint8)          # dark and light hairs
    for _ in range(int(rng.integers(2, 8))):
        p0 = rng.uniform(-4, SIZE + 4, size=2)
        length, turn = rng.uniform(4, 14), rng.uniform(0, np.pi)
        d = length * np.array([np.cos(turn), np.sin(turn)])
        bend = rng.normal(0, 2, size=2)
        curve = _bez(p0, p0 + d / 3 + bend, p0 + 2 * d / 3 - bend, p0 + d, 10)
        cv2.polylines(fibres[int(rng.random() < 0.4)], [np.round((curve * SUPER - 0.5) * _ONE).astype(np.int32)],
                      False, 1, int(rng.integers(1, 3)), cv2.LINE_8, _SHIFT)
    light = light - 0.3 * _pool(fibres[0].astype(np.float32)) + 0.12 * _pool(fibres[1].astype(np.float32))
    texture = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), 0.8) * 2.4  # ≈ unit variance
    paper = tone * light[..., None] + rng.uniform(1.5, 3) * texture[..., None]
    # the verso's text, showing through
    text = ndimage.gaussian_filter(_verso(rng, book.xheight, book.leading), rng.uniform(0.6, 0.9))
    show = book.show * text * (1 + 0.3 * _smooth(rng, 2))
    paper = paper * (1 - show[..., None] * np.array([0.9, 1.0, 1.15]))
    # foxing: soft rust discs with a darker core; a dirt speck now and then
    stain = np.zeros((SIZE, SIZE, 3))
    alpha = np.zeros((SIZE, SIZE))
    for _ in range(int(rng.poisson(foxing))):
        x, y = rng.uniform(-2, SIZE + 2, size=2)
        r = rng.uniform(*style.fox_radius)
        d2 = ((_XX - x) ** 2 + (_YY - y) ** 2) / (r * r)
        a = rng.uniform(*style.fox_alpha) * (0.65 * np.exp(-d2) + 0.35 * np.exp(-d2 / 0.16))
        stain += a[..., None] * np.array(style.fox_colour) * rng.uniform(0.85, 1.1)
        alpha += a
    if rng.random() < 0.15:
        x, y = rng.uniform(0, SIZE, size=2)
        a = 0.8 * np.exp(-((_XX - x) ** 2 + (_YY - y) ** 2) / (2 * rng.uniform(0.3, 0.6) ** 2))
        stain += a[..., None] * book.ink
        alpha += a
    # a tide-mark: the edge of an old water stain crossing the crop
    if rng.random() < style.tide:
        phi, dist = rng.uniform(0, 2 * np.pi), rng.uniform(30, 80)
        cx, cy = SIZE / 2 + dist * np.cos(phi), SIZE / 2 + dist * np.sin(phi)
        radius = dist + rng.uniform(-22, 22)
        d = np.hypot(_XX - cx, _YY - cy) - radius
        a = (rng.uniform(0.03, 0.07) / (1 + np.exp(np.clip(d / 1.5, -50, 50)))
             + rng.uniform(0.12, 0.25) * np.exp(-(d / rng.uniform(0.7, 1.5)) ** 2))
        stain += a[..., None] * np.array(style.fox_colour) * 0.95
        alpha += a
    total = np.clip(alpha, 0, 0.9)
    stain_colour = stain / np.maximum(alpha, 1e-9)[..., None]
    return paper * (1 - total[..., None]) + stain_colour * total[..., None]


def _printed(rng: np.random.Generator, ink: np.ndarray, spread: float) -> np.ndarray:
    """The ink's coverage at crop resolution (0–1): spread, ragged, gapped, speckled, uneven."""
    field = ndimage.gaussian_filter(ink.astype(np.float32), 1.3)
    ragged = ndimage.gaussian_filter(rng.standard_normal((BIG, BIG)).astype(np.float32), 1.0) * 3.5
    printed = field > 0.5 - spread - rng.uniform(0, 0.08) + 0.1 * ragged
    where = np.flatnonzero(printed)
    for _ in range(int(rng.integers(0, 4))):   # gaps where the ink did not take
        if where.size == 0:
            break
        y, x = divmod(int(where[rng.integers(where.size)]), BIG)
        cv2.circle(printed.view(np.uint8), (x, y), int(rng.integers(2, 5)), 0, -1, cv2.LINE_8)
    printed &= rng.random((BIG, BIG)) >= rng.uniform(0.02, 0.07)
    density = np.clip(rng.uniform(0.8, 0.97) + 0.1 * _smooth(rng, 3), 0.6, 1.0)
    return _pool(printed.astype(np.float32)) * density


def _render(rng: np.random.Generator, style: Style, cls: int, book: _Book, tone: np.ndarray,
            ink_colour: np.ndarray, foxing: float) -> tuple[np.ndarray, np.ndarray]:
    ops, origin, side = _motif(style.classes[cls])
    scale = FILL * SIZE * SUPER * rng.uniform(0.9, 1.1) / side
    angle = np.radians(rng.uniform(-4, 4))
    centre = (SIZE / 2 + rng.uniform(-3, 3, size=2)) * SUPER - 0.5
    sil, ink = _draw(ops, centre, scale, angle, BIG, origin)
    cover = _printed(rng, ink, book.spread)
    paper = _paper(rng, style, tone, book, foxing)
    image = paper * (1 - cover[..., None]) + ink_colour * cover[..., None]
    image = ndimage.gaussian_filter(image, (rng.uniform(0.3, 0.55),) * 2 + (0,))
    image += rng.uniform(1.5, 3) * rng.standard_normal(image.shape)
    mask = (_pool(sil.astype(np.float32)) >= 0.5).astype(np.uint8)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask


def samples(count: int, rng: np.random.Generator, style: Style = MAIN) -> Iterator[Sample]:
    pages = max(1, -(-count // PER_PAGE))
    books = min(BOOKS, pages)
    made = [_book(rng, style) for _ in range(books)]
    labels = class_labels(np.array(style.frequency, float), count, rng)
    first_page = [next(p for p in range(pages) if p * books // pages == b) for b in range(books)]
    for i in range(count):
        page = i // PER_PAGE
        b = page * books // pages
        book = made[b]
        if i % PER_PAGE == 0:
            tone = book.paper * rng.uniform(0.98, 1.02) + rng.uniform(-1.5, 1.5, size=3)
            ink = book.ink + rng.uniform(-4, 4)
            foxing = style.foxing * rng.uniform(0.3, 1.7)
        cls = int(labels[i])
        image, mask = _render(rng, style, cls, book, tone, ink, foxing)
        source = f"book{b + 1}/page{page - first_page[b] + 1:03d}/{i:06d}.png"
        yield Sample(source, image, cls, mask * np.uint8(cls + 1), mask)


README = """\
**{title}** (generated by `sprites`, example `{name}`, seed {seed}, {count} images): a synthetic
stand-in for printers' ornaments cut from early printed books. Each 64×64 RGB image (under
`images/book<b>/page<p>/`) shows one woodcut or typographic ornament printed in {ink} ink on
{paper}, with uneven inking (ink spread, gaps, speckle, density varying over the crop), foxing
spots, tide-marks, fibres and grain, and the verso's text showing through (faint mirrored lines).
The ornament is roughly centred (±3 px), turned by a few degrees (±4°) and its longest side
fills 56–68% of the crop; each book has its own paper, ink and show-through. There are
{k} motifs with unequal frequencies, some alike but for inner detail or petal count (classes
0..{last} as in `classes.txt`, with their relative frequencies: {classes}). `labels.csv`
gives for each image (`source`, relative to `images/`) its motif class. `masks.h5` holds per image `semantic` (0 paper, class + 1 on the
ornament) and `instance` (0 paper, 1 on the ornament) masks, `source` in the same order as the
CSV, and the class names in the attribute `classes`. The mask is the motif's silhouette as
drawn (the union of its inked parts at crop resolution, white cut details such as veins and
piercings included, the paper between separate parts excluded), not the printed ink: gaps and
spread of the ink do not change it.
"""


def _generate(style: Style, root: Path, count: int, seed: int, title: str, ink: str, paper: str) -> None:
    classes = ", ".join(f"{c} {f:g}" for c, f in zip(style.classes, style.frequency))
    readme = README.format(title=title, name=style.name, seed=seed, count=count, ink=ink, paper=paper,
                           k=len(style.classes), last=len(style.classes) - 1, classes=classes)
    readme = textwrap.fill(" ".join(readme.split()), 100, break_long_words=False, break_on_hyphens=False)
    write_collection(Path(root), samples(count, make_rng(seed + style.seed_offset), style), count, SIZE,
                     list(style.classes), readme, masks=True)


def generate(root: Path, count: int, seed: int) -> None:
    _generate(MAIN, root, count, seed, "Ornaments", "brown-black", "warm, yellowed paper with rust foxing")


def generate_variant(root: Path, count: int, seed: int) -> None:
    _generate(VARIANT, root, count, seed, "Ornaments (variant)", "grey-black",
              "cool, greyish paper with larger grey-brown stains and stronger show-through")
