"""stages.ingest: images → cache/ingest.h5 (crops, provenance, skipped files), run through the runner."""

from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import TINY_COUNT, png_bytes, synthetic_image
from pipeline.errors import SpritesError
from pipeline.core.runner import run_stages, stage_status
from pipeline.core.store import read_strings, stage_attrs
import stages


def _ingest(project, quiet, *sets):
    cfg = project.config(list(sets))
    run_stages(project, cfg, ["ingest"], stages=stages.STAGES, **quiet)
    return cfg


def _read(project) -> dict:
    with h5py.File(project.stage_path("ingest"), "r") as f:
        out = {k: f[k][()] for k in ("crops", "box", "size", "content_box")}
        for k in ("source", "checksum", "skipped/source", "skipped/reason", "files/source"):
            out[k] = read_strings(f[k])
        out["attrs"] = dict(f.attrs)
    return out


class TestTinyCollection:
    def test_datasets(self, project, quiet):
        _ingest(project, quiet)
        d = _read(project)
        n = TINY_COUNT
        assert d["crops"].shape == (n, 3, 16, 16) and d["crops"].dtype == np.uint8
        assert d["box"].shape == d["content_box"].shape == (n, 4) and d["size"].shape == (n, 2)
        assert len(d["source"]) == len(d["checksum"]) == n
        assert d["source"] == sorted(d["source"]) and "book1/quire2/img01.png" in d["source"]
        assert d["skipped/source"] == [] and d["files/source"] == d["source"]
        i = d["source"].index("book1/img00.png")  # 20 × 30
        assert d["size"][i].tolist() == [20, 30]
        assert d["box"][i].tolist() == [0, 0, 20, 30]
        assert d["content_box"][i].tolist() == [2, 0, 11, 16]  # 20·16/30 ≈ 11 wide, centred
        assert int(d["attrs"]["count"]) == n
        attrs = stage_attrs(project.stage_path("ingest"))
        assert attrs["stage"] == "ingest" and json.loads(attrs["config_json"])["ingest"]["size"] == 16
        assert json.loads(attrs["params_json"]) == {"ingest": project.config().section("ingest")}

    def test_deterministic(self, project, quiet):
        _ingest(project, quiet)
        first = _read(project)
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, force=True, **quiet)
        second = _read(project)
        for k in ("crops", "source", "checksum", "size", "content_box"):
            assert np.array_equal(np.asarray(first[k]), np.asarray(second[k])), k
        assert first["attrs"]["run_id"] != second["attrs"]["run_id"]

    def test_grey_channels(self, project, quiet):
        _ingest(project, quiet, "ingest.channels=1", "ingest.size=24")
        assert _read(project)["crops"].shape == (TINY_COUNT, 1, 24, 24)

    def test_matches_load_crop(self, project, quiet, tiny_collection):
        from pipeline.ingest.images import load_crop
        _ingest(project, quiet)
        d = _read(project)
        i = d["source"].index("book2/img01.png")
        assert np.array_equal(d["crops"][i], load_crop(tiny_collection / "book2/img01.png", 16, 3).crop)


