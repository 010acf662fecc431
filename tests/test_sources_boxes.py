"""pipeline.ingest.sources.boxes and `ingest.crop = "boxes"` on local images and PDF pages: a CSV and a
W3C / IIIF annotation file naming the same boxes give the same crops."""

from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import pytest

from pipeline.ingest.cropping import components
from pipeline.errors import SpritesError
from pipeline.core.runner import run_stages
from pipeline.ingest.sources.boxes import Box, read_boxes
from pipeline.core.store import read_strings
from test_cropping import GLYPH_LINES, glyph_page
from test_pdf import write_pdf
import stages


def _read(project):
    with h5py.File(project.stage_path("ingest"), "r") as f:
        out = {k: read_strings(f[k]) for k in ("source", "label", "skipped/source", "skipped/reason", "boxes_unmatched")}
        out.update({k: f[k][()] for k in ("crops", "box", "page")})
    return out


class TestRead:
    def test_csv_with_and_without_header(self, tmp_path):
        (tmp_path / "a.csv").write_text("source,x,y,w,h,label\np.png,1,2,3,4,A\np.png,5,6,7,8\nq.png,0,0,1.5,2,\n")
        (tmp_path / "b.csv").write_text("p.png,1,2,3,4,A\n")
        assert read_boxes(tmp_path / "a.csv") == {"p.png": [Box(1, 2, 3, 4, "A"), Box(5, 6, 7, 8)], "q.png": [Box(0, 0, 1.5, 2)]}
        assert read_boxes(tmp_path / "b.csv") == {"p.png": [Box(1, 2, 3, 4, "A")]}

    def test_csv_errors(self, tmp_path):
        (tmp_path / "bad.csv").write_text("source,x,y,w,h\np.png,1,2,three,4\n")
        with pytest.raises(SpritesError, match="line 2: expected source,x,y,w,h"):
            read_boxes(tmp_path / "bad.csv")
        (tmp_path / "flat.csv").write_text("p.png,1,2,0,4\n")
        with pytest.raises(SpritesError, match="no area"):
            read_boxes(tmp_path / "flat.csv")
        with pytest.raises(SpritesError, match="no such file"):
            read_boxes(tmp_path / "none.csv")

    def test_annotation_shapes(self, tmp_path):
        doc = {"@context": "http://iiif.io/api/presentation/2/context.json", "@type": "sc:AnnotationList", "resources": [
            {"@type": "oa:Annotation", "resource": {"@type": "cnt:ContentAsText", "chars": "A"}, "on": "http://h/c1#xywh=1,2,3,4"},
            {"@type": "oa:Annotation", "on": [{"@type": "oa:SpecificResource", "full": "http://h/c1",
                                              "selector": {"@type": "oa:FragmentSelector", "value": "xywh=pixel:5,6,7,8"}}]},
            {"type": "Annotation", "body": [{"type": "TextualBody", "value": "C"}],
             "target": {"type": "SpecificResource", "source": {"id": "http://h/c2", "type": "Canvas"},
                        "selector": [{"type": "FragmentSelector", "conformsTo": "http://www.w3.org/TR/media-frags/",
                                      "value": "xywh=percent:10,20,30,40"}]}},
            {"type": "Annotation", "target": "http://h/c3"},   # no box: ignored
            {"type": "Annotation", "target": "book.pdf#page=3&xywh=9,9,9,9"},
            {"type": "Annotation", "target": {"source": "book.pdf", "selector": [
                {"type": "FragmentSelector", "value": "page=4"}, {"type": "FragmentSelector", "value": "xywh=1,1,1,1"}]}},
        ]}
        (tmp_path / "a.json").write_text(json.dumps(doc))
        assert read_boxes(tmp_path / "a.json") == {
            "http://h/c1": [Box(1, 2, 3, 4, "A"), Box(5, 6, 7, 8)],
            "http://h/c2": [Box(10, 20, 30, 40, "C", "percent")],
            "book.pdf#page=3": [Box(9, 9, 9, 9)], "book.pdf#page=4": [Box(1, 1, 1, 1)]}

    def test_annotation_errors(self, tmp_path):
        (tmp_path / "x.json").write_text("{not json")
        with pytest.raises(SpritesError, match="not valid JSON"):
            read_boxes(tmp_path / "x.json")
        (tmp_path / "y.json").write_text(json.dumps({"type": "AnnotationPage", "items": []}))
        with pytest.raises(SpritesError, match="no annotation with an xywh target"):
            read_boxes(tmp_path / "y.json")


