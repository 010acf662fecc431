"""`coins`: one struck coin per photo, on a wood, cloth or paper background.

Statistics of one image (64×64 RGB):
* background (uniform among 3 kinds, random colour): wood (grain stripes of period 3–7 px along
  a random direction, warped by smooth noise), cloth (a weave of period 3–5 px with blotches) or
  paper (a pale tone with smooth mottling); all with a linear light gradient (±12%) and grain;
* coin: a disc of radius uniform in 20–26 px, centre uniform among positions keeping the disc
  inside the image with a margin of 1 px, soft drop shadow; metal uniform among gold, silver
  and bronze (tone jittered ±8%), shaded as a low dome lit from the upper left (±30°), with a
  raised rim and a beaded ring;
* motif (the class, uniform among cross, star, crown, profile): drawn as a height map at 4× and
  rendered as relief (lit edges lighter, shadowed edges darker, the raised field a little
  brighter), rotated uniformly in 0–360°, size ±10%;
* camera: Gaussian blur σ 0.4–0.7 px and noise σ 2–4 grey levels.

Ground truth: `semantic` = class + 1 on the disc (pixel centres within the radius), `instance`
= 1 on the disc; the label in labels.csv is the motif class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from scipy import ndimage

from pipeline.examples._io import Sample, make_rng, write_collection

SIZE = 64
SUPER = 4
CLASSES = ["cross", "star", "crown", "profile"]
METALS = np.array([(222, 180, 70), (200, 202, 208), (176, 112, 62)], float)  # gold, silver, bronze

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(float) + 0.5


def _smooth(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth noise, about unit variance, varying over SIZE / cells px."""
    noise = ndimage.zoom(rng.standard_normal((cells + 1, cells + 1)), SIZE / cells, order=3, mode="nearest")
    return noise[:SIZE, :SIZE]


def _background(rng: np.random.Generator) -> np.ndarray:
    kind = int(rng.integers(3))
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(0, 255)]]], np.float32)
    if kind == 0:    # wood: warm hue, grain stripes
        hsv[..., 0], hsv[..., 1], hsv[..., 2] = rng.uniform(8, 22), rng.uniform(110, 210), rng.uniform(90, 200)
        theta = rng.uniform(0, np.pi)
        u = _XX * np.cos(theta) + _YY * np.sin(theta) + 4 * _smooth(rng, 3)
        pattern = 0.12 * np.sin(2 * np.pi * u / rng.uniform(3, 7)) + 0.06 * _smooth(rng, 8)
    elif kind == 1:  # cloth: any hue, weave
        period = rng.uniform(3, 5)
        weave = np.sin(2 * np.pi * _XX / period) * np.sin(2 * np.pi * _YY / period)
        pattern = 0.08 * weave + 0.08 * _smooth(rng, 4)
    else:            # paper: pale, mottled
        hsv[..., 1], hsv[..., 2] = rng.uniform(10, 60), rng.uniform(190, 240)
        pattern = 0.04 * _smooth(rng, 4) + 0.02 * _smooth(rng, 12)
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(float)[0, 0]
    a = rng.uniform(0, 2 * np.pi)
    gradient = 0.12 * ((_XX - SIZE / 2) * np.cos(a) + (_YY - SIZE / 2) * np.sin(a)) / (SIZE / 2)
    return rgb * (1 + pattern + gradient)[..., None]


def _motif(cls: int, size: int, cx: float, cy: float, rho: float, angle: float) -> np.ndarray:
    """The motif's height map (0/1) on a size×size canvas, centred at (cx, cy), radius rho."""
    canvas = np.zeros((size, size), np.uint8)
    c, s = np.cos(angle), np.sin(angle)

    def pts(points):
        p = np.array(points, float) * rho
        xy = np.stack([cx + c * p[:, 0] - s * p[:, 1], cy + s * p[:, 0] + c * p[:, 1]], 1)
        return np.round(xy).astype(np.int32)

    def disc(x, y, r):
        (px, py), = pts([(x, y)])
        cv2.circle(canvas, (int(px), int(py)), int(round(r * rho)), 1, -1, cv2.LINE_8)

    if cls == 0:    # cross with flared ends
        for poly in ([(-0.16, -1), (0.16, -1), (0.1, 1), (-0.1, 1)], [(-1, -0.12), (1, -0.12), (1, 0.12), (-1, 0.12)]):
            cv2.fillPoly(canvas, [pts(poly)], 1)
        for end in ([(-0.3, -1), (0.3, -1), (0.3, -0.85), (-0.3, -0.85)],
                    [(-1, -0.25), (-0.88, -0.25), (-0.88, 0.25), (-1, 0.25)],
                    [(1, -0.25), (0.88, -0.25), (0.88, 0.25), (1, 0.25)]):
            cv2.fillPoly(canvas, [pts(end)], 1)
    elif cls == 1:  # five-pointed star
        t = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        cv2.fillPoly(canvas, [pts(np.stack([r * np.cos(t), -r * np.sin(t)], 1))], 1)
    elif cls == 2:  # crown: band, three points with pearls
        cv2.fillPoly(canvas, [pts([(-0.8, 0.55), (0.8, 0.55), (0.8, 0.3), (-0.8, 0.3)])], 1)
        cv2.fillPoly(canvas, [pts([(-0.8, 0.3), (-0.85, -0.45), (-0.4, -0.05), (0, -0.7), (0.4, -0.05),
                                   (0.85, -0.45), (0.8, 0.3)])], 1)
        for x, y in ((-0.85, -0.55), (0, -0.8), (0.85, -0.55)):
            disc(x, y, 0.13)
    else:           # profile bust: head, nose, neck and shoulders
        disc(0.0, -0.3, 0.45)
        cv2.fillPoly(canvas, [pts([(0.38, -0.45), (0.62, -0.22), (0.4, -0.15)])], 1)
        cv2.fillPoly(canvas, [pts([(-0.2, 0.05), (0.2, 0.05), (0.25, 0.45), (0.75, 0.75), (0.8, 0.95),
                                   (-0.8, 0.95), (-0.75, 0.75), (-0.25, 0.45)])], 1)
    return canvas


