"""`letters`: printed pages of (synthetic) old books, cut into letters by `ingest.crop = "components"`.

Unlike `glyphs` (one letter per image), each image is a page of text: lines of words, and the
ground truth is the box of every letter on its page. The letters are drawn as in `glyphs`, from
centre-line stroke skeletons with a broad nib (thick stems, thin hairlines, serifs; numpy/scipy
only, no fonts), with our own skeletons for 18 lowercase letters.

Statistics (pages grey, mode "L"):
* 18 classes a b c d e f h i l m n o p q r s t u, among them the look-alike groups b d p q,
  n u h and c e o; frequencies as in Latin/French/English text (FREQUENCY: e 14.2 %; a, t, i,
  s, n 7.6–8.5 %; o, r 6.9 %; b, f 1.6 %; q 0.6 %), by quotas (largest remainder, every class
  at least once when the count allows), shuffled;
* PER_PAGE = 250 letters per page (the last page holds the rest), 3 books (fewer for fewer
  pages), `images/book{b}/page{p:03d}.png`; each book has its own type (nib angle 8–28°, stem
  0.15–0.20 and hairline 0.10–0.12 x-height, letter width ×0.9–1.1, x-height 16–22 px: letters
  without ascender or descender are 18–27 px tall, the others 23–37 px), paper (190–235) and
  ink (20–70) tones, page width (600–900 px), letter spacing (3–6 px of paper between letters),
  word spacing (0.45–0.65 x-height) and leading (at least 14 px of paper between lines);
* words of 1–9 letters, left-aligned lines; per letter: ink weight ×0.95–1.15, rotation ±2°,
  baseline ±0.4 px, Gaussian blur σ 0–0.45 px, ink tone ±8; per page: paper tone ±4, smooth
  paper texture (about ±5 grey levels), grain (σ 1.5–3) and 0–5 specks (at most 4 px, well
  away from the letters);
* every letter is a single 8-connected ink shape (checked at coverages 0.3, 0.5 and 0.7 when it
  is drawn, and redrawn bolder if a hairline broke), except the i, whose dot lies 1–4 px above
  its stem (within the cropper's merge distance); two letters never touch.

labels.csv: `source,x,y,w,h,label`, one row per letter, the tight box of its ink (pixels at
least half covered) in page pixels, `label` the class index (line of `classes.txt`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy import ndimage

from pipeline.examples._io import Page, class_labels, make_rng, write_pages
from pipeline.examples.glyphs import _SKELETONS as _GLYPHS_SKELETONS
from pipeline.examples.glyphs import _arc, _arch, _field, _line, _serif

SIZE = 32                       # ingest.size recommended for the crops
CLASSES = list("abcdefhilmnopqrstu")
# Letter frequencies of running text (between English, French and Latin), per mille.
FREQUENCY = np.array([80, 15, 30, 40, 134, 15, 35, 78, 50, 30, 72, 65, 25, 6, 65, 75, 80, 50], float)
BOOKS = 3
PER_PAGE = 250
SUPER = 4                        # letters are rendered at 4× and averaged down (anti-aliasing)
RES = 64                         # template pixels per x-height unit
X0, X1, Y0, Y1 = -0.45, 1.55, -0.8, 1.9   # template extent in x-height units (y up)
ASC, DESC = 1.5, -0.5           # ascender and descender lines
WORD_LENGTHS = np.array([3, 16, 19, 16, 13, 11, 9, 7, 6], float)  # P(word of 1..9 letters), %
LEVELS = (0.3, 0.5, 0.7)        # coverages at which every letter must be one shape


# Centre-line strokes in x-height units, y up, baseline 0, x-height 1 (as glyphs' skeletons).
# The letters glyphs.py draws too are its own skeletons (a e m n o r s t); d and i are redrawn here
# (a serif and a dot that the cropper needs), the others are new.
_SKELETONS = {
    **{k: v for k, v in _GLYPHS_SKELETONS.items() if k in "aemnorst"},
    "b": [_line((0.12, 0.0), (0.12, ASC)), _serif(0.04, ASC, 0.08, 0.08), _arc(0.48, 0.5, 0.36, 0.52, 0, 360)],
    "c": [_arc(0.45, 0.5, 0.40, 0.52, 45, 325), ("dot", 0.72, 0.84, 0.09)],
    "d": [_arc(0.44, 0.5, 0.36, 0.52, 0, 360), _line((0.80, 0.0), (0.80, ASC)),
          _serif(0.72, ASC, 0.08, 0.08), _serif(0.80, 0.0, 0.0, 0.14)],
    "f": [_line((0.24, 0.0), (0.24, 1.22)) + _arc(0.47, 1.22, 0.23, 0.26, 180, 35), ("dot", 0.66, 1.36, 0.08),
          _line((0.02, 1.0), (0.50, 1.0)), _serif(0.24, 0.0, 0.16, 0.18)],
    "h": [_line((0.12, 0.0), (0.12, ASC)), _serif(0.04, ASC, 0.08, 0.08), _serif(0.12, 0.0),
          _arch(0.12, 0.78), _serif(0.78, 0.0)],
    "i": [_line((0.19, 0.0), (0.19, 1.0)), _serif(0.19, 0.0, 0.19, 0.19), _serif(0.11, 1.0, 0.08, 0.08),
          ("dot", 0.19, 1.34, 0.1)],
    "l": [_line((0.19, 0.0), (0.19, ASC)), _serif(0.19, 0.0, 0.19, 0.19), _serif(0.11, ASC, 0.08, 0.08)],
    "p": [_line((0.12, DESC), (0.12, 1.0)), _serif(0.04, 1.0, 0.08, 0.08), _serif(0.12, DESC, 0.15, 0.17),
          _arc(0.48, 0.5, 0.36, 0.52, 0, 360)],
    "q": [_line((0.80, DESC), (0.80, 1.0)), _serif(0.80, DESC, 0.17, 0.15), _arc(0.44, 0.5, 0.36, 0.52, 0, 360)],
    "u": [_line((0.12, 1.0), (0.12, 0.36)) + _arc(0.45, 0.36, 0.33, 0.36, 180, 360),
          _line((0.78, 1.0), (0.78, 0.0)), _serif(0.04, 1.0, 0.08, 0.08), _serif(0.70, 1.0, 0.08, 0.08),
          _serif(0.78, 0.0, 0.0, 0.14)],
}


class _Type:
    """One book: its type (a distance-field template per letter, with the extent of its ink in
    x-height units), its tones and its layout."""

    def __init__(self, rng: np.random.Generator):
        nib = np.radians(rng.uniform(8, 28))
        thick, thin, stretch = rng.uniform(0.15, 0.20), rng.uniform(0.10, 0.12), rng.uniform(0.9, 1.1)
        self.xh = rng.uniform(16, 22)                       # x-height, px
        self.paper, self.ink = rng.uniform(190, 235), rng.uniform(20, 70)
        self.width = int(rng.integers(610, 891))            # page width, px (±10 per page)
        self.tracking = 3 + rng.uniform(0, 0.08) * self.xh  # paper between letters, px
        self.space = rng.uniform(0.45, 0.65) * self.xh      # between words, px
        self.lead = max(14.0, rng.uniform(0.6, 0.9) * self.xh)  # paper between the lines' ink, px
        self.fields, self.extents = [], []
        for letter in CLASSES:
            field = _field(_SKELETONS[letter], nib, thick, thin, stretch, (X0, X1, Y0, Y1))
            rows, cols = np.nonzero(field <= 1.6)
            self.fields.append(field)
            self.extents.append((X0 + cols.min() / RES, X0 + (cols.max() + 1) / RES,
                                 Y1 - (rows.max() + 1) / RES, Y1 - rows.min() / RES))
        self.top = max(e[3] for e in self.extents)      # highest ink above the baseline, x-heights
        self.bottom = -min(e[2] for e in self.extents)  # lowest ink below it


def _one_shape(cover: np.ndarray, dotted: bool) -> bool:
    """Whether the ink is one 8-connected shape at every coverage of LEVELS (the i: stem + dot)."""
    eight = np.ones((3, 3), bool)
    for level in LEVELS:
        labels, n = ndimage.label(cover >= level, eight)
        if n == 1:
            continue
        if not (dotted and n == 2):
            return False
        sizes = np.bincount(labels.ravel())[1:]
        rows = [np.nonzero((labels == k).any(axis=1))[0] for k in (1, 2)]
        dot, stem = (0, 1) if sizes[0] < sizes[1] else (1, 0)
        if rows[dot].max() >= rows[stem].min() or rows[stem].min() - rows[dot].max() > 7 or sizes[dot] < 3:
            return False
    return True


def _letter(rng: np.random.Generator, typ: _Type, cls: int) -> tuple[np.ndarray, float, float]:
    """A letter's ink coverage on its own tile, and where its origin (baseline, x = 0) lies in the
    tile (px). Redrawn bolder and sharper, up to three times, if a hairline breaks."""
    s = typ.xh
    ex0, ex1, ey0, ey1 = typ.extents[cls]
    pad = 4
    w, h = math.ceil((ex1 - ex0) * s) + 2 * pad, math.ceil((ey1 - ey0) * s) + 2 * pad
    for attempt in range(4):
        ox = pad - ex0 * s + rng.uniform(-0.5, 0.5)
        oy = pad + ey1 * s + rng.uniform(-0.4, 0.4)
        theta = np.radians(rng.uniform(-2, 2))
        weight = rng.uniform(0.95, 1.15) + 0.12 * attempt
        sigma = rng.uniform(0, 0.45) / (1 + attempt)
        c, sn, k = np.cos(theta), np.sin(theta), RES / s
        # output (R, C) at SUPER× → template (row, col): see the geometry note after this function
        matrix = np.array([[k * c / SUPER, -k * sn / SUPER], [k * sn / SUPER, k * c / SUPER]])
        hy, hx = 0.5 / SUPER - oy, 0.5 / SUPER - ox
        offset = np.array([k * (-sn * hx + c * hy) + Y1 * RES - 0.5,
                           k * (c * hx + sn * hy) - X0 * RES - 0.5])
        nd = ndimage.affine_transform(typ.fields[cls], matrix, offset, output_shape=(h * SUPER, w * SUPER),
                                      order=1, cval=99.0)
        inked = nd <= weight + 0.05 * rng.standard_normal(nd.shape)
        cover = inked.reshape(h, SUPER, w, SUPER).mean(axis=(1, 3))
        if sigma > 0.05:
            cover = ndimage.gaussian_filter(cover, sigma, mode="constant")
        cover *= rng.uniform(0.95, 1.0, size=cover.shape)
        if _one_shape(cover, CLASSES[cls] == "i"):
            break
    return cover, ox, oy

# Geometry: a super-pixel (R, C) has its centre at page offset (py, px) = ((R + ½) / SUPER,
# (C + ½) / SUPER) in the tile; relative to the origin, (dy, dx) = (py − oy, px − ox), turned by θ
# into (v, u) and scaled by 1 / x-height into units (x, y) = (u / s, −v / s); the template pixel
# is (row, col) = ((Y1 − y)·RES − ½, (x − X0)·RES − ½). All linear in (R, C).


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1] + 1), int(rows[-1] + 1)   # x0, y0, x1, y1


def _words(n: int, rng: np.random.Generator) -> list[int]:
    """Word lengths (1–9) adding up to n letters."""
    out = []
    p = WORD_LENGTHS / WORD_LENGTHS.sum()
    while n > 0:
        k = min(n, int(rng.choice(len(p), p=p)) + 1)
        out.append(k)
        n -= k
    return out


def _page(rng: np.random.Generator, typ: _Type, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A page holding `classes` in reading order → (image, (n, 4) boxes x, y, w, h)."""
    tiles = []
    for cls in classes:
        cover, ox, oy = _letter(rng, typ, int(cls))
        tiles.append((cover, ox, oy, _box(cover >= 0.1), _box(cover >= 0.5)))
    margin_x, margin_y = int(rng.integers(40, 61)), int(rng.integers(40, 61))
    width = typ.width + int(rng.integers(-10, 11))
    right = width - margin_x
    pitch = (typ.top + typ.bottom) * typ.xh + typ.lead
    # layout: each letter's faint ink (coverage ≥ 0.1) starts `tracking` px after the previous one's
    places, line, x, i = [], 0, float(margin_x), 0
    for length in _words(len(classes), rng):
        word = tiles[i:i + length]
        span = sum(t[3][2] - t[3][0] for t in word) + typ.tracking * (length - 1) + length
        if x > margin_x and x + span > right:
            line, x = line + 1, float(margin_x)
        for cover, ox, oy, faint, _ in word:
            places.append((line, x - faint[0]))
            x += faint[2] - faint[0] + typ.tracking + rng.uniform(0, 1)
        x += typ.space - typ.tracking + rng.uniform(-1, 1)
        i += length
    lines = places[-1][0] + 1 if places else 1
    top = margin_y + typ.top * typ.xh
    height = int(math.ceil(top + (lines - 1) * pitch + typ.bottom * typ.xh + margin_y))

    paper = typ.paper + rng.uniform(-4, 4)
    cells = 6
    texture = ndimage.zoom(rng.standard_normal((cells, cells)), (height / cells, width / cells), order=3,
                           mode="nearest")[:height, :width]
    page = paper + 2.5 * texture + rng.uniform(1.5, 3) * rng.standard_normal((height, width))
    boxes = np.zeros((len(classes), 4), np.int64)
    occupied = np.zeros((height, width), bool)
    for n, ((cover, ox, oy, faint, tight), (ln, left)) in enumerate(zip(tiles, places)):
        tx, ty = int(round(left)), int(round(top + ln * pitch - oy))
        th, tw = cover.shape
        ink = np.clip(typ.ink + rng.uniform(-8, 8), 10, 90)
        region = page[ty:ty + th, tx:tx + tw]
        region[:] = region * (1 - cover) + ink * cover
        x0, y0, x1, y1 = tight
        boxes[n] = (tx + x0, ty + y0, x1 - x0, y1 - y0)
        fx0, fy0, fx1, fy1 = faint
        occupied[max(0, ty + fy0 - 12):ty + fy1 + 12, max(0, tx + fx0 - 12):tx + fx1 + 12] = True
    yy, xx = np.mgrid[0:9, 0:9] - 4.0
    for _ in range(int(rng.integers(0, 6))):  # specks: at most 4 px wide, kept clear of the letters
        y, x = int(rng.integers(4, height - 13)), int(rng.integers(4, width - 13))
        r, cy, cx = rng.uniform(0.5, 1.3), rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)
        if occupied[max(0, y - 8):y + 17, max(0, x - 8):x + 17].any():
            continue
        occupied[y:y + 9, x:x + 9] = True
        spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) * rng.uniform(0.6, 1.0)
        spot[spot < 0.05] = 0
        region = page[y:y + 9, x:x + 9]
        region[:] = region * (1 - spot) + typ.ink * spot
    return np.clip(np.round(page), 0, 255).astype(np.uint8), boxes


