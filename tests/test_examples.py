"""The built-in example collections: shapes, ground truth, determinism, atomic writing."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pipeline.examples import EXAMPLES, Example, generate_example
from pipeline.examples import _io, digits, letters, tetrominoes

COUNT = 50


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """Each example generated once with COUNT images (glyphs with 120, for the class check; for
    letters COUNT letters, on one page)."""
    roots = {}
    for name in EXAMPLES:
        root = tmp_path_factory.mktemp(name.replace("-", "_"))
        generate_example(name, root, count=120 if name == "glyphs" else COUNT, seed=3)
        roots[name] = root
    return roots


def _labels(root: Path) -> list[tuple[str, int]]:
    with open(root / "ground_truth" / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["source", "label"]
    return [(s, int(l)) for s, l in rows[1:]]


def _sources(root: Path) -> list[str]:
    """The `source` column of labels.csv, whatever its other columns (letters: one row per box)."""
    with open(root / "ground_truth" / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "source"
    return [r[0] for r in rows[1:]]


def _image(root: Path, source: str) -> np.ndarray:
    return np.asarray(Image.open(root / "images" / source))


def _masks(root: Path):
    with h5py.File(root / "ground_truth" / "masks.h5", "r") as f:
        sources = [s.decode() if isinstance(s, bytes) else s for s in f["source"][()]]
        return sources, f["semantic"][()], f["instance"][()], list(f.attrs["classes"])


def _check_common(root: Path, example: Example, count: int, masks: bool) -> None:
    rows = _labels(root)
    assert len(rows) == count
    assert len({s for s, _ in rows}) == count
    classes = (root / "ground_truth" / "classes.txt").read_text(encoding="utf-8").splitlines()
    assert classes == list(example.classes)
    assert all(0 <= l < len(classes) for _, l in rows)
    assert (root / "ground_truth" / "README.md").read_text(encoding="utf-8").strip()
    assert not (root / _io.PARTIAL).exists()
    pngs = sorted(p.relative_to(root / "images").as_posix() for p in (root / "images").rglob("*.png"))
    assert pngs == sorted(s for s, _ in rows)
    if masks:
        sources, semantic, instance, names = _masks(root)
        assert sources == [s for s, _ in rows]
        assert semantic.shape == instance.shape == (count, example.size, example.size)
        assert semantic.dtype == instance.dtype == np.uint8
        assert names == list(example.classes)
        assert ((semantic > 0) == (instance > 0)).all()
        assert semantic.max() <= len(classes)
    else:
        assert not (root / "ground_truth" / "masks.h5").exists()


# --- tetrominoes --------------------------------------------------------------------------------

def test_tetromino_shapes_are_the_19_fixed_pieces():
    shapes = tetrominoes.SHAPES
    assert len(shapes) == 19 and len(set(shapes)) == 19
    assert len(tetrominoes.CLASSES) == 19 and len(set(tetrominoes.CLASSES)) == 19
    for cells in shapes:
        assert len(set(cells)) == 4
        seen, todo = set(), [cells[0]]
        while todo:  # flood fill over 4-neighbours
            r, c = todo.pop()
            if (r, c) in seen or (r, c) not in cells:
                continue
            seen.add((r, c))
            todo += [(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)]
        assert len(seen) == 4
    counts = {}
    for name in tetrominoes.CLASSES:
        counts[name[0]] = counts.get(name[0], 0) + 1
    assert counts == {"I": 2, "O": 1, "T": 4, "S": 2, "Z": 2, "L": 4, "J": 4}


def test_tetromino_pieces_are_never_judged_duplicates():
    """The example's duplicate threshold sits above the overlap of any two different pieces (they
    share at most 3 of 4 cells: 0.6) and below that of a piece with itself, shifted on its canvas."""
    import torch
    from pipeline.core.config import config_from_dict
    from pipeline.models.sprites.reassign import mask_overlap
    threshold = config_from_dict({}, preset="scenes").model.reassign_duplicate   # the preset's, which the example uses
    canvas = torch.full((2 * 19, 1, 24, 24), -10.0)          # raw mask parameters: opacity ≈ 0
    for i, piece in enumerate(tetrominoes.MASKS):
        h, w = piece.shape
        canvas[i, 0, 1:1 + h, 1:1 + w] = torch.from_numpy(piece.astype(np.float32)) * 20 - 10
        canvas[19 + i, 0, 3:3 + h, 2:2 + w] = torch.from_numpy(piece.astype(np.float32)) * 20 - 10
    iou = mask_overlap(canvas)
    different = iou[:19, :19] - torch.eye(19) * iou[:19, :19]
    assert float(different.max()) == pytest.approx(0.6)
    assert float(different.max()) < threshold <= float(torch.diagonal(iou[:19, 19:]).min())


def test_tetrominoes_scenes(made):
    root, example = made["tetrominoes"], EXAMPLES["tetrominoes"]
    _check_common(root, example, COUNT, masks=True)
    rows = _labels(root)
    sources, semantic, instance, _ = _masks(root)
    area = 4 * tetrominoes.BLOCK ** 2
    for i, (source, label) in enumerate(rows):
        image = _image(root, source)
        assert image.shape == (35, 35, 3)
        ins, sem = instance[i], semantic[i]
        assert sorted(np.unique(ins)) == [0, 1, 2, 3]
        assert ((image.max(axis=2) > 0) == (ins > 0)).all()
        for k in (1, 2, 3):
            where = ins == k
            assert where.sum() == area  # disjoint pieces: each keeps all its 4 blocks
            assert len(np.unique(image[where], axis=0)) == 1
            assert len(np.unique(sem[where])) == 1
        assert label == sem[ins == 3][0] - 1  # the last-drawn piece


# --- multi-dsprites -----------------------------------------------------------------------------

def test_multi_dsprites_scenes(made):
    root, example = made["multi-dsprites"], EXAMPLES["multi-dsprites"]
    _check_common(root, example, COUNT, masks=True)
    rows = _labels(root)
    _, semantic, instance, _ = _masks(root)
    numbers = set()
    for i, (source, label) in enumerate(rows):
        image = _image(root, source)
        assert image.shape == (64, 64, 3)
        ins, sem = instance[i], semantic[i]
        n = int(ins.max())
        numbers.add(n)
        assert 2 <= n <= 5
        assert sorted(np.unique(ins)) == list(range(n + 1))  # every object keeps visible pixels
        background = image[ins == 0]
        assert (background == background[0]).all() and len(set(background[0])) == 1
        for k in range(1, n + 1):
            assert len(np.unique(sem[ins == k])) == 1
        assert label == sem[ins == n][0] - 1  # the front-most object
    assert len(numbers) >= 3


# --- glyphs -------------------------------------------------------------------------------------

def test_glyphs_collection(made):
    root, example = made["glyphs"], EXAMPLES["glyphs"]
    _check_common(root, example, 120, masks=False)
    rows = _labels(root)
    assert {l for _, l in rows} == set(range(10))
    assert all((root / "images" / s).is_file() for s, _ in rows)
    assert all(s.startswith("book") and s.count("/") == 2 for s, _ in rows)
    for source, _ in rows[:20]:
        with Image.open(root / "images" / source) as im:
            assert im.mode == "L" and im.size == (28, 28)
        pixels = _image(root, source)
        assert pixels.min() <= 120 and np.median(pixels) >= 150  # dark ink on light paper


# --- letters ------------------------------------------------------------------------------------

def _box_labels(root: Path) -> list[tuple[str, int, int, int, int, int]]:
    with open(root / "ground_truth" / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["source", "x", "y", "w", "h", "label"]
    return [(r[0], *(int(v) for v in r[1:])) for r in rows[1:]]


def test_letters_collection(made):
    """Pages, not crops: labels.csv has one row per letter, its box on the page (the cropper's
    check is in test_example_letters.py)."""
    root, example = made["letters"], EXAMPLES["letters"]
    rows = _box_labels(root)
    assert len(rows) == COUNT  # the count is the number of letters
    assert (root / "ground_truth" / "classes.txt").read_text(encoding="utf-8").splitlines() == list(example.classes)
    assert len(example.classes) == 18 and example.config == {"model": {"sprites": 18}, "ingest": {"crop": "components"}}
    assert (root / "ground_truth" / "README.md").read_text(encoding="utf-8").strip()
    assert not (root / _io.PARTIAL).exists() and not (root / "ground_truth" / "masks.h5").exists()
    pngs = sorted(p.relative_to(root / "images").as_posix() for p in (root / "images").rglob("*.png"))
    assert pngs == ["book1/page001.png"] == sorted({r[0] for r in rows})
    with Image.open(root / "images" / pngs[0]) as im:
        assert im.mode == "L" and 600 <= im.size[0] <= 900
        W, H = im.size
    page = _image(root, pngs[0])
    assert np.median(page) >= 170 and page.min() <= 90  # dark ink on light paper
    for _, x, y, w, h, label in rows:
        assert 0 <= label < 18 and 0 <= x and x + w <= W and 0 <= y and y + h <= H
        assert page[y:y + h, x:x + w].min() < np.median(page) - 60  # the box holds ink


def test_letters_page_count():
    rng = _io.make_rng(0)
    pages = list(letters.pages(letters.PER_PAGE + 3, rng))
    assert [len(p.boxes) for p in pages] == [letters.PER_PAGE, 3]
    assert [p.source for p in pages] == ["book1/page001.png", "book2/page001.png"]
    assert all(p.boxes.dtype.kind == "i" and p.labels.shape == (len(p.boxes),) for p in pages)


# --- digits -------------------------------------------------------------------------------------

def test_digits_collection(made):
    root, example = made["digits"], EXAMPLES["digits"]
    _check_common(root, example, COUNT, masks=False)
    rows = _labels(root)
    assert example.classes == tuple("0123456789") and example.config == {"model": {"sprites": 10}}
    assert np.bincount([l for _, l in rows], minlength=10).tolist() == [5] * 10  # equal classes
    assert all(s.startswith("writer") and s.count("/") == 1 for s, _ in rows)
    assert len({s.split("/")[0] for s, _ in rows}) == digits.WRITERS
    for source, _ in rows:
        with Image.open(root / "images" / source) as im:
            assert im.mode == "L" and im.size == (16, 16)
        pixels = _image(root, source)
        assert pixels.min() <= 110 and np.median(pixels) >= 170  # dark ink on light paper
        assert (pixels[[0, -1]] >= 150).all() and (pixels[:, [0, -1]] >= 150).all()  # the digit inside


# --- coins --------------------------------------------------------------------------------------

def test_coins_collection(made):
    root, example = made["coins"], EXAMPLES["coins"]
    _check_common(root, example, COUNT, masks=True)
    rows = _labels(root)
    _, semantic, instance, _ = _masks(root)
    assert {l for _, l in rows} <= {0, 1, 2, 3}
    yy, xx = np.mgrid[0:64, 0:64]
    for i, (source, label) in enumerate(rows):
        assert _image(root, source).shape == (64, 64, 3)
        disc = instance[i] == 1
        assert set(np.unique(instance[i])) == {0, 1}
        assert (semantic[i][disc] == label + 1).all()
        radius = np.sqrt(disc.sum() / np.pi)
        assert 19 <= radius <= 27
        for axis in (yy, xx):  # the whole disc lies inside: no disc pixel on the border
            assert axis[disc].min() > 0 and axis[disc].max() < 63


# --- determinism, registry, atomicity -----------------------------------------------------------

@pytest.mark.parametrize("name", list(EXAMPLES))
def test_same_seed_same_bytes(tmp_path, name):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for root, seed in ((a, 7), (b, 7), (c, 8)):
        generate_example(name, root, count=12, seed=seed)
    first = _sources(a)[5]
    for rel in (f"images/{first}", "ground_truth/labels.csv"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    if (a / "ground_truth" / "masks.h5").exists():
        assert (a / "ground_truth/masks.h5").read_bytes() == (b / "ground_truth/masks.h5").read_bytes()
    other = _sources(c)[5]
    assert (a / "images" / first).read_bytes() != (c / "images" / other).read_bytes()


def test_registry_and_generate_example(tmp_path):
    assert set(EXAMPLES) == {"glyphs", "letters", "digits", "tetrominoes", "multi-dsprites", "coins",
                             "ornaments", "ornaments-variant"}
    for name, example in EXAMPLES.items():
        assert example.name == name and example.description and "\n" not in example.description
        assert example.preset in {"clustering", "objects", "scenes"}
        assert example.channels in (1, 3) and example.size > 0 and example.default_count >= 1000
        assert callable(example.generate) and isinstance(example.config, dict)
    root = tmp_path / "demo"
    got = generate_example("tetrominoes", root, count=5, seed=1)
    assert got is EXAMPLES["tetrominoes"]
    for rel in ("ground_truth/labels.csv", "ground_truth/masks.h5", "ground_truth/classes.txt",
                "ground_truth/README.md", "images/000004.png"):
        assert (root / rel).is_file()


def test_recommended_config_is_valid():
    from pipeline.core.config import config_from_dict, set_value
    for example in EXAMPLES.values():
        cfg = config_from_dict({}, preset=example.preset)
        for section, values in example.config.items():
            for key, value in values.items():
                set_value(cfg, section, key, value)


def test_refuses_to_overwrite_and_cleans_interrupted(tmp_path):
    from pipeline.errors import SpritesError
    root = tmp_path / "p"
    (root / "images").mkdir(parents=True)
    (root / "images" / "mine.jpg").write_bytes(b"x")
    with pytest.raises(SpritesError, match="already exists"):
        generate_example("coins", root, count=2)
    assert (root / "images" / "mine.jpg").read_bytes() == b"x"

    def broken(count, rng):  # an interruption after two images
        yield from list(tetrominoes.samples(2, rng))
        raise KeyboardInterrupt

    other = tmp_path / "q"
    with pytest.raises(KeyboardInterrupt):
        _io.write_collection(other, broken(5, _io.make_rng(0)), 5, 35, tetrominoes.CLASSES, "x", masks=True)
    assert not (other / "images").exists() and not (other / "ground_truth").exists()
    assert not (other / _io.PARTIAL).exists()
    generate_example("tetrominoes", other, count=3)  # a later generation succeeds
    assert len(_labels(other)) == 3


def test_write_pages_is_atomic(tmp_path):
    """An interrupted page generation leaves nothing that looks like a collection."""
    def broken():
        yield from letters.pages(3, _io.make_rng(0))
        raise KeyboardInterrupt

    root = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        _io.write_pages(root, broken(), letters.CLASSES, "x")
    assert not (root / "images").exists() and not (root / "ground_truth").exists()
    assert not (root / _io.PARTIAL).exists()
    _io.write_pages(root, letters.pages(3, _io.make_rng(0)), letters.CLASSES, "x")
    assert _sources(root) == ["book1/page001.png"] * 3


def test_unknown_example(tmp_path):
    from pipeline.errors import SpritesError
    with pytest.raises(SpritesError, match="unknown example"):
        generate_example("nope", tmp_path)
