"""`glyphs`: lowercase letters cut from (synthetic) early printed books, one letter per crop.

The letters are drawn from our own old-style roman skeletons (centre-line strokes, widths set
by a broad nib: thick stems, thin hairlines, serifs), not from `cv2.putText`, whose fonts changed
between OpenCV 4 (Hershey strokes) and 5 (a TrueType sans): the collection must look the same
with any OpenCV. Rendering is numpy/scipy only.

Statistics (28×28 grey, mode "L"):
* 10 classes a e n o r s t d i m; frequencies mildly uneven as in print (e 13%, d and m 8%, the
  others 9–10%: flatter than real text so that no class dominates), every class present once
  count ≥ 10;
* 3 books (fewer for small counts), pages of 120 letters, `images/book{b}/page{p}/{i}.png`;
  each book has its own type (nib angle 10–25°, stem 0.15–0.19 and hairline 0.04–0.06 x-height,
  width ×0.92–1.08), paper tone (185–235) and ink tone (20–65);
* per crop: ink weight ×0.85–1.2, rotation ±8°, scale ±12% (longest side of the letter ≈ 70%
  of the crop), translation ±2 px, ragged ink edges, Gaussian blur σ 0–0.8 px, paper with a
  smooth texture (±6 grey levels) and grain (σ 1.5–4), and 1–2 ink spots in 15% of crops;
  paper stays in 180–245 and ink in 10–80.
The label in labels.csv is the class index (line of `classes.txt`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from scipy import ndimage

from pipeline.examples._io import Sample, class_labels, make_rng, write_collection

SIZE = 28
CLASSES = ["a", "e", "n", "o", "r", "s", "t", "d", "i", "m"]
FREQUENCY = np.array([10, 13, 10, 9, 9, 10, 10, 8, 10, 8], float)
BOOKS = 3
PER_PAGE = 120
FILL = 0.70
SUPER = 4          # the letter is rendered at 4× and averaged down (anti-aliasing)
RES = 64           # template pixels per x-height unit


def _arc(cx, cy, rx, ry, a0, a1):
    t = np.radians(np.linspace(a0, a1, max(4, int(abs(a1 - a0) / 8)) + 1))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


def _line(*points):
    return list(points)


def _serif(x, y, left=0.13, right=0.13):
    return [(x - left, y), (x + right, y)]


def _arch(x0, x1, top=1.0):
    """An n-arch springing from the stem at x0 down to a stem at x1."""
    rx = (x1 - x0) / 2
    return _arc(x0 + rx, top - 0.36, rx, 0.36, 155, 0) + [(x1, 0.0)]


# Centre-line strokes in x-height units, y up, baseline 0, x-height 1, ascender 1.45.
# A stroke is a polyline (list of points) or a dot ("dot", x, y, radius).
_SKELETONS = {
    "a": [_arc(0.40, 0.72, 0.28, 0.28, 150, 0) + [(0.68, 0.10), (0.82, 0.0)],
          [(0.68, 0.55), (0.42, 0.53)] + _arc(0.40, 0.27, 0.28, 0.26, 95, 330),
          ("dot", 0.16, 0.82, 0.09)],
    "e": [[(0.06, 0.52), (0.84, 0.52)] + _arc(0.45, 0.5, 0.40, 0.52, 0, 325)],
    "n": [_line((0.12, 0.0), (0.12, 1.0)), _serif(0.12, 0.0), _serif(0.04, 1.0, 0.08, 0.08),
          _arch(0.12, 0.78), _serif(0.78, 0.0)],
    "o": [_arc(0.45, 0.5, 0.42, 0.52, 0, 360)],
    "r": [_line((0.12, 0.0), (0.12, 1.0)), _serif(0.12, 0.0, 0.13, 0.2), _serif(0.04, 1.0, 0.08, 0.08),
          _arc(0.40, 0.66, 0.28, 0.34, 160, 60), ("dot", 0.56, 0.90, 0.09)],
    "s": [[(0.66, 1.0), (0.66, 0.84)] + _arc(0.40, 0.75, 0.27, 0.25, 30, 270)
          + _arc(0.40, 0.26, 0.30, 0.26, 90, -150) + [(0.10, 0.16), (0.10, 0.0)]],
    "t": [_line((0.20, 1.30), (0.20, 0.22)) + _arc(0.42, 0.22, 0.22, 0.22, 180, 300) + [(0.62, 0.12)],
          _line((0.0, 1.0), (0.52, 1.0))],
    "d": [_arc(0.44, 0.5, 0.36, 0.52, 0, 360), _line((0.80, 0.0), (0.80, 1.45)),
          _serif(0.72, 1.45, 0.08, 0.08), _serif(0.80, 0.0, 0.0, 0.14)],
    "i": [_line((0.15, 0.0), (0.15, 1.0)), _serif(0.15, 0.0), _serif(0.07, 1.0, 0.08, 0.08),
          ("dot", 0.15, 1.34, 0.1)],
    "m": [_line((0.10, 0.0), (0.10, 1.0)), _serif(0.10, 0.0), _serif(0.02, 1.0, 0.08, 0.08),
          _arch(0.10, 0.55), _serif(0.55, 0.0), _arch(0.55, 1.0), _serif(1.0, 0.0)],
}


def _field(strokes, nib: float, thick: float, thin: float, stretch: float,
           extent: tuple[float, float, float, float] = (-0.35, 1.55, -0.35, 1.8)) -> np.ndarray:
    """Normalised distance to the ink: ≤ 1 inside the letter (distance / half stroke width), on a
    template covering `extent` = x0, x1, y0, y1 in x-height units (y up), RES pixels per unit."""
    x0_, x1_, y0_, y1_ = extent
    x = (np.arange(x0_, x1_, 1 / RES) + 0.5 / RES)[None, :]
    y = (np.arange(y1_, y0_, -1 / RES) - 0.5 / RES)[:, None]
    field = np.full((y.size, x.size), 99.0)
    for stroke in strokes:
        if stroke[0] == "dot":
            _, cx, cy, r = stroke
            field = np.minimum(field, np.hypot(x - cx * stretch, y - cy) / (r * thick / 0.17))
            continue
        pts = np.array(stroke, float) * (stretch, 1.0)
        for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
            dx, dy = x1 - x0, y1 - y0
            length2 = dx * dx + dy * dy
            t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(length2, 1e-12), 0, 1)
            dist = np.hypot(x - x0 - t * dx, y - y0 - t * dy)
            width = thin + (thick - thin) * abs(np.sin(np.arctan2(dy, dx) - nib))
            field = np.minimum(field, dist / (width / 2))
    return field.astype(np.float32)


class _Type:
    """One book's type: a distance-field template per letter, with its ink bounding box."""

    def __init__(self, rng: np.random.Generator):
        nib = np.radians(rng.uniform(10, 25))
        thick, thin, stretch = rng.uniform(0.15, 0.19), rng.uniform(0.04, 0.06), rng.uniform(0.92, 1.08)
        self.fields, self.boxes = [], []
        for letter in CLASSES:
            field = _field(_SKELETONS[letter], nib, thick, thin, stretch)
            rows, cols = np.nonzero(field <= 1)
            self.fields.append(field)
            self.boxes.append(((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2,
                               max(np.ptp(rows), np.ptp(cols)) + 1))


def _render(rng, typ: _Type, cls: int, paper: float, ink: float) -> np.ndarray:
    big = SIZE * SUPER
    rc, cc, extent = typ.boxes[cls]
    zoom = SUPER * FILL * SIZE * rng.uniform(0.88, 1.12) / extent   # canvas px per template px
    angle = np.radians(rng.uniform(-8, 8))
    shift = rng.uniform(-2, 2, size=2) * SUPER
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rot / zoom
    centre = np.array([(big - 1) / 2, (big - 1) / 2]) + shift
    offset = np.array([rc, cc]) - matrix @ centre
    nd = ndimage.affine_transform(typ.fields[cls], matrix, offset, output_shape=(big, big), order=1, cval=99.0)
    weight = rng.uniform(0.85, 1.2)
    inked = nd <= weight + 0.12 * rng.standard_normal((big, big))
    cover = inked.reshape(SIZE, SUPER, SIZE, SUPER).mean(axis=(1, 3))
    sigma = rng.uniform(0, 0.8)
    if sigma > 0.05:
        cover = ndimage.gaussian_filter(cover, sigma, mode="constant")
    if rng.random() < 0.15:  # ink spots
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        for _ in range(int(rng.integers(1, 3))):
            y, x, r = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(0.5, 1.3)
            cover = np.maximum(cover, np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * r * r)) * rng.uniform(0.6, 1))
    texture = ndimage.zoom(rng.standard_normal((5, 5)), SIZE / 5, order=3, mode="nearest")[:SIZE, :SIZE]
    page = paper + 3 * texture + rng.uniform(1.5, 4) * rng.standard_normal((SIZE, SIZE))
    density = cover * rng.uniform(0.9, 1.0, size=(SIZE, SIZE))
    image = page * (1 - density) + ink * density
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def samples(count: int, rng: np.random.Generator) -> Iterator[Sample]:
    pages = max(1, -(-count // PER_PAGE))
    books = min(BOOKS, pages)
    types = [_Type(rng) for _ in range(books)]
    paper_of = rng.uniform(185, 235, size=books)
    ink_of = rng.uniform(20, 65, size=books)
    labels = class_labels(FREQUENCY, count, rng)
    first_page = [next(p for p in range(pages) if p * books // pages == b) for b in range(books)]
    for i in range(count):
        page = i // PER_PAGE
        book = page * books // pages
        if i % PER_PAGE == 0:
            page_paper = paper_of[book] + rng.uniform(-5, 5)
        paper = np.clip(page_paper + rng.uniform(-3, 3), 180, 245)
        ink = np.clip(ink_of[book] + rng.uniform(-8, 8), 10, 80)
        image = _render(rng, types[book], int(labels[i]), paper, ink)
        source = f"book{book + 1}/page{page - first_page[book] + 1:03d}/{i:06d}.png"
        yield Sample(source, image, int(labels[i]))


README = """\
**Glyphs** (generated by `sprites`, example `glyphs`, seed {seed}, {count} images): a synthetic
stand-in for letters cut from scanned early printed books. Each 28×28 grey image (under
`images/book<b>/page<p>/`) shows one lowercase letter, dark ink on a paper tone, roughly centred
and filling about 70% of the crop, with the variation of real scans: ink weight, a few degrees of
rotation, scale, shifts of a pixel or two, blur, paper texture and grain, and occasional ink
spots; each book has its own type, paper and ink. `labels.csv` gives for each image (`source`,
relative to `images/`) its letter as a class index, and `classes.txt` the letters (line k =
class k: {letters}). The 10 letters are distinct visual patterns, so a clustering run with 10
sprites should recover them.
"""


def generate(root: Path, count: int, seed: int) -> None:
    write_collection(Path(root), samples(count, make_rng(seed)), count, SIZE, CLASSES,
                     README.format(seed=seed, count=count, letters=" ".join(CLASSES)), masks=False)
