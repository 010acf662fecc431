"""The `letters` example through the real cropper: `sprites init --example letters`, then the ingest
stage with the example's own settings (`ingest.crop = "components"`, the cropper's defaults) must
cut one crop per letter of the ground truth."""

from __future__ import annotations

import csv
import math

import h5py
import numpy as np
import pytest

from pipeline.core.project import init_project
from pipeline.core.runner import run_stages
from pipeline.core.store import read_strings
from pipeline.examples import EXAMPLES, letters
import stages

COUNT = 300  # two pages (250 + 50 letters) in two books


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boxes x, y, w, h: a (4,), b (R, 4) → (R,) intersection over union."""
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[0] + a[2], b[:, 0] + b[:, 2]), np.minimum(a[1] + a[3], b[:, 1] + b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / (a[2] * a[3] + b[:, 2] * b[:, 3] - inter)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    root = tmp_path_factory.mktemp("letters")
    project = init_project(root / "proj", example="letters", count=COUNT, seed=11)
    cfg = project.config()
    run_stages(project, cfg, ["ingest"], stages=stages.STAGES, log=lambda m: None, progress=False)
    with open(project.root / "ground_truth" / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    with h5py.File(project.stage_path("ingest"), "r") as f:
        crops = read_strings(f["source"]), f["box"][()]
    return project, cfg, rows, crops


def test_the_example_settings(ingested):
    _, cfg, rows, _ = ingested
    assert cfg.ingest.crop == "components" and cfg.ingest.size == 32 and cfg.ingest.channels == 1
    assert cfg.model.sprites == len(letters.CLASSES) == 18
    assert rows[0] == ["source", "x", "y", "w", "h", "label"]
    assert len(rows) - 1 == COUNT
    assert sorted({r[0] for r in rows[1:]}) == ["book1/page001.png", "book2/page001.png"]
    assert {int(r[5]) for r in rows[1:]} == set(range(18))  # every letter present


def test_one_crop_per_letter(ingested):
    """≥ 98 % of the letters are matched by exactly one crop (IoU ≥ 0.5 once the cropper's margin
    is taken off), ≤ 2 % of the crops match no letter, none matches two."""
    _, cfg, rows, (sources, boxes) = ingested
    margin = cfg.ingest.margin
    truth: dict[str, np.ndarray] = {}
    for r in rows[1:]:
        truth.setdefault(r[0], []).append([int(v) for v in r[1:5]])
    truth = {s: np.array(b, float) for s, b in truth.items()}
    hits = {s: np.zeros(len(b), int) for s, b in truth.items()}
    no_letter = two_letters = 0
    eval_style = 0   # as `sprites eval` joins them: the crop box itself, margin included
    for source, box in zip(sources, boxes.astype(float)):
        inner = box + (margin, margin, -2 * margin, -2 * margin)
        iou = _iou(inner, truth[source])
        n = int((iou >= 0.5).sum())
        no_letter += n == 0
        two_letters += n >= 2
        hits[source] += iou >= 0.5
        eval_style += _iou(box, truth[source]).max() >= 0.5
    matched = sum(int((h == 1).sum()) for h in hits.values())
    assert matched >= 0.98 * COUNT
    assert no_letter <= 0.02 * len(sources)
    assert two_letters == 0
    assert eval_style >= 0.98 * COUNT


def test_pages_and_boxes(ingested):
    project, _, rows, _ = ingested
    from PIL import Image
    sizes = {}
    for source in {r[0] for r in rows[1:]}:
        with Image.open(project.root / "images" / source) as im:
            assert im.mode == "L" and 600 <= im.size[0] <= 900
            sizes[source] = im.size
    by_page: dict[str, list] = {}
    for r in rows[1:]:
        x, y, w, h = (int(v) for v in r[1:5])
        W, H = sizes[r[0]]
        assert 0 <= x and x + w <= W and 0 <= y and y + h <= H
        assert 15 <= h <= 42 and w >= 5
        by_page.setdefault(r[0], []).append((x, y, w, h))
    for boxes in by_page.values():
        b = np.array(boxes)
        for i in range(len(b)):  # no two letters close: 3 px of paper beside, more than 8 px above or below
            gap_x = np.maximum(b[:, 0] - (b[i, 0] + b[i, 2]), b[i, 0] - (b[:, 0] + b[:, 2]))
            gap_y = np.maximum(b[:, 1] - (b[i, 1] + b[i, 3]), b[i, 1] - (b[:, 1] + b[:, 3]))
            far = (gap_x >= 3) | (gap_y > 8)
            far[i] = True
            assert far.all()
    assert len(by_page["book1/page001.png"]) == letters.PER_PAGE and len(by_page["book2/page001.png"]) == 50
    assert math.ceil(COUNT / letters.PER_PAGE) == len(by_page)


def test_letter_frequencies_are_uneven():
    labels = letters.class_labels(letters.FREQUENCY, 3000, np.random.default_rng(0))
    counts = np.bincount(labels, minlength=18)
    assert counts.sum() == 3000 and counts.min() >= 1
    assert letters.CLASSES[int(np.argmax(counts))] == "e" and letters.CLASSES[int(np.argmin(counts))] == "q"
    assert counts.max() > 10 * counts.min()
    assert len(letters.class_labels(letters.FREQUENCY, 7, np.random.default_rng(0))) == 7
    assert EXAMPLES["letters"].classes == tuple(letters.CLASSES)
