"""pipeline.ingest.cropping: binarisation, connected components (letters, dots merged), grid tiles,
reading order; and the `components` / `grid` crop methods through the ingest stage."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest

from pipeline.ingest.cropping import binarize, components, grid, reading_order
from pipeline.core.runner import run_stages
from pipeline.core.store import read_strings
import stages

# Known text: every letter is drawn on its own with a gap, so no two letters touch; i and j carry
# dots (13 of them), which must be merged into their letters.
GLYPH_LINES = ["minimum jiggle quiz", "fixing bijou pixies", "the quick brown fox", "jumps over lazy dogs"]


def glyph_count(lines=GLYPH_LINES) -> int:
    return sum(len(line.replace(" ", "")) for line in lines)


def glyph_page(lines=GLYPH_LINES, scale: float = 1.0, ink=(20, 20, 20), paper=(235, 235, 235)) -> np.ndarray:
    """An RGB page of text drawn letter by letter with OpenCV's Hershey font (no font files)."""
    thickness = max(1, round(2 * scale))
    gap, space, leading = round(8 * scale), round(25 * scale), round(60 * scale)
    height, width = leading * len(lines) + round(40 * scale), round(900 * scale)
    page = np.empty((height, width, 3), np.uint8)
    page[...] = paper
    y = round(50 * scale)
    for line in lines:
        x = round(20 * scale)
        for ch in line:
            if ch == " ":
                x += space
                continue
            (w, _), _ = cv2.getTextSize(ch, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
            cv2.putText(page, ch, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, thickness, cv2.LINE_AA)
            x += w + gap
        y += leading
    return page


class TestBinarize:
    def test_ink_is_the_minority(self):
        page = glyph_page()
        mask = binarize(cv2.cvtColor(page, cv2.COLOR_RGB2GRAY))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
        assert 0.02 < mask.mean() < 0.3
        assert mask[0, 0] == 0 and mask[page.shape[0] // 2, 0] == 0  # margins are paper

    def test_light_ink_on_dark_ground(self):
        page = glyph_page(ink=(230, 230, 230), paper=(30, 30, 30))
        grey = cv2.cvtColor(page, cv2.COLOR_RGB2GRAY)
        for method in ("otsu", "adaptive"):
            assert binarize(grey, method).mean() < 0.3

    def test_adaptive_copes_with_uneven_light(self):
        page = glyph_page().astype(np.float32)
        page *= np.linspace(0.45, 1.0, page.shape[1])[None, :, None]  # a shadow over the left half
        page = page.astype(np.uint8)
        assert len(components(page, binarization="adaptive")) == pytest.approx(glyph_count(), rel=0.02)

    def test_exception(self):
        with pytest.raises(ValueError, match="uint8"):
            binarize(np.zeros((4, 4), np.float32))
        with pytest.raises(ValueError, match="otsu or adaptive"):
            binarize(np.zeros((4, 4), np.uint8), "sauvola")


class TestComponents:
    def test_one_crop_per_letter(self):
        boxes = components(glyph_page())
        assert len(boxes) == pytest.approx(glyph_count(), rel=0.02)

    def test_dots_merged_into_i_and_j(self):
        page = glyph_page()
        merged = components(page, merge_distance=8)
        apart = components(page, merge_distance=0, min_size=2)
        dots = sum(line.count("i") + line.count("j") for line in GLYPH_LINES)
        assert len(apart) == len(merged) + dots

    def test_reading_order_follows_the_text(self):
        boxes = components(glyph_page())
        per_line = [len(line.replace(" ", "")) for line in GLYPH_LINES]
        tops = [b[1] + b[3] / 2 for b in boxes]
        start = 0
        for count in per_line:  # each line's letters come together, left to right
            line = boxes[start:start + count]
            assert [b[0] for b in line] == sorted(b[0] for b in line)
            assert max(tops[start:start + count]) - min(tops[start:start + count]) < 30
            start += count

    def test_filters_and_margin(self):
        page = np.full((200, 300), 255, np.uint8)
        page[20:60, 20:50] = 0        # a letter-like block 30 × 40
        page[100:102, 10:290] = 0     # a rule: aspect 140
        page[150:152, 150:152] = 0    # a speck
        page[120:190, 200:290] = 0    # a big block 90 × 70
        assert components(page, margin=0) == [(20, 20, 30, 40), (200, 120, 90, 70)]
        assert components(page, margin=0, max_size=60) == [(20, 20, 30, 40)]
        assert components(page, margin=0, max_aspect=200)[1] == (10, 100, 280, 2)
        assert components(page, margin=3, max_size=60) == [(17, 17, 36, 46)]
        assert components(page, margin=0, min_size=50) == [(200, 120, 90, 70)]

    def test_margin_clipped_to_the_page(self):
        page = np.full((50, 50), 255, np.uint8)
        page[0:20, 0:10] = 0
        assert components(page, margin=5) == [(0, 0, 15, 25)]

    def test_side_by_side_parts_stay_apart(self):
        page = np.full((60, 80), 255, np.uint8)
        page[10:40, 10:20] = 0
        page[10:40, 23:33] = 0   # 3 px to the right: another letter
        page[5:8, 50:53] = 0     # a dot 3 px above a stem
        page[11:40, 50:53] = 0
        assert components(page, margin=0, min_size=2, max_aspect=20) == [(10, 10, 10, 30), (23, 10, 10, 30), (50, 5, 3, 35)]

    def test_blank_page(self):
        assert components(np.full((30, 30, 3), 200, np.uint8)) == []


class TestGrid:
    def test_exact_tiling(self):
        assert grid(200, 100, 100) == [(0, 0, 100, 100), (100, 0, 100, 100)]

    def test_last_tile_aligned_to_the_edge(self):
        tiles = grid(250, 100, 100, overlap=20)
        assert [t[0] for t in tiles] == [0, 80, 150]
        assert all(t[2] == 100 for t in tiles)

    def test_small_page_is_one_tile(self):
        assert grid(50, 30, 100) == [(0, 0, 50, 30)]

    def test_covers_every_pixel(self):
        cover = np.zeros((333, 517), int)
        for x, y, w, h in grid(517, 333, 64, overlap=16):
            cover[y:y + h, x:x + w] += 1
        assert cover.min() >= 1

    def test_exception(self):
        with pytest.raises(ValueError, match="overlap < tile"):
            grid(100, 100, 10, overlap=10)


def test_reading_order_lines_then_left_to_right():
    boxes = [(50, 100, 10, 10), (10, 5, 10, 12), (30, 0, 10, 20), (5, 98, 10, 14)]
    assert reading_order(boxes) == [(10, 5, 10, 12), (30, 0, 10, 20), (5, 98, 10, 14), (50, 100, 10, 10)]


class TestThroughStage:
    @pytest.fixture
    def pages(self, tmp_path):
        root = tmp_path / "pages"
        root.mkdir()
        cv2.imwrite(str(root / "p1.png"), glyph_page()[..., ::-1])
        cv2.imwrite(str(root / "p2.png"), glyph_page(GLYPH_LINES[:2])[..., ::-1])
        return root

    def test_components(self, make_project, pages, quiet):
        project = make_project(pages, "ingest.size=32", "ingest.crop=components")
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        with h5py.File(project.stage_path("ingest"), "r") as f:
            sources, box, size = read_strings(f["source"]), f["box"][()], f["size"][()]
            assert f["crops"].shape[1:] == (3, 32, 32)
            assert f["page"][()].tolist() == [0] * len(sources)
            assert set(read_strings(f["kind"])) == {"image"}
        expected = glyph_count() + glyph_count(GLYPH_LINES[:2])
        assert len(sources) == pytest.approx(expected, rel=0.02)
        first = [i for i, s in enumerate(sources) if s == "p1.png"]
        assert len(first) == pytest.approx(glyph_count(), rel=0.02)
        h, w = glyph_page().shape[:2]
        assert (size[first] == [w, h]).all()
        assert box[first, :2].min() >= 0 and (box[first, 0] + box[first, 2]).max() <= w
        # the boxes are the library's, margin included, in the page's pixels
        assert [tuple(b) for b in box[first]] == components(glyph_page())

    def test_grid(self, make_project, pages, quiet):
        project = make_project(pages, "ingest.size=16", "ingest.crop=grid", "ingest.tile=128", "ingest.overlap=28")
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        with h5py.File(project.stage_path("ingest"), "r") as f:
            sources, box = read_strings(f["source"]), f["box"][()]
        h, w = glyph_page().shape[:2]
        assert [tuple(b) for b, s in zip(box, sources) if s == "p1.png"] == grid(w, h, 128, 28)

    def test_bad_settings_are_named(self, make_project, pages, quiet):
        from pipeline.errors import SpritesError
        project = make_project(pages, "ingest.crop=grid", "ingest.tile=64", "ingest.overlap=64")
        with pytest.raises(SpritesError, match="ingest.overlap"):
            run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        project = make_project(pages, "ingest.crop=boxes", name="p2")
        with pytest.raises(SpritesError, match="ingest.boxes"):
            run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
