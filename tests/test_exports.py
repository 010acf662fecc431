"""The exports: assignments.csv/.json, masks.h5, sprite PNGs (formats documented in README)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pipeline.models.sprites.record import readable_values, value_columns
from pipeline.core.store import read_strings
from report_fixtures import coins_project, glyphs_project


@pytest.fixture(scope="session")
def glyphs(tmp_path_factory):
    return glyphs_project(tmp_path_factory)


@pytest.fixture(scope="session")
def coins(tmp_path_factory):
    return coins_project(tmp_path_factory)


def _csv(project):
    with open(project.exports_dir / "assignments.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _upstream(project):
    with h5py.File(project.stage_path("ingest"), "r") as f:
        root, sources, box = Path(f.attrs["images_root"]), read_strings(f["source"]), f["box"][()]
    with h5py.File(project.stage_path("decompose"), "r") as f:
        arrays = {k: f[k][()] for k in ("front", "sprite", "error", "margin", "semantic", "instance")}
    return root, sources, box, arrays


@pytest.mark.parametrize("name", ["glyphs", "coins"])
def test_csv_round_trips(name, request):
    project = request.getfixturevalue(name)
    header, rows = _csv(project)
    root, sources, box, d = _upstream(project)
    assert header[:8] == ["crop_id", "source", "box_x", "box_y", "box_w", "box_h", "sprite", "layers"]
    assert {"error", "margin"} <= set(header)
    assert len(rows) == len(sources)
    for i, row in enumerate(rows):
        assert int(row["crop_id"]) == i and row["source"] == sources[i]
        assert (root / row["source"]).is_file()
        assert [int(row[k]) for k in ("box_x", "box_y", "box_w", "box_h")] == box[i].tolist()
        assert int(row["sprite"]) == d["front"][i]
        assert [int(s) for s in row["layers"].split(";")] == d["sprite"][i].tolist()
        assert math.isclose(float(row["error"]), d["error"][i], rel_tol=1e-5, abs_tol=1e-9)


@pytest.mark.parametrize("name", ["glyphs", "coins"])
def test_json_equals_csv(name, request):
    project = request.getfixturevalue(name)
    header, rows = _csv(project)
    data = json.loads((project.exports_dir / "assignments.json").read_text(encoding="utf-8"))
    head = data["header"]
    assert head["columns"] == header and head["count"] == len(rows) == len(data["crops"])
    assert head["sprites"] == project.config().model.sprites and "model" in head["config"]
    for row, obj in zip(rows, data["crops"]):
        assert list(obj) == header
        for key in header:
            value = obj[key]
            if key == "layers":
                assert ";".join(map(str, value)) == row[key]
            elif isinstance(value, str):
                assert value == row[key]
            elif value is None:
                assert row[key] == ""
            else:
                assert float(row[key]) == value


def test_transformation_columns(glyphs, coins):
    header, rows = _csv(coins)
    assert "projective_norm" in header and "color_gain" in header and "background" in header
    assert all(float(r["color_gain"]) > 0 for r in rows)
    assert value_columns("position", 3) + value_columns("color", 6) == ["position_scale", "position_tx", "position_ty",
                                                                        "color_gain", "color_offset"]
    assert value_columns("identity", 0) == []
    params = {"layer_position": np.array([[[0.0, 0.1, -0.2]], [[np.log(2.0), 0.0, 0.0]]], np.float32),
              "quarter_turns": np.ones((2, 1, 1), np.float32)}
    values = readable_values(params, ["layer_position"], init_scale=0.5)
    assert list(values) == ["layer_position_scale", "layer_position_tx", "layer_position_ty", "quarter_turns_norm"]
    assert np.allclose(values["layer_position_scale"][:, 0], [0.5, 1.0])
    header, _ = _csv(glyphs)
    assert "background" not in header    # clustering: no background prototypes


def test_masks_h5_for_objects(coins):
    _, sources, _, d = _upstream(coins)
    size = coins.config().ingest.size
    with h5py.File(coins.exports_dir / "masks.h5", "r") as f:
        assert read_strings(f["source"]) == sources
        for key in ("semantic", "instance"):
            assert f[key].shape == (len(sources), size, size) and f[key].dtype == np.uint8
            np.testing.assert_array_equal(f[key][()], d[key])
        assert f["semantic"][()].max() <= coins.config().model.sprites
        assert f.attrs["stage"] == "report" and "config_json" in f.attrs and "sprites_version" in f.attrs
        family = json.loads((coins.exports_dir / "catalogue.json").read_text())["family_of_sprite"]
        table = np.array([0] + [k + 1 for k in family], np.uint8)     # sprite k → its family
        np.testing.assert_array_equal(f["family"][()], table[d["semantic"]])


def test_no_masks_for_clustering(glyphs):
    assert not (glyphs.exports_dir / "masks.h5").exists()


def test_sprite_pngs(glyphs, coins):
    for project, backgrounds in ((glyphs, 0), (coins, 1)):
        K = project.config().model.sprites
        folder = project.exports_dir / "sprites"
        assert sorted(p.name for p in folder.glob("sprite_*.png")) == [f"sprite_{k:03d}.png" for k in range(K)]
        assert len(list(folder.glob("background_*.png"))) == backgrounds
        for k in range(K):
            with Image.open(folder / f"sprite_{k:03d}.png") as im:
                assert im.mode == "RGBA"
                alpha = np.asarray(im)[..., 3]
                if project is glyphs:
                    assert (alpha == 255).all()          # opaque prototypes
                else:
                    assert alpha.min() < 255             # a learned mask
    assert not list(coins.exports_dir.glob("*.tmp-*"))


def test_report_of_objects_project(coins):
    text = (coins.report_dir / "reconstructions.html").read_text(encoding="utf-8")
    assert "semantic mask" in text and "instance mask" in text and "background 0" in text
    assert "masks.h5" in (coins.report_dir / "index.html").read_text(encoding="utf-8")
