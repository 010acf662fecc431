"""`digits`: small handwritten-like digits, one per 16×16 grey image (in the spirit of USPS/MNIST).

Each digit is drawn from our own centre-line skeleton (control points joined by straight strokes
or by cardinal splines) with a round pen whose width varies along the stroke (pressure); it is
rendered at 4× and averaged down (anti-aliased). numpy/scipy only, no fonts.

Statistics (16×16 grey, mode "L"):
* 10 classes 0–9 by equal quotas (largest remainder), shuffled; every class present once
  count ≥ 10;
* WRITERS = 12 writers (fewer for small counts), consecutive blocks of images,
  `images/writer{w:02d}/{i:06d}.png`; each writer has a style: slant (shear −0.1–0.35), pen width
  0.09–0.15 of the digit's height, height 60–72 % of the image, width 0.55–0.78 of the height,
  roundness (spline tension 0–0.45: round to angular), paper (200–240) and ink (15–60) tones, and
  habits: 1 with a flag (70 %) and a foot (20 %), 4 closed at the top (40 %), 7 crossed (25 %),
  9 with a curved tail (40 %);
* per image: control points jittered (σ 0.03 of the height, a point shared by two strokes moving
  as one), pen pressure ±20 % along the strokes, rotation ±10°, scale ±10 %, shift ±1.5 px
  (bounded, and a digit too wide shrunk, so that the ink stays 1 px inside the image), Gaussian
  blur σ 0.25–0.6 px, paper grain (σ 2–4), ink tone ±10.
The look-alike pairs (4 closed at the top / 9, 3 / 5 / 8, 1 with a flag / 7) are close at 16 px
but always told apart by their skeletons. labels.csv: the class index (line of `classes.txt`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from scipy import ndimage

from pipeline.examples._io import Sample, make_rng, write_collection

SIZE = 16
SUPER = 4
CLASSES = [str(d) for d in range(10)]
WRITERS = 12
SAMPLES = 8                       # stroke points per control segment

# Strokes in units of the digit's height, x in 0–1 (scaled by the writer's width), y up in 0–1:
# (kind, points) with kind "line" (a polyline), "curve" (a spline through the points) or
# "loop" (a closed spline).
_SHAPES = {
    "0": [("loop", [(0.5, 1.0), (0.88, 0.8), (0.97, 0.5), (0.86, 0.16), (0.5, 0.0), (0.14, 0.16),
                    (0.03, 0.5), (0.12, 0.8)])],
    "1": [("line", [(0.55, 1.0), (0.5, 0.0)])],
    "1flag": [("line", [(0.2, 0.72), (0.58, 1.0), (0.5, 0.0)])],
    "1foot": [("line", [(0.2, 0.72), (0.58, 1.0), (0.5, 0.0)]), ("line", [(0.18, 0.0), (0.82, 0.0)])],
    "2": [("curve", [(0.08, 0.74), (0.3, 0.95), (0.6, 1.0), (0.86, 0.8), (0.78, 0.52), (0.42, 0.22),
                     (0.06, 0.0)]),
          ("line", [(0.06, 0.0), (0.96, 0.02)])],
    "3": [("curve", [(0.1, 0.86), (0.45, 1.0), (0.82, 0.88), (0.8, 0.66), (0.42, 0.53)]),
          ("curve", [(0.42, 0.53), (0.86, 0.4), (0.9, 0.15), (0.55, 0.0), (0.08, 0.1)])],
    "4": [("line", [(0.52, 1.0), (0.06, 0.32), (0.96, 0.32)]), ("line", [(0.72, 0.7), (0.72, 0.0)])],
    "4closed": [("line", [(0.72, 1.0), (0.06, 0.32), (0.96, 0.32)]),
                ("line", [(0.72, 1.0), (0.72, 0.0)])],
    "5": [("line", [(0.88, 1.0), (0.22, 1.0), (0.15, 0.56)]),
          ("curve", [(0.15, 0.56), (0.5, 0.64), (0.86, 0.46), (0.86, 0.14), (0.5, 0.0), (0.08, 0.08)])],
    "6": [("curve", [(0.82, 0.94), (0.5, 1.0), (0.18, 0.75), (0.08, 0.35), (0.3, 0.02), (0.7, 0.02),
                     (0.9, 0.28), (0.7, 0.52), (0.35, 0.5), (0.1, 0.3)])],
    "7": [("line", [(0.06, 1.0), (0.94, 1.0), (0.4, 0.0)])],
    "7crossed": [("line", [(0.06, 1.0), (0.94, 1.0), (0.4, 0.0)]), ("line", [(0.42, 0.5), (0.9, 0.5)])],
    "8": [("loop", [(0.5, 0.55), (0.84, 0.78), (0.5, 1.0), (0.16, 0.78), (0.5, 0.55), (0.88, 0.27),
                    (0.5, 0.0), (0.12, 0.27)])],
    "9": [("loop", [(0.5, 1.0), (0.86, 0.8), (0.84, 0.56), (0.5, 0.44), (0.16, 0.58), (0.18, 0.86)]),
          ("line", [(0.85, 0.7), (0.76, 0.0)])],
    "9curved": [("loop", [(0.5, 1.0), (0.86, 0.8), (0.84, 0.56), (0.5, 0.44), (0.16, 0.58),
                          (0.18, 0.86)]),
                ("curve", [(0.85, 0.7), (0.82, 0.3), (0.6, 0.0), (0.25, 0.04)])],
}


def _spline(points: np.ndarray, closed: bool, tension: float) -> np.ndarray:
    """A cardinal spline through `points` (tension 0 = Catmull-Rom, 1 = straight segments)."""
    if closed:
        p = np.vstack([points[-1:], points, points[:2]])
    else:
        p = np.vstack([points[:1], points, points[-1:]])
    n = len(points) if closed else len(points) - 1
    t = np.linspace(0, 1, SAMPLES, endpoint=False)[:, None]
    h00, h10, h01, h11 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t, -2 * t**3 + 3 * t**2, t**3 - t**2
    out = []
    for i in range(n):
        p0, p1, p2, p3 = p[i], p[i + 1], p[i + 2], p[i + 3]
        m1, m2 = (1 - tension) * (p2 - p0) / 2, (1 - tension) * (p3 - p1) / 2
        out.append(h00 * p1 + h10 * m1 + h01 * p2 + h11 * m2)
    out.append(p[n + 1][None])
    return np.vstack(out)


class _Writer:
    def __init__(self, rng: np.random.Generator):
        self.slant = rng.uniform(-0.1, 0.35)
        self.pen = rng.uniform(0.09, 0.15)
        self.height = rng.uniform(0.6, 0.72) * SIZE
        self.width = rng.uniform(0.55, 0.78)
        self.tension = rng.uniform(0, 0.45)
        self.paper, self.ink = rng.uniform(200, 240), rng.uniform(15, 60)
        flag = rng.random()
        self.shapes = {
            "1": "1foot" if flag < 0.2 else "1flag" if flag < 0.7 else "1",
            "4": "4closed" if rng.random() < 0.4 else "4",
            "7": "7crossed" if rng.random() < 0.25 else "7",
            "9": "9curved" if rng.random() < 0.4 else "9",
        }


def _strokes(rng: np.random.Generator, writer: _Writer, digit: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The digit's strokes as dense polylines (points in unit coordinates) with pen widths."""
    shape = _SHAPES[writer.shapes.get(digit, digit)]
    jitter: dict[tuple[float, float], np.ndarray] = {}
    out = []
    for kind, points in shape:
        for pt in points:
            if pt not in jitter:
                jitter[pt] = rng.normal(0, 0.03, size=2)
        pts = np.array([np.array(pt) + jitter[pt] for pt in points])
        if kind == "line":  # sampled like the curves, so that the pressure varies along it too
            dense = np.vstack([np.linspace(a, b, SAMPLES, endpoint=False) for a, b in zip(pts[:-1], pts[1:])]
                              + [pts[-1:]])
        else:
            dense = _spline(pts, kind == "loop", writer.tension)
        along = np.linspace(0, 1, len(dense))
        pressure = 1 + 0.2 * np.sin(2 * np.pi * (rng.uniform(0.5, 1.5) * along + rng.uniform()))
        out.append((dense, writer.pen * pressure))
    return out


