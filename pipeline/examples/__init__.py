"""Built-in example collections for `sprites init DIR --example NAME`.

Each example is generated offline from a seed (no downloads): `root/images/` (PNG) and
`root/ground_truth/` with `labels.csv` (`source,label`), `classes.txt`, `README.md` and, for the
objects/scenes examples, `masks.h5` (`source`, `semantic`, `instance`, attribute `classes`).
`letters` is made of pages to be cut by `ingest.crop = "components"`: its `labels.csv` has one
row per letter, `source,x,y,w,h,label` (the letter's box in page pixels), and its count is the
number of letters.
The same seed gives byte-identical files; see `_io.py` for how an interrupted generation is
kept from looking complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline.examples import coins, digits, glyphs, letters, multi_dsprites, ornaments, tetrominoes

__all__ = ["Example", "EXAMPLES", "generate_example"]


@dataclass(frozen=True)
class Example:
    name: str
    description: str          # one line for `sprites init --help` and the README
    preset: str               # "clustering" | "objects" | "scenes"
    size: int                 # image side in px (= ingest.size)
    default_count: int        # default number of images (letters: of letters)
    channels: int             # 1 (grey) or 3
    config: dict              # recommended config overrides by section, e.g. {"model": {"sprites": 10}}
    generate: Callable[[Path, int, int], None]   # generate(root, count, seed)
    classes: tuple[str, ...] = ()  # class names, as in ground_truth/classes.txt


EXAMPLES: dict[str, Example] = {
    "glyphs": Example(
        name="glyphs",
        description="letters cut from early printed books: 10 lowercase letters, 28×28 grey (clustering)",
        preset="clustering", size=glyphs.SIZE, default_count=3000, channels=1,
        config={"model": {"sprites": 10}},
        generate=glyphs.generate, classes=tuple(glyphs.CLASSES),
    ),
    "letters": Example(
        name="letters",
        description="pages of print in 3 types, cut by ingest.crop = components into 18 lowercase letters, 32×32 grey (clustering)",
        preset="clustering", size=letters.SIZE, default_count=3000, channels=1,
        # The cropper's defaults (min_size 8, merge_distance 8, margin 2, no max_size) fit the
        # pages: every letter one shape, the i's dot 1–4 px above its stem, specks under 8 px.
        config={"model": {"sprites": len(letters.CLASSES)}, "ingest": {"crop": "components"}},
        generate=letters.generate, classes=tuple(letters.CLASSES),
    ),
    "digits": Example(
        name="digits",
        description="handwritten-like digits 0–9 by 12 writers, 16×16 grey (clustering)",
        preset="clustering", size=digits.SIZE, default_count=3000, channels=1,
        config={"model": {"sprites": 10}},
        generate=digits.generate, classes=tuple(digits.CLASSES),
    ),
    "tetrominoes": Example(
        name="tetrominoes",
        description="3 coloured tetrominoes per image among 19 shapes, 35×35 (scenes, after DeepMind's Tetrominoes)",
        preset="scenes", size=tetrominoes.SIZE, default_count=3000, channels=3,
        # K, L and the background switch only: the scenes preset derives the rest from the crop size
        # and L (pipeline/core/presets.py). On black, as the reference's tetro config (n_backgrounds
        # 0): a learned background drifts to colours that sprites then erase with black masks much
        # larger than their pieces (ARI-FG 52–78 % in 30 min with it, 97–98 % without).
        config={"model": {"sprites": 19, "layers": 3, "background": False}},
        generate=tetrominoes.generate, classes=tuple(tetrominoes.CLASSES),
    ),
    "multi-dsprites": Example(
        name="multi-dsprites",
        description="2–5 occluding squares, ellipses and hearts on grey, 64×64 (scenes, after Multi-dSprites)",
        preset="scenes", size=multi_dsprites.SIZE, default_count=3000, channels=3,
        # K and L only. K = 32 sprites for 3 shapes: a sprite holds a shape at one orientation (the
        # sprites do not rotate; a similarity head learned no rotation within 45 CPU-minutes, see
        # docs/experiments.md), started as ellipses turned evenly over a half-turn (the scenes preset).
        config={"model": {"sprites": 32, "layers": 5}},
        generate=multi_dsprites.generate, classes=tuple(multi_dsprites.CLASSES),
    ),
    "coins": Example(
        name="coins",
        description="one coin per photo with 4 struck motifs on wood/cloth/paper, 64×64 (objects)",
        preset="objects", size=coins.SIZE, default_count=2000, channels=3,
        config={"model": {"sprites": 4, "layers": 1}},
        generate=coins.generate, classes=tuple(coins.CLASSES),
    ),
    "ornaments": Example(
        name="ornaments",
        description="printers' ornaments (fleurons, rosettes, leaves, vignettes) from early books: 8 motifs on old paper, 64×64 (objects)",
        preset="objects", size=ornaments.SIZE, default_count=2000, channels=3,
        # Look-alike pairs (a leaf with or without veins, rosettes of 6 and 8 petals).
        config={"model": {"sprites": len(ornaments.CLASSES)}},
        generate=ornaments.generate, classes=tuple(ornaments.CLASSES),
    ),
    "ornaments-variant": Example(
        name="ornaments-variant",
        description="held-out printers' ornaments: 9 other motifs on cooler, greyer paper, 64×64 (objects)",
        preset="objects", size=ornaments.SIZE, default_count=2000, channels=3,
        # For held-out checks: other motifs (look-alike pairs too), paper and seed (seed + 1 000 003).
        config={"model": {"sprites": len(ornaments.VARIANT_CLASSES)}},
        generate=ornaments.generate_variant, classes=tuple(ornaments.VARIANT_CLASSES),
    ),
}


def generate_example(name: str, root: Path, count: int | None = None, seed: int = 0) -> Example:
    """Generate example `name` into `root` (`count` images, default `default_count`); return it."""
    from pipeline.errors import SpritesError
    if name not in EXAMPLES:
        raise SpritesError(f"unknown example {name!r}: choose one of {', '.join(EXAMPLES)}")
    example = EXAMPLES[name]
    count = example.default_count if count is None else int(count)
    if count < 1:
        raise SpritesError(f"--count must be at least 1, got {count}")
    example.generate(Path(root), count, int(seed))
    return example