class TestThroughStage:
    @pytest.fixture
    def pages(self, tmp_path):
        root = tmp_path / "pages"
        root.mkdir()
        cv2.imwrite(str(root / "p1.png"), glyph_page()[..., ::-1])
        write_pdf(root / "book.pdf", [glyph_page(GLYPH_LINES[:1]), glyph_page(GLYPH_LINES[1:2])])
        return root

    def _boxes(self):
        """Some letters of p1.png and of page 2 of book.pdf (pixels at 100 dpi = the drawn page)."""
        p1 = components(glyph_page())[:6]
        p2 = components(glyph_page(GLYPH_LINES[1:2]))[:4]
        return [("p1.png", b) for b in p1] + [("book.pdf#page=2", b) for b in p2]

    def _project(self, make_project, pages, boxes_file, name):
        return make_project(pages, "ingest.size=24", "ingest.pdf_dpi=100", "ingest.crop=boxes",
                            f'ingest.boxes="{boxes_file}"', name=name)

    def test_csv_and_w3c_give_the_same_crops(self, make_project, pages, tmp_path, quiet):
        boxes = self._boxes()
        rows = "".join(f"{s},{x},{y},{w},{h},{s[:2]}{i}\n" for i, (s, (x, y, w, h)) in enumerate(boxes))
        (tmp_path / "b.csv").write_text("source,x,y,w,h,label\n" + rows)
        anno = {"@context": "http://www.w3.org/ns/anno.jsonld", "type": "AnnotationCollection", "first": {
            "type": "AnnotationPage", "items": [
                {"type": "Annotation", "body": {"type": "TextualBody", "value": f"{s[:2]}{i}"},
                 "target": f"{s}#xywh={x},{y},{w},{h}" if "#" not in s else
                 {"source": s, "selector": {"type": "FragmentSelector", "value": f"xywh={x},{y},{w},{h}"}}}
                for i, (s, (x, y, w, h)) in enumerate(boxes)]}}
        (tmp_path / "b.json").write_text(json.dumps(anno))
        results = []
        for name, file in (("csv", "b.csv"), ("w3c", "b.json")):
            project = self._project(make_project, pages, tmp_path / file, name)
            run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
            results.append(_read(project))
        a, b = results
        assert np.array_equal(a["crops"], b["crops"]) and a["label"] == b["label"]
        assert a["source"] == ["book.pdf#page=2"] * 4 + ["p1.png"] * 6
        assert a["page"].tolist() == [2] * 4 + [0] * 6
        assert a["box"].tolist() == [list(bx) for _, bx in boxes[6:]] + [list(bx) for _, bx in boxes[:6]]
        assert a["label"][:2] == ["bo6", "bo7"]
        # the crop is the box's content, squared: same as cutting the page by hand
        from pipeline.ingest.images import square_crop
        x, y, w, h = boxes[0][1]
        assert np.array_equal(a["crops"][4], square_crop(glyph_page()[y:y + h, x:x + w], 24)[0])

    def test_percent_outside_and_unknown_sources(self, make_project, pages, tmp_path, quiet):
        (tmp_path / "b.json").write_text(json.dumps([
            {"type": "Annotation", "target": "p1.png#xywh=percent:0,0,50,50"},
            {"type": "Annotation", "target": "p1.png#xywh=5000,5000,10,10"},
            {"type": "Annotation", "target": "elsewhere.png#xywh=0,0,10,10"}]))
        project = self._project(make_project, pages, tmp_path / "b.json", "p")
        lines = []
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, log=lines.append, progress=False)
        d = _read(project)
        h, w = glyph_page().shape[:2]
        assert d["box"].tolist() == [[0, 0, w // 2, h // 2]]
        assert d["skipped/source"] == ["p1.png"] and "outside the page" in d["skipped/reason"][0]
        assert d["boxes_unmatched"] == ["elsewhere.png"]
        assert any("1 of 3 pages have boxes" in line for line in lines)

    def test_no_page_named(self, make_project, pages, tmp_path, quiet):
        (tmp_path / "b.csv").write_text("pages/p1.png,0,0,10,10\n")
        project = self._project(make_project, pages, tmp_path / "b.csv", "p")
        with pytest.raises(SpritesError, match="none of the 3 pages is named in ingest.boxes: .*'pages/p1.png'.*'book.pdf#page=1'"):
            run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
