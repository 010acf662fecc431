"""PDF sources: every page rendered at ingest.pdf_dpi, page numbers in the provenance, bad PDFs
reported (no pages, corrupt) while the rest of the collection goes through."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_image
from pipeline.core.runner import run_stages, stage_status
from pipeline.ingest.sources.pdf import PdfError, page_count, render_page
from pipeline.core.store import read_strings
from test_cropping import GLYPH_LINES, glyph_count, glyph_page
import stages


def empty_pdf() -> bytes:
    """A well-formed PDF whose page tree is empty."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objects):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % (i + 1) + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def write_pdf(path, pages: list[np.ndarray], dpi: int = 100) -> None:
    images = [Image.fromarray(p) for p in pages]
    images[0].save(path, save_all=True, append_images=images[1:], resolution=dpi)


@pytest.fixture
def book(tmp_path):
    """folder: book.pdf (3 pages of text: 4, 2 and 1 lines), a loose image, and two bad PDFs."""
    root = tmp_path / "scans"
    root.mkdir()
    write_pdf(root / "book.pdf", [glyph_page(), glyph_page(GLYPH_LINES[:2]), glyph_page(GLYPH_LINES[2:3])])
    synthetic_image(30, 20, 3).save(root / "loose.png")
    (root / "empty.pdf").write_bytes(empty_pdf())
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\n this is not really a PDF")
    return root


def _read(project):
    with h5py.File(project.stage_path("ingest"), "r") as f:
        out = {k: read_strings(f[k]) for k in ("source", "file", "kind", "skipped/source", "skipped/reason",
                                               "checksum", "files/source")}
        out.update({k: f[k][()] for k in ("page", "box", "size", "crops")})
    return out


class TestRender:
    def test_pages_and_pixels(self, tmp_path):
        write_pdf(tmp_path / "b.pdf", [glyph_page(), glyph_page(GLYPH_LINES[:1])], dpi=100)
        assert page_count(str(tmp_path / "b.pdf")) == 2
        page = render_page(str(tmp_path / "b.pdf"), 0, 100, 3, 10**9)
        assert page.shape == glyph_page().shape and page.dtype == np.uint8
        assert render_page(str(tmp_path / "b.pdf"), 0, 200, 1, 10**9).shape == (2 * page.shape[0], 2 * page.shape[1], 1)
        # JPEG inside the PDF: close to the original, not equal
        assert np.abs(page.astype(int) - glyph_page()).mean() < 4

    def test_errors(self, tmp_path):
        (tmp_path / "e.pdf").write_bytes(empty_pdf())
        with pytest.raises(PdfError, match="no pages"):
            page_count(str(tmp_path / "e.pdf"))
        (tmp_path / "x.pdf").write_bytes(b"garbage")
        with pytest.raises(PdfError, match="not a readable PDF"):
            page_count(str(tmp_path / "x.pdf"))
        write_pdf(tmp_path / "b.pdf", [glyph_page()])
        with pytest.raises(PdfError, match="no page 5"):
            render_page(str(tmp_path / "b.pdf"), 4, 100, 3, 10**9)
        with pytest.raises(PdfError, match="ingest.max_pixels"):
            render_page(str(tmp_path / "b.pdf"), 0, 100, 3, 1000)


class TestThroughStage:
    def test_whole_pages_with_page_numbers(self, make_project, book, quiet):
        project = make_project(book, "ingest.size=32", "ingest.pdf_dpi=100")
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        d = _read(project)
        assert d["source"] == ["book.pdf#page=1", "book.pdf#page=2", "book.pdf#page=3", "loose.png"]
        assert d["page"].tolist() == [1, 2, 3, 0]
        assert d["file"] == ["book.pdf"] * 3 + ["loose.png"]
        assert d["kind"] == ["pdf"] * 3 + ["image"]
        h, w = glyph_page().shape[:2]
        assert d["size"][0].tolist() == [w, h] and d["box"][0].tolist() == [0, 0, w, h]
        assert len(set(d["checksum"][:3])) == 1  # the PDF's own checksum
        skipped = dict(zip(d["skipped/source"], d["skipped/reason"]))
        assert skipped == {"empty.pdf": "the PDF has no pages", "broken.pdf": skipped["broken.pdf"]}
        assert "not a readable PDF" in skipped["broken.pdf"]
        assert set(d["files/source"]) == {"book.pdf", "loose.png", "empty.pdf", "broken.pdf"}
        assert stage_status(project, project.config(), "ingest", stages.STAGES).state == "fresh"

    def test_dpi_scales_the_boxes(self, make_project, book, quiet):
        project = make_project(book, "ingest.size=16", "ingest.pdf_dpi=50")
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        h, w = glyph_page().shape[:2]
        assert _read(project)["size"][0].tolist() == [w // 2, h // 2]

    def test_components_per_page(self, make_project, tmp_path, quiet):
        root = tmp_path / "pdfonly"
        root.mkdir()
        write_pdf(root / "book.pdf", [glyph_page(), glyph_page(GLYPH_LINES[:2]), glyph_page(GLYPH_LINES[2:3])])
        project = make_project(root / "book.pdf", "ingest.size=24", "ingest.pdf_dpi=100", "ingest.crop=components")
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        d = _read(project)
        for page, lines in ((1, GLYPH_LINES), (2, GLYPH_LINES[:2]), (3, GLYPH_LINES[2:3])):
            assert (d["page"] == page).sum() == pytest.approx(glyph_count(lines), rel=0.02)
        assert set(d["source"]) == {"book.pdf#page=1", "book.pdf#page=2", "book.pdf#page=3"}

    def test_pdf_and_folder_combined(self, make_project, book, tmp_path, quiet):
        other = tmp_path / "other"
        other.mkdir()
        write_pdf(other / "second.pdf", [glyph_page(GLYPH_LINES[:1])])
        project = make_project(book / "book.pdf", "ingest.size=16", "ingest.pdf_dpi=50",
                               f'ingest.sources=["{other / "second.pdf"}"]')
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        d = _read(project)
        assert d["source"] == ["scans/book.pdf#page=1", "scans/book.pdf#page=2", "scans/book.pdf#page=3",
                               "other/second.pdf#page=1"]
        with h5py.File(project.stage_path("ingest"), "r") as f:
            assert f.attrs["images_root"] == str(tmp_path)

    def test_only_an_empty_pdf(self, make_project, tmp_path, quiet):
        from pipeline.errors import SpritesError
        (tmp_path / "e.pdf").write_bytes(empty_pdf())
        project = make_project(tmp_path / "e.pdf")
        with pytest.raises(SpritesError, match="no pages"):
            run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
