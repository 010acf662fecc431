"""pipeline.ingest.metadata: a CSV joined to the crops by source or id; unmatched rows and sources
reported (log + ingest.h5 metadata_unmatched/*); columns stored as metadata/<column>."""

from __future__ import annotations

import h5py
import pytest

from conftest import synthetic_image
from pipeline.errors import SpritesError
from pipeline.ingest.metadata import column_name, join_metadata, read_metadata
from pipeline.core.runner import run_stages, stage_status
from pipeline.core.store import read_strings
from test_cropping import GLYPH_LINES, glyph_page
from test_pdf import write_pdf
import stages


def _csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


class TestRead:
    def test_columns_and_duplicates(self, tmp_path):
        meta = read_metadata(_csv(tmp_path / "m.csv", "\ufeffsource,date,place/city,\na.png,1480,Paris,x\na.png,1490,Lyon,y\n\n"))
        assert meta.key == "source" and meta.columns == ["date", "place_city", "column_4"]
        assert meta.rows == [("a.png", ["1480", "Paris", "x"])] and meta.duplicates == ["a.png"]

    def test_id_key_and_short_rows(self, tmp_path):
        meta = read_metadata(_csv(tmp_path / "m.csv", "ID,title\nimg1\n"))
        assert meta.key == "id" and meta.rows == [("img1", [""])]

    @pytest.mark.parametrize("text, match", [("", "is empty"), ("filename,date\na,1\n", "must be named source")])
    def test_errors(self, tmp_path, text, match):
        with pytest.raises(SpritesError, match=match):
            read_metadata(_csv(tmp_path / "m.csv", text))

    def test_column_names(self):
        taken = set()
        assert [column_name(n, taken) for n in ("a", "a", "", "..", "x/y")] == ["a", "a_2", "column", "column_2", "x_y"]


class TestJoin:
    CROPS = [  # (source, canvas, file, manifest)
        ("a/1.png", "", "a/1.png", ""),
        ("a/1.png", "", "a/1.png", ""),
        ("b/1.png", "", "b/1.png", ""),
        ("book.pdf#page=1", "", "book.pdf", ""),
        ("book.pdf#page=2", "", "book.pdf", ""),
        ("http://h/c1", "http://h/c1", "", "http://h/m.json"),
        ("http://h/c2", "http://h/c2", "", "http://h/m.json"),
    ]

    def test_most_specific_row_wins(self, tmp_path):
        meta = read_metadata(_csv(tmp_path / "m.csv", "source,v\nbook.pdf,book\nbook.pdf#page=2,page two\n"
                                  "http://h/m.json,manuscript\nhttp://h/c2,canvas two\na/1.png,A\nnowhere.png,?\n"))
        j = join_metadata(meta, self.CROPS)
        assert j.columns["v"] == ["A", "A", "", "book", "page two", "manuscript", "canvas two"]
        assert j.matched == 6 and j.unmatched_rows == ["nowhere.png"] and j.unmatched_sources == ["b/1.png"]

    def test_ids_by_unique_file_name_only(self, tmp_path):
        meta = read_metadata(_csv(tmp_path / "m.csv", "id,v\n1,ambiguous\nbook,B\n"))
        j = join_metadata(meta, self.CROPS)
        assert j.columns["v"] == ["", "", "", "B", "B", "", ""]
        assert j.ambiguous_ids == ["1"] and j.unmatched_rows == ["1"]


class TestThroughStage:
    @pytest.fixture
    def collection(self, tmp_path):
        root = tmp_path / "coll"
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
        synthetic_image(20, 20, 1).save(root / "a" / "1.png")
        synthetic_image(20, 20, 2).save(root / "b" / "1.png")
        synthetic_image(20, 20, 3).save(root / "d.png")
        write_pdf(root / "c.pdf", [glyph_page(GLYPH_LINES[:1]), glyph_page(GLYPH_LINES[1:2])])
        _csv(tmp_path / "meta.csv", "source,date,printer\na/1.png,1480,Vérard\nc.pdf,1501,Aldus\n"
             "c.pdf#page=2,1502,Aldus\nd.png,1490,\nlost.png,1400,Nobody\n")
        return root

    def test_columns_aligned_and_unmatched_reported(self, make_project, collection, tmp_path):
        project = make_project(collection, "ingest.size=16", "ingest.pdf_dpi=30", f'ingest.metadata="{tmp_path / "meta.csv"}"')
        lines = []
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, log=lines.append, progress=False)
        with h5py.File(project.stage_path("ingest"), "r") as f:
            source = read_strings(f["source"])
            date, printer = read_strings(f["metadata/date"]), read_strings(f["metadata/printer"])
            rows, sources = read_strings(f["metadata_unmatched/rows"]), read_strings(f["metadata_unmatched/sources"])
            assert f.attrs["metadata_key"] == "source"
        assert source == ["a/1.png", "b/1.png", "c.pdf#page=1", "c.pdf#page=2", "d.png"]
        assert date == ["1480", "", "1501", "1502", "1490"]
        assert printer == ["Vérard", "", "Aldus", "Aldus", ""]
        assert rows == ["lost.png"] and sources == ["b/1.png"]
        text = "\n".join(lines)
        assert "metadata: 4 of 5 crops matched a row of meta.csv" in text
        assert "1 rows match no crop, e.g. lost.png" in text and "1 sources have no row, e.g. b/1.png" in text

    def test_editing_the_csv_makes_ingest_stale(self, make_project, collection, tmp_path, quiet):
        project = make_project(collection, "ingest.size=16", "ingest.pdf_dpi=30", f'ingest.metadata="{tmp_path / "meta.csv"}"')
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        assert stage_status(project, project.config(), "ingest", stages.STAGES).state == "fresh"
        with open(tmp_path / "meta.csv", "a", encoding="utf-8") as f:
            f.write("b/1.png,1470,Caxton\n")
        assert stage_status(project, project.config(), "ingest", stages.STAGES).state == "stale"

    def test_missing_file_is_named(self, make_project, collection, quiet):
        project = make_project(collection, 'ingest.metadata="nope.csv"')
        with pytest.raises(SpritesError, match="ingest.metadata: no such file .*nope.csv"):
            run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