def pages(count: int, rng: np.random.Generator) -> Iterator[Page]:
    """`count` letters on ceil(count / PER_PAGE) pages, the pages split evenly among the books."""
    n_pages = max(1, -(-count // PER_PAGE))
    books = min(BOOKS, n_pages)
    types = [_Type(rng) for _ in range(books)]
    labels = class_labels(FREQUENCY, count, rng)
    first_page = [next(p for p in range(n_pages) if p * books // n_pages == b) for b in range(books)]
    for p in range(n_pages):
        book = p * books // n_pages
        classes = labels[p * PER_PAGE:(p + 1) * PER_PAGE]
        image, boxes = _page(rng, types[book], classes)
        yield Page(f"book{book + 1}/page{p - first_page[book] + 1:03d}.png", image, boxes, classes)


README = """\
**Letters** (generated by `sprites`, example `letters`, seed {seed}, {count} letters on {pages}
pages): a synthetic stand-in for scanned pages of early printed books, to be cut into letters by
`ingest.crop = "components"`. Each grey page (`images/book<b>/page<p>.png`, 600–900 px wide)
holds lines of words in lowercase letters, dark ink on paper, with the variation of real print:
ink weight, a degree or two of rotation, blur, paper texture and grain, a few specks; each book
has its own type (nib, stem and hairline widths, letter width, x-height of 16–22 px), paper and
ink. Every letter is one connected ink shape (the dot of the i lies 1–4 px above its stem) and
no two letters touch, so that each becomes one crop. `labels.csv` gives one row per letter: its
page (`source`, relative to `images/`), the box of its ink in page pixels (`x,y,w,h`) and its
letter as a class index; `classes.txt` lists the letters, line k = class k:
{letters}.
The letters are as frequent as in running text (e most, q least) and include look-alikes
(b d p q, n u h, c e o), so a clustering run with {k} sprites is not expected to be perfect.
"""


def generate(root: Path, count: int, seed: int) -> None:
    n_pages = max(1, -(-count // PER_PAGE))
    readme = README.format(seed=seed, count=count, pages=n_pages, letters=" ".join(CLASSES), k=len(CLASSES))
    write_pages(Path(root), pages(count, make_rng(seed)), CLASSES, readme)