def _render(rng: np.random.Generator, writer: _Writer, cls: int) -> np.ndarray:
    strokes = _strokes(rng, writer, CLASSES[cls])
    scale = writer.height * rng.uniform(0.9, 1.1) * SUPER          # super-pixels per unit
    angle = np.radians(rng.uniform(-10, 10))
    shift = rng.uniform(-1.5, 1.5, size=2) * SUPER
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    big = SIZE * SUPER
    placed = []
    for dense, width in strokes:
        u = (dense[:, 0] - 0.5) * writer.width + writer.slant * (dense[:, 1] - 0.5)
        v = dense[:, 1] - 0.5
        xy = (np.stack([u, -v], axis=1) @ rot.T) * scale + big / 2   # super-px, x right, y down
        placed.append((xy, width * scale / 2))
    # the ink stays 1 px inside the image: a digit too wide (slanted) is shrunk, the shift bounded
    lo = np.min([(xy - r[:, None]).min(axis=0) for xy, r in placed], axis=0)
    hi = np.max([(xy + r[:, None]).max(axis=0) for xy, r in placed], axis=0)
    fit = min(1.0, float(np.min((big - 2 * SUPER - 0.5) / (hi - lo))))
    if fit < 1:
        placed = [((xy - big / 2) * fit + big / 2, r * fit) for xy, r in placed]
        lo, hi = (lo - big / 2) * fit + big / 2, (hi - big / 2) * fit + big / 2
    low, high = SUPER - lo, big - SUPER - hi
    shift = np.where(low <= high, np.clip(shift, low, high), (low + high) / 2)
    ink = np.zeros((big, big), bool)
    for xy, radius in placed:
        xy = xy + shift
        for (ax, ay), (bx, by), ra, rb in zip(xy[:-1], xy[1:], radius[:-1], radius[1:]):
            r = max(ra, rb)
            x0, x1 = max(0, int(min(ax, bx) - r)), min(big, int(max(ax, bx) + r) + 2)
            y0, y1 = max(0, int(min(ay, by) - r)), min(big, int(max(ay, by) + r) + 2)
            if x0 >= x1 or y0 >= y1:
                continue
            px = np.arange(x0, x1)[None, :] + 0.5                     # super-pixel centres
            py = np.arange(y0, y1)[:, None] + 0.5
            dx, dy = bx - ax, by - ay
            t = np.clip(((px - ax) * dx + (py - ay) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
            dist = np.hypot(px - ax - t * dx, py - ay - t * dy)
            ink[y0:y1, x0:x1] |= dist <= ra + t * (rb - ra)
    cover = ink.reshape(SIZE, SUPER, SIZE, SUPER).mean(axis=(1, 3))
    cover = ndimage.gaussian_filter(cover, rng.uniform(0.25, 0.6), mode="constant")
    paper = writer.paper + rng.uniform(2, 4) * rng.standard_normal((SIZE, SIZE))
    tone = np.clip(writer.ink + rng.uniform(-10, 10), 5, 90)
    image = paper * (1 - cover) + tone * cover
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _class_labels(count: int, rng: np.random.Generator) -> np.ndarray:
    quota = np.full(len(CLASSES), count // len(CLASSES))
    quota[:count - quota.sum()] += 1
    return rng.permutation(np.repeat(np.arange(len(CLASSES)), quota))


def samples(count: int, rng: np.random.Generator) -> Iterator[Sample]:
    writers = [_Writer(rng) for _ in range(min(WRITERS, count))]
    labels = _class_labels(count, rng)
    for i in range(count):
        w = i * len(writers) // count
        label = int(labels[i])
        yield Sample(f"writer{w + 1:02d}/{i:06d}.png", _render(rng, writers[w], label), label)


README = """\
**Digits** (generated by `sprites`, example `digits`, seed {seed}, {count} images): a synthetic
stand-in for small scanned handwritten digits (as USPS or MNIST). Each 16×16 grey image (under
`images/writer<w>/`) shows one digit written with a round pen, dark ink on light paper,
anti-aliased. Each writer has a style (slant, pen width, size, width, roundness, and habits such
as a flag on the 1, a closed 4, a crossed 7), and every digit varies (jittered strokes, pen
pressure, rotation ±10°, scale ±10 %, shifts of a pixel or two, blur). `labels.csv` gives for each
image (`source`, relative to `images/`) its digit as a class index, and `classes.txt` the digits
(line k = class k). The 10 classes are equally frequent; some are close at this size (4/9,
3/5/8, 1/7), so a clustering run with 10 sprites should recover most, not all, of them.
"""


def generate(root: Path, count: int, seed: int) -> None:
    write_collection(Path(root), samples(count, make_rng(seed)), count, SIZE, CLASSES,
                     README.format(seed=seed, count=count), masks=False)
