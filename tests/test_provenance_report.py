"""Provenance in the report and the exports: each crop outlined on a thumbnail of its page, links
to the IIIF region / PDF page / image, metadata columns in the cards, page views and CSV."""

from __future__ import annotations

import csv
import io
import re
from html import unescape
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from browser import load, open_browser, unavailable
from pipeline.report.provenance import Provenance, read_provenance
from pipeline.ingest.sources.pages import PAGE_THUMB
from report_fixtures import quiet_run
from test_cropping import GLYPH_LINES, glyph_count, glyph_page
from test_iiif import FAST, FakeIIIF, manifest_v2, manifest_v3
from test_pdf import write_pdf
import stages

TINY = ["ingest.size=16", "model.sprites=2", "train.epochs=1", "report.reconstructions=4"]


def _csv(project) -> list[dict]:
    with open(project.exports_dir / "assignments.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _cards(html: str) -> dict[int, str]:
    """crop id → the HTML of its card in a gallery page."""
    parts = re.split(r'(?=<article class="crop-card" id="c\d+">)', html)
    return {int(re.match(r'<article class="crop-card" id="c(\d+)">', p).group(1)): p
            for p in parts if p.startswith("<article")}


def _gallery_cards(project) -> dict[int, str]:
    cards = {}
    for page in sorted((project.report_dir / "sprites").glob("*.html")):
        cards.update(_cards(page.read_text(encoding="utf-8")))
    return cards


def _style_box(style: str) -> tuple[float, ...]:
    return tuple(float(re.search(rf"{k}: ([-\d.]+)%", style).group(1)) for k in ("left", "top", "width", "height"))


# ---------------------------------------------------------------------------------------- unit

def _provenance(**kw) -> Provenance:
    base = dict(images_root=Path("/scans"), source=["a/p.png"], kind=["image"], file=["a/p.png"], page=np.array([0]),
                canvas_label=[""], manifest_label=[""], iiif_region=[""], label=[""], box=np.array([[200, 300, 100, 150]]),
                page_row=np.array([-1]), pages=[], metadata={})
    base.update(kw)
    return Provenance(**base)


def test_targets_and_places():
    img = _provenance()
    assert img.target(0) == (Path("/scans/a/p.png"), "") and img.place(0) == "a/p.png"
    pdf = _provenance(source=["book.pdf#page=3"], kind=["pdf"], file=["book.pdf"], page=np.array([3]))
    assert pdf.target(0) == (Path("/scans/book.pdf"), "#page=3") and pdf.place(0) == "book.pdf, page 3"
    region = "https://iiif.example.org/iiif/x/200,300,100,150/full/0/default.jpg"
    iiif = _provenance(source=["https://e.org/canvas/1"], kind=["iiif"], file=[""], page=np.array([1]),
                       manifest_label=["Hours"], canvas_label=["f. 1r"], iiif_region=[region])
    assert iiif.target(0) == (None, region) and iiif.place(0) == "Hours, f. 1r"


def test_outline_is_the_box_in_percent_of_the_page_extent():
    from pipeline.report.provenance import PageThumb
    p = _provenance(page_row=np.array([0]), pages=[PageThumb(0, "a/p.png", (0.0, 0.0, 2000.0, 3000.0), 400, 600)])
    assert p.outline(0) == {"left": 10.0, "top": 10.0, "width": 5.0, "height": 5.0}
    assert _provenance().outline(0) is None             # no page thumbnail: no outline


def test_metadata_of_skips_empty_values():
    p = _provenance(metadata={"title": ["Missale"], "year": [""]})
    assert p.metadata_of(0) == [("title", "Missale")]


# ----------------------------------------------------------------------------- PDF + metadata

@pytest.fixture(scope="module")
def pdf_project(tmp_path_factory):
    from pipeline.core.project import init_project
    root = tmp_path_factory.mktemp("pdfprov")
    scans = root / "scans"
    scans.mkdir()
    write_pdf(scans / "book.pdf", [glyph_page(GLYPH_LINES[:1]), glyph_page(GLYPH_LINES[1:2])])
    meta = root / "meta.csv"
    meta.write_text("source,shelfmark,printer\nbook.pdf,Inc. 42,Vérard\nbook.pdf#page=2,Inc. 42 bis,<b>Pigouchet</b>\n",
                    encoding="utf-8")
    project = init_project(root / "proj", images=str(scans), preset="clustering",
                           sets=TINY + ["ingest.crop=components", f'ingest.metadata="{meta}"', "ingest.pdf_dpi=72"])
    quiet_run(project)
    return project


def test_pdf_pages_have_thumbnails_and_views(pdf_project):
    with h5py.File(pdf_project.stage_path("ingest"), "r") as f:
        prov = read_provenance(f)
        thumbs = [Image.open(io.BytesIO(f["pages/thumb"][r].tobytes())) for r in range(len(prov.pages))]
        size = f["size"][()]
    assert [p.source for p in prov.pages] == ["book.pdf#page=1", "book.pdf#page=2"]
    assert all(max(t.size) <= PAGE_THUMB for t in thumbs)
    # the thumbnail shows the whole page: its extent is the page in source (PDF px) coordinates
    first = int(np.flatnonzero(prov.page_row == 0)[0])
    assert prov.pages[0].extent == (0.0, 0.0, float(size[first][0]), float(size[first][1]))
    assert len(prov.source) == pytest.approx(glyph_count(GLYPH_LINES[:2]), rel=0.1)
    report = pdf_project.report_dir
    assert (report / "pages.html").exists()
    views = sorted((report / "pages").glob("page_*.html"))
    assert [v.name for v in views] == ["page_000000.html", "page_000001.html"]
    html = views[1].read_text(encoding="utf-8")
    ids = [int(i) for i in re.findall(r'<a class="box" id="c(\d+)"', html)]
    assert sorted(ids) == np.flatnonzero(prov.page_row == 1).tolist()
    assert "Inc. 42 bis" in html and "&lt;b&gt;Pigouchet&lt;/b&gt;" in html       # metadata, as text


def test_pdf_cards_link_to_the_page_and_show_metadata(pdf_project):
    rows = {int(r["crop_id"]): r for r in _csv(pdf_project)}
    cards = _gallery_cards(pdf_project)
    assert set(cards) == set(rows)
    for i, card in cards.items():
        page = int(rows[i]["page"])
        href = unescape(re.search(r'<div class="source"><a href="([^"]+)"', card).group(1))
        assert href == f"../../../scans/book.pdf#page={page}"   # report/sprites/ → proj → scans
        assert f">book.pdf, page {page}<" in card
        assert ("Inc. 42 bis" if page == 2 else "Inc. 42<") in card
        # the page thumbnail, the crop outlined, linking to the page view at this crop
        assert f'href="../pages/page_{page - 1:06d}.html#c{i}"' in card
        assert f'src="../img/pages/page_{page - 1:06d}.jpg"' in card


def test_exports_carry_provenance_and_metadata(pdf_project):
    rows = _csv(pdf_project)
    header = list(rows[0])
    for col in ("crop_id", "source", "box_x", "page", "file", "manifest", "canvas", "iiif_region", "rotation",
                "checksum", "meta_shelfmark", "meta_printer"):
        assert col in header
    by_page = {r["page"]: r for r in rows}
    assert by_page["1"]["meta_shelfmark"] == "Inc. 42" and by_page["2"]["meta_printer"] == "<b>Pigouchet</b>"
    assert all(r["file"] == "book.pdf" and r["source"] == f"book.pdf#page={r['page']}" for r in rows)
    assert len({r["checksum"] for r in rows}) == 1 and len(rows[0]["checksum"]) == 40
    import json
    crops = json.loads((pdf_project.exports_dir / "assignments.json").read_text(encoding="utf-8"))["crops"]
    assert crops[0]["meta_shelfmark"] == rows[0]["meta_shelfmark"] and crops[0]["page"] == int(rows[0]["page"])


def test_index_names_pages_and_metadata(pdf_project):
    html = (pdf_project.report_dir / "index.html").read_text(encoding="utf-8")
    assert 'href="pages.html"' in html
    assert "2 columns (shelfmark, printer)" in html


@pytest.mark.browser
@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_page_views_render_in_a_browser(pdf_project):
    report = pdf_project.report_dir
    with open_browser() as browser:
        for page in [report / "pages.html", *sorted((report / "pages").glob("*.html")), report / "sprites" / "sprite_000.html"]:
            check = load(browser, page)
            assert check.errors == [] and check.broken_images == [] and check.dialogs == [], (page, check)
        # the outline drawn over the page thumbnail sits where the crop's box is
        view = browser.new_page()
        view.goto((report / "pages" / "page_000000.html").as_uri())
        img = view.locator(".pageview img").bounding_box()
        first = view.locator(".pageview a.box").first
        box = first.bounding_box()
        style = first.get_attribute("style")
        left, top, width, _ = _style_box(style)
        assert box["x"] == pytest.approx(img["x"] + img["width"] * left / 100, abs=1.5)
        assert box["y"] == pytest.approx(img["y"] + img["height"] * top / 100, abs=1.5)
        assert box["width"] == pytest.approx(img["width"] * width / 100, abs=1.5)
        view.close()


# ------------------------------------------------------------------------------------ IIIF

@pytest.fixture
def server():
    s = FakeIIIF()
    yield s
    s.close()


def test_iiif_cards_link_to_regions_and_outline_on_the_canvas(server, make_project):
    server.add_image("a", GLYPH_LINES[:1])
    server.add_image("b", GLYPH_LINES[1:2], version=3)
    m2 = server.add_manifest("hours", manifest_v2(server, "hours", ["a"]))
    # a canvas twice the image's size: boxes are in canvas coordinates, the outline must be too
    m3 = server.add_manifest("psalter", manifest_v3(server, "psalter", ["b"], canvas_scale=2.0))
    project = make_project(".", *TINY, *FAST, "ingest.crop=components", "ingest.iiif_size=700",
                           f'ingest.images="{m2}"', f'ingest.sources=["{m3}"]', preset="clustering")
    quiet_run(project)
    rows = {int(r["crop_id"]): r for r in _csv(project)}
    assert all(r["iiif_region"].startswith(server.base + "/iiif/") for r in rows.values())
    assert {r["meta_Date"] for r in rows.values()} == {"1480", ""}          # manifest metadata (v2 only)
    cards = _gallery_cards(project)
    with h5py.File(project.stage_path("ingest"), "r") as f:
        prov = read_provenance(f)
    for i, card in cards.items():
        href = unescape(re.search(r'<div class="source"><a href="([^"]+)"', card).group(1))
        assert href == rows[i]["iiif_region"]
        assert ">Psalter, page 1<" in card or ">Book of hours, f. 1r<" in card
        page = prov.page_of(i)
        x, y, w, h = (int(rows[i][k]) for k in ("box_x", "box_y", "box_w", "box_h"))
        cw, ch = page.extent[2], page.extent[3]
        style = re.search(r'<span class="outline" style="([^"]+)"', card).group(1)
        assert _style_box(style) == pytest.approx((100 * x / cw, 100 * y / ch, 100 * w / cw, 100 * h / ch), abs=0.01)
    canvas_w = server.full("b").shape[1] * 2
    assert max(p.extent[2] for p in prov.pages) == pytest.approx(canvas_w, abs=1)


# ------------------------------------------------------------------ whole images, own files

def test_whole_images_make_no_page_views(tmp_path, make_project, tiny_collection):
    project = make_project(tiny_collection, *TINY, preset="clustering")
    quiet_run(project)
    assert not (project.report_dir / "pages.html").exists()
    html = (project.report_dir / "index.html").read_text(encoding="utf-8")
    assert 'href="pages.html"' not in html and 'class="page-mini"' not in html
    with h5py.File(project.stage_path("ingest"), "r") as f:
        assert f["pages/thumb"].shape == (0,) and (f["page_row"][()] == -1).all()


def test_a_project_inside_its_images_folder_ignores_its_own_files(tmp_path, tiny_collection):
    from pipeline.core.project import init_project
    from pipeline.core.runner import stage_status
    project = init_project(tiny_collection / "proj", images=str(tiny_collection), preset="clustering", sets=TINY)
    quiet_run(project)
    with h5py.File(project.stage_path("ingest"), "r") as f:
        sources = [s.decode() if isinstance(s, bytes) else s for s in f["source"][()]]
    assert not any(s.startswith("proj/") for s in sources)
    cfg = project.config()
    assert [stage_status(project, cfg, name, stages.STAGES).state for name in ("ingest", "train", "decompose", "report")] == ["fresh"] * 4
