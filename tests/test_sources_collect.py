"""pipeline.ingest.sources.collect: what a source string is, several sources combined, the images root,
and the digest `sprites status` uses (no network)."""

from __future__ import annotations

import json

import h5py
import pytest

from conftest import synthetic_image
from pipeline.core.config import IngestConfig
from pipeline.errors import SpritesError
from pipeline.core.runner import run_stages, stage_status
from pipeline.ingest.sources.collect import local_inputs, resolve_specs
from pipeline.core.store import read_strings
from test_cropping import GLYPH_LINES, glyph_page
from test_pdf import write_pdf
import stages


@pytest.fixture
def tree(tmp_path):
    """tmp/a/{1,2}.png, tmp/b/book.pdf (2 pages), tmp/c/3.png, tmp/m.json, tmp/list.txt."""
    for folder in "abc":
        (tmp_path / folder).mkdir()
    synthetic_image(20, 20, 1).save(tmp_path / "a" / "1.png")
    synthetic_image(20, 20, 2).save(tmp_path / "a" / "2.png")
    synthetic_image(20, 20, 3).save(tmp_path / "c" / "3.png")
    write_pdf(tmp_path / "b" / "book.pdf", [glyph_page(GLYPH_LINES[:1]), glyph_page(GLYPH_LINES[1:2])])
    (tmp_path / "m.json").write_text(json.dumps({"type": "Manifest", "items": []}))
    (tmp_path / "list.txt").write_text("# sources\nb/book.pdf\n\nhttps://example.org/iiif/m.json\nc\n")
    return tmp_path


def _cfg(images="images", sources=(), **kw):
    return IngestConfig(images=images, sources=list(sources), **kw)


class TestResolve:
    def test_kinds(self, tree):
        specs = resolve_specs(tree, _cfg("a", ["b/book.pdf", "m.json", "list.txt", "https://x.org/m", "a/*.png", "c/3.png"]))
        assert [(s.kind, s.given) for s in specs] == [
            ("files", "a"), ("pdf", "b/book.pdf"), ("manifest", "m.json"),
            ("pdf", "b/book.pdf"), ("manifest", "https://example.org/iiif/m.json"), ("files", "c"),
            ("manifest", "https://x.org/m"), ("files", "a/*.png"), ("files", "c/3.png")]
        assert specs[3].location == str(tree / "b" / "book.pdf")  # relative to the list's folder

    def test_default_images_folder_may_be_absent_beside_sources(self, tree):
        assert [s.given for s in resolve_specs(tree, _cfg(sources=["a"]))] == ["a"]
        with pytest.raises(SpritesError, match="images not found"):
            resolve_specs(tree, _cfg("gone", ["a"]))
        with pytest.raises(SpritesError, match="no sources"):
            resolve_specs(tree, _cfg(""))

    def test_unknown_kind(self, tree):
        (tree / "notes.docx").write_text("x")
        with pytest.raises(SpritesError, match="not a known kind of source"):
            resolve_specs(tree, _cfg("notes.docx"))

    def test_lists_may_not_loop_forever(self, tree):
        (tree / "loop.txt").write_text("loop.txt\n")
        with pytest.raises(SpritesError, match="nest too deep"):
            resolve_specs(tree, _cfg("loop.txt"))


class TestLocalInputs:
    def test_root_is_the_common_folder(self, tree):
        local = local_inputs(tree, _cfg("a", ["b/book.pdf", "c"]))
        assert local.root == tree
        assert [rel for rel, _ in local.files] == ["a/1.png", "a/2.png", "b/book.pdf", "c/3.png"]

    def test_single_folder_keeps_its_root(self, tree):
        local = local_inputs(tree, _cfg("a"))
        assert local.root == tree / "a" and [rel for rel, _ in local.files] == ["1.png", "2.png"]

    def test_same_file_twice_is_read_once(self, tree):
        local = local_inputs(tree, _cfg("a", ["a/1.png", "list.txt", "b/book.pdf"]))
        assert [rel for rel, _ in local.files].count("a/1.png") == 1
        assert [rel for rel, _ in local.files].count("b/book.pdf") == 1
        assert local.duplicates == ["b/book.pdf"]

    def test_manifests_digest_without_network(self, tree):
        local = local_inputs(tree, _cfg("m.json", ["https://example.org/iiif/m.json"]))
        keys = local.keys()
        assert ("manifest", "https://example.org/iiif/m.json") in keys
        (tree / "m.json").write_text(json.dumps({"type": "Manifest", "items": [], "label": "changed"}))
        assert local_inputs(tree, _cfg("m.json")).keys() != [k for k in keys if "https" not in str(k)]


class TestThroughStage:
    def test_folder_pdf_and_image_combined(self, make_project, tree, quiet):
        project = make_project(tree / "a", "ingest.size=16", "ingest.pdf_dpi=30",
                               f'ingest.sources=["{tree / "b" / "book.pdf"}", "{tree / "c" / "3.png"}"]')
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        with h5py.File(project.stage_path("ingest"), "r") as f:
            assert read_strings(f["source"]) == ["a/1.png", "a/2.png", "b/book.pdf#page=1", "b/book.pdf#page=2", "c/3.png"]
            assert f["page"][()].tolist() == [0, 0, 1, 2, 0]
            assert f.attrs["images_root"] == str(tree)
            assert read_strings(f["files/source"]) == ["a/1.png", "a/2.png", "b/book.pdf", "c/3.png"]

    def test_status_explains_added_files_and_sources(self, make_project, tree, quiet):
        project = make_project(tree / "a", "ingest.size=16")
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        synthetic_image(20, 20, 9).save(tree / "a" / "new.png")
        status = stage_status(project, project.config(), "ingest", stages.STAGES)
        assert status.state == "stale" and "1 added" in " ".join(status.reasons)
        more = stage_status(project, project.config(["ingest.sources=[\"https://example.org/m.json\"]"]), "ingest", stages.STAGES)
        assert "manifests changed (1 added" in " ".join(more.reasons)