class TestBadAndOddFiles:
    @pytest.fixture
    def messy(self, tmp_path):
        root = tmp_path / "messy"
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
        good = png_bytes(synthetic_image(20, 20, 1))
        (root / "good.png").write_bytes(good)
        (root / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(500))
        noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
        full = png_bytes(noise)
        (root / "truncated.png").write_bytes(full[: len(full) // 2])
        (root / "readme.txt").write_text("not an image")
        (root / "empty.jpg").write_bytes(b"")
        (root / "with space.png").write_bytes(good)
        (root / "Évangéliaire ß.png").write_bytes(png_bytes(synthetic_image(20, 20, 2)))
        (root / "<script>&.png").write_bytes(png_bytes(synthetic_image(20, 20, 3)))
        synthetic_image(20, 20, 4).save(root / "a" / "1.png")
        synthetic_image(20, 20, 5).save(root / "b" / "1.png")
        return root

    def test_skipped_with_reasons_rest_ingested(self, make_project, messy, quiet):
        project = make_project(messy, "ingest.size=16")
        _ingest(project, quiet)
        d = _read(project)
        assert sorted(d["source"]) == sorted(["good.png", "with space.png", "Évangéliaire ß.png",
                                              "<script>&.png", "a/1.png", "b/1.png"])
        skipped = dict(zip(d["skipped/source"], d["skipped/reason"]))
        assert set(skipped) == {"corrupt.png", "truncated.png", "readme.txt", "empty.jpg"}
        assert "not a readable image" in skipped["corrupt.png"]
        assert "truncated" in skipped["truncated.png"]
        assert "unsupported file type .txt" in skipped["readme.txt"]
        assert skipped["empty.jpg"]
        assert stage_status(project, project.config(), "ingest", stages.STAGES).state == "fresh"

    def test_duplicate_names_distinct(self, make_project, messy, quiet):
        project = make_project(messy, "ingest.size=16")
        _ingest(project, quiet)
        d = _read(project)
        ia, ib = d["source"].index("a/1.png"), d["source"].index("b/1.png")
        assert d["checksum"][ia] != d["checksum"][ib]
        assert not np.array_equal(d["crops"][ia], d["crops"][ib])

    def test_log_lists_skipped(self, make_project, messy):
        project = make_project(messy, "ingest.size=16")
        lines = []
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, log=lines.append, progress=False)
        text = "\n".join(lines)
        assert "6 crops of 16×16 px from 9 images; 4 files skipped" in text
        assert "skipped corrupt.png" in text

    def test_max_pixels_guard(self, make_project, tiny_collection, quiet):
        Image.new("RGB", (60, 50), "white").save(tiny_collection / "huge.png")
        project = make_project(tiny_collection, "ingest.size=16", "ingest.max_pixels=2000")
        _ingest(project, quiet)
        d = _read(project)
        assert "huge.png" not in d["source"] and len(d["source"]) == TINY_COUNT
        assert d["skipped/source"] == ["huge.png"]
        assert "too large" in d["skipped/reason"][0] and "ingest.max_pixels" in d["skipped/reason"][0]


class TestFormatsThroughStage:
    def test_every_format(self, make_project, tmp_path, quiet):
        root = tmp_path / "formats"
        root.mkdir()
        base = synthetic_image(24, 24, 7)
        base.convert("L").save(root / "grey.png")
        base.save(root / "rgb.png")
        base.convert("RGBA").save(root / "rgba.png")
        Image.fromarray(np.tile(np.linspace(0, 65535, 24).astype(np.uint16), (24, 1))).save(root / "deep.png")
        base.convert("P", palette=Image.ADAPTIVE, colors=8).save(root / "palette.png")
        base.save(root / "scan.tif")
        base.save(root / "scan.bmp")
        base.save(root / "scan.webp", lossless=True)
        base.save(root / "photo.jpeg", quality=90)
        exif = Image.Exif()
        exif[0x0112] = 6
        synthetic_image(40, 20, 8).save(root / "rotated.jpg", exif=exif.tobytes())
        project = make_project(root, "ingest.size=16")
        _ingest(project, quiet)
        d = _read(project)
        assert d["skipped/source"] == []
        assert len(d["source"]) == 10
        i = d["source"].index("rotated.jpg")
        assert d["size"][i].tolist() == [20, 40]
        assert d["content_box"][i].tolist() == [4, 0, 8, 16]


class TestErrors:
    def test_empty_folder(self, make_project, tmp_path, quiet):
        (tmp_path / "empty").mkdir()
        project = make_project(tmp_path / "empty")
        with pytest.raises(SpritesError, match="no images found"):
            _ingest(project, quiet)
        assert stage_attrs(project.stage_path("ingest")) is None

    def test_only_bad_files(self, make_project, tmp_path, quiet):
        root = tmp_path / "bad"
        root.mkdir()
        (root / "x.png").write_bytes(b"garbage")
        (root / "y.jpg").write_bytes(b"")
        project = make_project(root)
        with pytest.raises(SpritesError, match=r"none of the 2 images .* could be read \(first problem: x\.png"):
            _ingest(project, quiet)
        assert not project.stage_path("ingest").exists()
        assert not list(project.cache_dir.glob("*.tmp-*"))

    def test_images_folder_gone(self, project, tiny_collection, quiet):
        import shutil
        shutil.rmtree(tiny_collection)
        with pytest.raises(SpritesError, match="images not found"):
            _ingest(project, quiet)


class TestGlob:
    def test_glob_spec(self, make_project, tiny_collection, quiet):
        (tiny_collection / "book2" / "skip.bmp").write_bytes(b"")  # not matched by *.png
        project = make_project(str(tiny_collection / "book1" / "**" / "*.png"), "ingest.size=16")
        assert "*" in project.config().ingest.images
        _ingest(project, quiet)
        d = _read(project)
        assert d["source"] == ["img00.png", "img01.png", "img02.png",
                               "quire2/img00.png", "quire2/img01.png", "quire2/img02.png"]
        assert d["skipped/source"] == []


class TestManyImagesInWorkers:
    def test_pool_path_same_as_serial(self, make_project, tmp_path, quiet):
        """≥ 200 images go through the worker pool; the result is the same as one by one."""
        from pipeline.ingest.images import load_crop
        root = tmp_path / "many"
        root.mkdir()
        blobs = [png_bytes(synthetic_image(12 + s % 5, 12 + s % 3, s)) for s in range(8)]
        for i in range(210):
            (root / f"{i:03d}.png").write_bytes(blobs[i % 8])
        (root / "150.png").write_bytes(b"bad")
        project = make_project(root, "ingest.size=8")
        _ingest(project, quiet)
        d = _read(project)
        assert len(d["source"]) == 209 and d["skipped/source"] == ["150.png"]
        for i in (0, 149, 150, 208):
            assert np.array_equal(d["crops"][i], load_crop(root / d["source"][i], 8, 3).crop)