def _coin(rng: np.random.Generator, cls: int, cx: float, cy: float, r: float, light: np.ndarray) -> np.ndarray:
    """The coin's RGB appearance over the whole image (only the disc is used)."""
    big = SIZE * SUPER
    height = _motif(cls, big, cx * SUPER - 0.5, cy * SUPER - 0.5, 0.62 * r * SUPER * rng.uniform(0.9, 1.1),
                    rng.uniform(0, 2 * np.pi)).astype(float)
    ring = np.zeros((big, big), np.uint8)
    for t in np.arange(0, 2 * np.pi, 2 * np.pi / 36):
        bx, by = cx + 0.84 * r * np.cos(t), cy + 0.84 * r * np.sin(t)
        cv2.circle(ring, (int(round(bx * SUPER - 0.5)), int(round(by * SUPER - 0.5))), SUPER * 3 // 4, 1, -1)
    height = np.maximum(height, 0.6 * ring)
    height = height.reshape(SIZE, SUPER, SIZE, SUPER).mean(axis=(1, 3))
    d = np.hypot(_XX - cx, _YY - cy)
    height = np.maximum(height, np.clip((d - (r - 2.5)) / 1.0, 0, 1))  # raised rim
    height = ndimage.gaussian_filter(height, 0.7)
    gy, gx = np.gradient(height)
    relief = -(gx * light[0] + gy * light[1])                    # > 0 on edges facing the light
    dome = 0.25 * ((_XX - cx) * light[0] + (_YY - cy) * light[1]) / r - 0.15 * (d / r) ** 2
    metal = METALS[rng.integers(len(METALS))] * rng.uniform(0.92, 1.08)
    shade = 1 + dome + 1.6 * relief + 0.08 * height + 0.03 * _smooth(rng, 6)
    return metal * shade[..., None]


def _scene(rng: np.random.Generator, cls: int):
    r = rng.uniform(20, 26)
    cx, cy = rng.uniform(r + 1, SIZE - r - 1, size=2)  # a margin of 1 px at least
    a = np.radians(225 + rng.uniform(-30, 30))          # light from the upper left
    light = np.array([np.cos(a), np.sin(a)])             # direction the light comes from (x, y)
    d = np.hypot(_XX - cx, _YY - cy)
    shadow = np.clip(r + 0.5 - np.hypot(_XX - cx + 2 * light[0], _YY - cy + 2 * light[1]), 0, 1)
    background = _background(rng) * (1 - 0.35 * ndimage.gaussian_filter(shadow, 1.5))[..., None]
    alpha = np.clip(r + 0.5 - d, 0, 1)[..., None]
    image = background * (1 - alpha) + _coin(rng, cls, cx, cy, r, light) * alpha
    image = ndimage.gaussian_filter(image, (rng.uniform(0.4, 0.7),) * 2 + (0,))
    image += rng.uniform(2, 4) * rng.standard_normal(image.shape)
    disc = (d <= r).astype(np.uint8)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), disc


def samples(count: int, rng: np.random.Generator) -> Iterator[Sample]:
    for i in range(count):
        cls = int(rng.integers(len(CLASSES)))
        image, disc = _scene(rng, cls)
        yield Sample(f"{i:06d}.png", image, cls, disc * np.uint8(cls + 1), disc)


README = """\
**Coins** (generated by `sprites`, example `coins`, seed {seed}, {count} images): a synthetic
stand-in for a numismatic photo collection. Each 64×64 RGB image shows one coin (a gold, silver or
bronze disc of radius 20–26 px, lit from the upper left, with a rim and a beaded ring) lying on a
wood, cloth or paper background of random colour. The coin bears one of 4 struck motifs (cross,
star, crown, profile bust; classes 0..3 as in `classes.txt`), randomly rotated. `labels.csv` gives
for each image (`source`, relative to `images/`) its motif class. `masks.h5` holds per image
`semantic` (0 background, class + 1 on the coin) and `instance` (0 background, 1 on the coin)
masks, `source` in the same order as the CSV, and the class names in the attribute `classes`.
"""


def generate(root: Path, count: int, seed: int) -> None:
    write_collection(Path(root), samples(count, make_rng(seed)), count, SIZE, CLASSES,
                     README.format(seed=seed, count=count), masks=True)
