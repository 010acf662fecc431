"""The `ornaments` example and its held-out `ornaments-variant`: ground truth, determinism, and
that the two sets differ."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pipeline.examples import EXAMPLES, generate_example, ornaments
from pipeline.examples._io import class_labels

COUNT = 60
NAMES = ("ornaments", "ornaments-variant")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    roots = {}
    for name in NAMES:
        root = tmp_path_factory.mktemp(name.replace("-", "_"))
        generate_example(name, root, count=COUNT, seed=0)
        roots[name] = root
    return roots


def _rows(root: Path) -> list[tuple[str, int]]:
    with open(root / "ground_truth" / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["source", "label"]
    return [(s, int(l)) for s, l in rows[1:]]


def _masks(root: Path):
    with h5py.File(root / "ground_truth" / "masks.h5", "r") as f:
        sources = [s.decode() if isinstance(s, bytes) else s for s in f["source"][()]]
        return sources, f["semantic"][()], f["instance"][()], [str(c) for c in f.attrs["classes"]]


def _images(root: Path, rows) -> np.ndarray:
    out = []
    for source, _ in rows:
        with Image.open(root / "images" / source) as im:
            assert im.mode == "RGB" and im.size == (64, 64)
            out.append(np.asarray(im))
    return np.stack(out)


def test_registry_entries():
    for name, style in zip(NAMES, (ornaments.MAIN, ornaments.VARIANT)):
        ex = EXAMPLES[name]
        assert ex.preset == "objects" and ex.size == 64 and ex.channels == 3 and ex.default_count == 2000
        assert ex.classes == style.classes and len(ex.classes) >= 8 and len(set(ex.classes)) == len(ex.classes)
        assert ex.config == {"model": {"sprites": len(ex.classes)}}
    assert not set(ornaments.MAIN.classes) & set(ornaments.VARIANT.classes)
    assert ornaments.MAIN.seed_offset != ornaments.VARIANT.seed_offset


@pytest.mark.parametrize("name", NAMES)
def test_collection(made, name):
    root, ex = made[name], EXAMPLES[name]
    rows = _rows(root)
    assert len(rows) == COUNT and len({s for s, _ in rows}) == COUNT
    assert (root / "ground_truth" / "classes.txt").read_text(encoding="utf-8").splitlines() == list(ex.classes)
    assert (root / "ground_truth" / "README.md").read_text(encoding="utf-8").strip()
    k = len(ex.classes)
    labels = np.array([l for _, l in rows])
    assert set(labels.tolist()) == set(range(k))                       # every class present
    assert all(s.startswith("book") and s.count("/") == 2 for s, _ in rows)
    assert len({s.split("/")[0] for s, _ in rows}) == min(ornaments.BOOKS, -(-COUNT // ornaments.PER_PAGE))
    pngs = sorted(p.relative_to(root / "images").as_posix() for p in (root / "images").rglob("*.png"))
    assert pngs == sorted(s for s, _ in rows)

    sources, semantic, instance, names = _masks(root)
    assert sources == [s for s, _ in rows] and names == list(ex.classes)
    assert semantic.shape == instance.shape == (COUNT, 64, 64) and semantic.dtype == instance.dtype == np.uint8
    images = _images(root, rows).astype(float)
    grey = images.mean(axis=3)
    for i, label in enumerate(labels):
        fg = instance[i] == 1
        assert set(np.unique(instance[i])) == {0, 1}
        assert (semantic[i][fg] == label + 1).all() and (semantic[i][~fg] == 0).all()
        assert 0.04 < fg.mean() < 0.6                                   # the ornament, not the crop
        rows_, cols_ = np.nonzero(fg)
        extent = max(np.ptp(rows_), np.ptp(cols_)) + 1
        assert 30 <= extent <= 50                                        # ≈ 56–68% of the crop
        assert rows_.min() > 0 and cols_.min() > 0 and rows_.max() < 63 and cols_.max() < 63
        assert np.median(grey[i][fg]) < np.median(grey[i][~fg]) - 60     # dark ink on light paper
    # paper (outside the masks) varies between images and within them: stains, show-through, tone
    paper = np.array([np.median(images[i][instance[i] == 0], axis=0) for i in range(COUNT)])
    assert paper.std(axis=0).mean() > 2
    assert np.mean([grey[i][instance[i] == 0].std() for i in range(COUNT)]) > 3


def test_unequal_frequencies():
    for style in (ornaments.MAIN, ornaments.VARIANT):
        counts = np.bincount(class_labels(np.array(style.frequency, float), 2000, np.random.default_rng(0)))
        assert counts.max() >= 3 * counts.min() and counts.min() > 0


def test_variant_differs(made):
    """Other motifs (mean foreground mask per class), other paper, and seed 0 gives other images."""
    means = {}
    for name in NAMES:
        rows = _rows(made[name])
        _, _, instance, _ = _masks(made[name])
        labels = np.array([l for _, l in rows])
        means[name] = [instance[labels == k].mean(axis=0) for k in range(len(EXAMPLES[name].classes))]
    for a in means["ornaments"]:
        for b in means["ornaments-variant"]:
            inter, union = np.minimum(a, b).sum(), np.maximum(a, b).sum()
            assert inter / union < 0.9
    papers = {}
    for name in NAMES:
        rows = _rows(made[name])
        _, _, instance, _ = _masks(made[name])
        images = _images(made[name], rows).astype(float)
        papers[name] = np.mean([np.median(images[i][instance[i] == 0], axis=0) for i in range(COUNT)], axis=0)
    warm = lambda rgb: rgb[0] - rgb[2]
    assert warm(papers["ornaments"]) > warm(papers["ornaments-variant"]) + 15   # cooler, greyer paper
    first = _rows(made["ornaments"])[0][0]
    assert (made["ornaments"] / "images" / first).read_bytes() != \
        (made["ornaments-variant"] / "images" / _rows(made["ornaments-variant"])[0][0]).read_bytes()


def test_look_alikes_share_the_silhouette():
    """Look-alike motifs differ by their inner detail (cuts), not by their silhouette."""
    centre, scale = np.array([200.0, 200.0]), 80.0
    for a, b in (("hedera", "hedera_veined"), ("oak_leaf", "oak_leaf_veined"),
                 ("cross_pattee", "cross_pattee_pierced")):
        (ops_a, origin_a, _), (ops_b, origin_b, _) = ornaments._motif(a), ornaments._motif(b)
        sil_a, ink_a = ornaments._draw(ops_a, centre, scale, 0.0, 400, origin_a)
        sil_b, ink_b = ornaments._draw(ops_b, centre, scale, 0.0, 400, origin_b)
        assert (sil_a != sil_b).mean() < 0.002
        assert (ink_a != ink_b).sum() > 0.05 * ink_a.sum()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_bytes(tmp_path, name):
    roots = [tmp_path / f"r{k}" for k in range(3)]
    for root, seed in zip(roots, (4, 4, 5)):
        generate_example(name, root, count=6, seed=seed)
    for rel in ("ground_truth/labels.csv", "ground_truth/masks.h5", "ground_truth/README.md"):
        assert (roots[0] / rel).read_bytes() == (roots[1] / rel).read_bytes()
    files = sorted((roots[0] / "images").rglob("*.png"))
    assert len(files) == 6
    for f in files:
        assert f.read_bytes() == (roots[1] / f.relative_to(roots[0])).read_bytes()
    other = sorted((roots[2] / "images").rglob("*.png"))
    assert files[0].read_bytes() != other[0].read_bytes()
