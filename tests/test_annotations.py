"""exports/annotations: IIIF Presentation 3 / W3C Web Annotation pages that validate offline
(iiif-prezi3's models), targets inside their canvases, boxes that round-trip to assignments.csv,
and a manifest of local images for a IIIF viewer."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from iiif_prezi3 import AnnotationCollection, AnnotationPage, Manifest

from pipeline.catalogue.annotations import served_root, write_annotations
from pipeline.catalogue.catalogue import build_catalogue
from pipeline.catalogue.curation import parse_curation
from pipeline.core.store import string_dataset
from report_fixtures import glyphs_project

_XYWH = re.compile(r"^(?P<canvas>.+?)[#&]xywh=(\d+),(\d+),(\d+),(\d+)$")


def _validate(doc: dict, model) -> None:
    assert doc["@context"] == "http://iiif.io/api/presentation/3/context.json"
    model.model_validate({k: v for k, v in doc.items() if k != "@context"})


def _pages(folder: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("page_*.json"))]


@pytest.fixture
def mixed_ingest(tmp_path):
    """An ingest.h5 with crops from two IIIF canvases, a local image and a PDF page."""
    images = tmp_path / "scans"
    path = tmp_path / "ingest.h5"
    canvas = ["https://iiif.example.org/m/canvas/1"] * 2 + ["https://iiif.example.org/m/canvas/2", "", "", ""]
    rows = [  # source, kind, file, page, box, size
        (canvas[0], "iiif", "", 1, (10, 20, 30, 40), (2000, 3000)),
        (canvas[1], "iiif", "", 1, (1900, 2900, 100, 100), (2000, 3000)),
        (canvas[2], "iiif", "", 2, (0, 0, 5, 5), (1000, 1000)),
        ("book/p1.png", "image", "book/p1.png", 0, (3, 4, 10, 12), (64, 48)),
        ("old book.pdf#page=3", "pdf", "old book.pdf", 3, (100, 200, 50, 60), (1654, 2339)),
        ("book/p1.png", "image", "book/p1.png", 0, (50, 30, 14, 18), (64, 48)),
    ]
    with h5py.File(path, "w") as f:
        f.create_dataset("crops", data=np.zeros((len(rows), 1, 8, 8), np.uint8))
        string_dataset(f, "source", [r[0] for r in rows])
        string_dataset(f, "kind", [r[1] for r in rows])
        string_dataset(f, "file", [r[2] for r in rows])
        string_dataset(f, "canvas", canvas)
        string_dataset(f, "canvas_label", ["f. 1r", "f. 1r", "f. 1v", "", "", ""])
        f.create_dataset("page", data=np.array([r[3] for r in rows], np.int32))
        f.create_dataset("box", data=np.array([r[4] for r in rows], np.int32))
        f.create_dataset("size", data=np.array([r[5] for r in rows], np.int32))
        f.attrs["images_root"] = str(images)
    return path


def test_pages_validate_and_target_their_canvases(mixed_ingest, tmp_path):
    project = tmp_path / "project"
    folder = project / "exports" / "annotations"
    catalogue = build_catalogue(parse_curation('[sprite.1]\nname = "long s"\n'), 3, "m")
    front = np.array([0, 1, 2, 1, 0, -1])                       # the last crop: no sprite, no annotation
    with h5py.File(mixed_ingest, "r") as ing:
        written = write_annotations(folder, ing, front, catalogue, base="https://example.org/pub/",
                                    project_root=project, title="t")
    assert "annotations/collection.json" in written and "annotations/manifest.json" in written
    assert served_root(project, tmp_path / "scans") == tmp_path
    pages = _pages(folder)
    assert len(pages) == 4                                       # 2 canvases, 1 image, 1 PDF page
    boxes = {}
    for page in pages:
        _validate(page, AnnotationPage)
        assert page["partOf"][0]["id"] == "https://example.org/pub/project/exports/annotations/collection.json"
        for a in page["items"]:
            assert a["motivation"] == ["classifying", "tagging"]
            m = _XYWH.match(a["target"])
            boxes[a["id"].rsplit("-", 1)[1]] = (m.group("canvas"), *map(int, m.groups()[1:]))
            assert any(b["purpose"] == "classifying" and b["value"].startswith("sprite ") for b in a["body"])
    assert boxes == {"0": ("https://iiif.example.org/m/canvas/1", 10, 20, 30, 40),
                     "1": ("https://iiif.example.org/m/canvas/1", 1900, 2900, 100, 100),
                     "2": ("https://iiif.example.org/m/canvas/2", 0, 0, 5, 5),
                     "3": ("https://example.org/pub/scans/book/p1.png", 3, 4, 10, 12),
                     "4": ("https://example.org/pub/scans/old%20book.pdf#page=3", 100, 200, 50, 60)}
    named = [a for p in pages for a in p["items"] if a["id"].endswith("crop-1")][0]
    assert named["body"][0] == {"type": "TextualBody", "value": "long s", "purpose": "tagging", "format": "text/plain"}
    collection = json.loads((folder / "collection.json").read_text())
    _validate(collection, AnnotationCollection)
    assert collection["total"] == 5
    manifest = json.loads((folder / "manifest.json").read_text())
    _validate(manifest, Manifest)
    assert [c["id"] for c in manifest["items"]] == ["https://example.org/pub/scans/book/p1.png"]   # local images only
    canvas = manifest["items"][0]
    assert (canvas["width"], canvas["height"]) == (64, 48)
    assert canvas["items"][0]["items"][0]["body"]["id"] == "https://example.org/pub/scans/book/p1.png"
    page_of_image = canvas["annotations"][0]["id"]
    assert any(p["id"] == page_of_image for p in pages)


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory):
    return glyphs_project(tmp_path_factory)


def test_report_writes_annotations_that_round_trip_to_assignments(glyphs):
    folder = glyphs.exports_dir / "annotations"
    with open(glyphs.exports_dir / "assignments.csv", newline="", encoding="utf-8") as f:
        rows = {r["crop_id"]: r for r in csv.DictReader(f)}
    with h5py.File(glyphs.stage_path("ingest"), "r") as ing:
        size = ing["size"][()]
    manifest = json.loads((folder / "manifest.json").read_text())
    _validate(manifest, Manifest)
    canvases = {c["id"]: (c["width"], c["height"]) for c in manifest["items"]}
    seen = set()
    for page in _pages(folder):
        _validate(page, AnnotationPage)
        for a in page["items"]:
            crop = a["id"].rsplit("-", 1)[1]
            row = rows[crop]
            canvas, x, y, w, h = (lambda m: (m.group("canvas"), *map(int, m.groups()[1:])))(_XYWH.match(a["target"]))
            assert (x, y, w, h) == (int(row["box_x"]), int(row["box_y"]), int(row["box_w"]), int(row["box_h"]))
            assert canvas.endswith("/" + "/".join(row["source"].split("/")))
            W, H = canvases[canvas]
            assert (W, H) == tuple(size[int(crop)])
            assert 0 <= x and 0 <= y and x + w <= W and y + h <= H          # inside its canvas
            assert f"sprite {row['sprite']}" in [b["value"] for b in a["body"]]
            seen.add(crop)
    assert seen == {c for c, r in rows.items() if int(r["sprite"]) >= 0}


def test_a_base_that_is_no_web_address_is_a_clear_error(mixed_ingest, tmp_path):
    from pipeline.errors import SpritesError
    catalogue = build_catalogue(None, 3, "m")
    with h5py.File(mixed_ingest, "r") as ing, pytest.raises(SpritesError, match="check report.iiif_base"):
        write_annotations(tmp_path / "a", ing, np.array([0, 1, 2, 1, 0, -1]), catalogue, base="not a url",
                          project_root=tmp_path / "project", title="t")
    assert not (tmp_path / "a").exists()                      # nothing half-written
