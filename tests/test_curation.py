"""curation.toml: parsing and its errors (with the line to fix), the catalogue it makes, and the
round trip through the report stage (exports and galleries change; earlier caches do not)."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest

from pipeline.catalogue.catalogue import UNASSIGNED, build_catalogue, choose_curation, model_id
from pipeline.catalogue.curation import DROPPED, parse_curation, read_curation, template_text
from pipeline.core.project import init_project
from pipeline.core.runner import stage_status
from pipeline.errors import SpritesError
import stages
from report_fixtures import quiet_run

GOOD = '''model = "abc123"

[sprite.0]
name = "round \\"o\\""
merge = [3, 4]
note = "several widths"

[sprite.1]
drop = true

[sprite.2]
name = "e"
merge = 5
'''


class TestParse:
    def test_names_merges_drops_notes(self):
        c = parse_curation(GOOD)
        assert c.model == "abc123"
        assert c.names == {0: 'round "o"', 2: "e"}
        assert c.merges == {0: (3, 4), 2: (5,)}
        assert c.drops == {1}
        assert c.notes == {0: "several widths"}
        assert c.entries(7).tolist() == [0, DROPPED, 2, 0, 0, 2, 6]

    def test_template_is_valid_and_empty(self):
        c = parse_curation(template_text("f00d"))
        assert c.model == "f00d" and c.empty

    def test_comments_do_not_change_the_digest(self):
        assert parse_curation(GOOD).digest() == parse_curation("# a note\n" + GOOD.replace("\n\n", "\n\n# x\n")).digest()

    @pytest.mark.parametrize("extra, line, words", [
        ("\n[sprite.6]\nmerge = [3]\n", 16, "sprite 3 is in two merges"),
        ("\n[sprite.6]\nname = \"x\n", 16, "not valid TOML"),
        ("\n[sprite.six]\nname = \"x\"\n", 15, "is not a sprite number"),
        ("\n[sprite.6]\nnmae = \"x\"\n", 16, "unknown key 'nmae'"),
        ("\n[sprite.6]\nmerge = [6]\n", 16, "cannot be merged into itself"),
        ("\n[sprite.6]\ndrop = true\nmerge = [7]\n", 16, "both dropped and merged"),
        ("\n[sprite.3]\nname = \"x\"\nmerge = [8]\n", 17, "heads a merge and is merged"),
        ("\n[sprite.6]\ndrop = \"yes\"\n", 16, "drop of sprite 6 must be true or false"),
        ("\n[sprites.6]\nname = \"x\"\n", 15, "unknown key or section 'sprites'"),
    ])
    def test_errors_name_the_line(self, extra, line, words):
        with pytest.raises(SpritesError) as e:
            parse_curation(GOOD + extra)
        assert words in str(e.value)
        assert f"line {line}" in str(e.value), str(e.value)

    def test_unknown_sprite_is_refused_with_its_line(self):
        c = parse_curation(GOOD + "\n[sprite.40]\nname = \"x\"\n")
        with pytest.raises(SpritesError, match=r"line 15: sprite 40 does not exist: this model has sprites 0 to 9"):
            c.entries(10)
        with pytest.raises(SpritesError, match=r"line 4: sprite 5 does not exist"):   # inside a merge list
            parse_curation('model = "a"\n\n[sprite.0]\nmerge = [3, 5]\n').entries(5)

    def test_missing_file_is_none(self, tmp_path):
        assert read_curation(tmp_path / "curation.toml") is None


class TestCatalogue:
    def test_groups_and_labels(self):
        cat = build_catalogue(parse_curation(GOOD), 7, "abc123")
        front = np.array([0, 3, 1, -1, 5, 6])
        assert cat.crop_entries(front).tolist() == [0, 0, -1, -1, 2, 6]
        assert cat.groups(front).tolist() == [0, 0, UNASSIGNED, -1, 2, 6]
        assert cat.label(0) == 'Sprites 0 + 3 + 4 · round "o"' and cat.label(6) == "Sprite 6"
        summary = cat.summary(front)
        assert [e["entry"] for e in summary["entries"]] == [0, 2, 6]
        assert summary["entries"][0]["crops"] == 2 and summary["dropped"] == [{"sprite": 1, "note": "", "crops": 1}]

    def test_another_models_curation_is_reported_not_applied(self):
        cat = build_catalogue(parse_curation(GOOD), 7, "other")
        assert not cat.curated and "not applied" in cat.warning
        assert cat.entry_of_sprite.tolist() == list(range(7)) and cat.names == {}

    def test_a_file_without_model_applies(self):
        cat = build_catalogue(parse_curation(GOOD.replace('model = "abc123"', "")), 7, "any")
        assert cat.curated and cat.names[2] == "e"


# --- round trip through the report stage --------------------------------------------------------

@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """64 letters, K = 6, one epoch, run once: the project before any curation."""
    root = tmp_path_factory.mktemp("curation")
    project = init_project(root / "p", example="glyphs", count=64, sets=["train.epochs=1", "model.sprites=6", "train.threads=1"])
    quiet_run(project)
    return project


def _rows(project):
    with open(project.exports_dir / "assignments.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _cache_state(project):
    out = {}
    for stage in ("ingest", "train", "decompose"):
        path = project.stage_path(stage)
        with h5py.File(path, "r") as f:
            out[stage] = (f.attrs["run_id"], path.stat().st_mtime_ns)
    return out


def test_curation_round_trip(curated):
    project = curated
    template = (project.root / "curation.toml").read_text(encoding="utf-8")
    with h5py.File(project.stage_path("train"), "r") as f:
        mid = model_id(dict(f.attrs))
    assert f'model = "{mid}"' in template
    before = _rows(project)
    assert all(r["entry"] == r["sprite"] and r["name"] == "" for r in before)
    caches = _cache_state(project)

    (project.root / "curation.toml").write_text(template + '''
[sprite.0]
name = "first"
merge = [1]

[sprite.2]
name = "second"
merge = [3]
note = "two widths"

[sprite.5]
drop = true
''', encoding="utf-8")
    status = stage_status(project, project.config(), "report", stages.STAGES)
    assert status.state == "stale" and status.reasons == ["curation.toml changed"]
    assert quiet_run(project) == ["report"]
    assert _cache_state(project) == caches                      # nothing upstream reran or was rewritten

    entry_of = {0: 0, 1: 0, 2: 2, 3: 2, 4: 4, 5: -1}
    name_of = {0: "first", 2: "second"}
    after = _rows(project)
    assert [r["sprite"] for r in after] == [r["sprite"] for r in before]    # `sprite` is kept as it is
    for r in after:
        k = int(r["sprite"])
        assert int(r["entry"]) == entry_of[k] and r["name"] == name_of.get(entry_of[k], "")
    catalogue = json.loads((project.exports_dir / "catalogue.json").read_text(encoding="utf-8"))
    assert [(e["entry"], e["sprites"], e["name"]) for e in catalogue["entries"]] == [
        (0, [0, 1], "first"), (2, [2, 3], "second"), (4, [4], "")]
    assert catalogue["dropped"][0]["sprite"] == 5 and catalogue["entries"][1]["note"] == "two widths"

    pages = project.report_dir / "sprites"
    assert not (pages / "sprite_001.html").exists() and not (pages / "sprite_003.html").exists()
    merged = (pages / "sprite_000.html").read_text(encoding="utf-8")
    assert "Sprites 0 + 1 · first" in merged
    ids = {int(r["crop_id"]) for r in after if r["sprite"] in ("0", "1")}
    assert ids and all(f'id="c{i}"' in merged for i in ids if i < 200)
    dropped = [int(r["crop_id"]) for r in after if r["sprite"] == "5"]
    if dropped:
        assert all(f'id="c{i}"' in (pages / "unassigned.html").read_text(encoding="utf-8") for i in dropped)
    index = (project.report_dir / "index.html").read_text(encoding="utf-8")
    assert "Sprite 0 · first" in index and "merged into 2" in index and "dropped" in index

    # the user's file is never rewritten, and a plain rerun does nothing
    text = (project.root / "curation.toml").read_text(encoding="utf-8")
    assert quiet_run(project) == []
    assert (project.root / "curation.toml").read_text(encoding="utf-8") == text


def test_bad_curation_stops_the_report_only(curated, tmp_path):
    project = curated
    path = project.root / "curation.toml"
    good = path.read_text(encoding="utf-8")
    try:
        path.write_text(good + "\n[sprite.9]\nname = \"x\"\n", encoding="utf-8")
        line = len(good.splitlines()) + 2
        with pytest.raises(SpritesError, match=rf"curation.toml, line {line}: sprite 9 does not exist"):
            quiet_run(project)
        assert quiet_run(project, targets=("decompose",)) == []     # the other stages still work
        assert (project.exports_dir / "assignments.csv").exists()
    finally:
        path.write_text(good, encoding="utf-8")


def test_choose_curation_prefers_the_projects_own(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "bank").mkdir()
    (tmp_path / "bank" / "curation.toml").write_text('model = "b"\n[sprite.0]\nname = "x"\n')
    (tmp_path / "p" / "curation.toml").write_text(template_text("b"))
    assert choose_curation(tmp_path / "p", tmp_path / "bank").names == {0: "x"}     # own file says nothing
    (tmp_path / "p" / "curation.toml").write_text('model = "b"\n[sprite.0]\nname = "y"\n')
    assert choose_curation(tmp_path / "p", tmp_path / "bank").names == {0: "y"}


# --- retraining from the curation -------------------------------------------------------------

def test_start_bank_sets_the_first_sprites():
    import torch
    from pipeline.core.config import config_from_dict
    from pipeline.models.base import DataShape, StartBank
    from pipeline.models.sprites.model import SpriteModel

    rng = np.random.default_rng(0)
    colours = rng.random((2, 1, 16, 16)).astype(np.float32)
    masks = rng.random((2, 1, 16, 16)).astype(np.float32)
    crops = torch.from_numpy(rng.integers(0, 255, (40, 1, 16, 16), dtype=np.uint8))
    for generator in ("pixels", "mlp"):
        cfg = config_from_dict({"model": {"sprites": 4, "generator": generator}, "ingest": {"size": 16, "channels": 1}},
                               preset="objects")
        model = SpriteModel.build(cfg, DataShape(1, 16, 40), crops, start=StartBank(colours, masks, None, ("a", "b")))
        got_colours, got_masks = model.sprite_images()
        assert torch.allclose(got_colours[:2], torch.from_numpy(colours), atol=1e-4), generator
        assert torch.allclose(got_masks[:2], torch.from_numpy(masks), atol=1e-4), generator
        assert not torch.allclose(got_colours[2:], got_colours[:2])        # the others: from the data
    cfg = config_from_dict({"model": {"sprites": 1}, "ingest": {"size": 16, "channels": 1}}, preset="objects")
    with pytest.raises(SpritesError, match="keeps 2 entries but model.sprites is 1: set model.sprites to 2"):
        SpriteModel.build(cfg, DataShape(1, 16, 40), crops, start=StartBank(colours, masks, None, ("a", "b")))


def test_retrain_from_the_curation(tmp_path):
    from pipeline.core.config import apply_overrides, render_toml

    project = init_project(tmp_path / "p", example="glyphs", count=64, sets=["train.epochs=1", "model.sprites=6", "train.threads=1"])
    with pytest.raises(SpritesError, match="names, merges or drops nothing"):
        quiet_run(project, "train.init=curated")
    quiet_run(project)
    with h5py.File(project.stage_path("train"), "r") as f:
        old = model_id(dict(f.attrs))
    path = project.root / "curation.toml"
    path.write_text(path.read_text(encoding="utf-8") + '\n[sprite.1]\nname = "one"\nmerge = [4]\n\n'
                    '[sprite.3]\nname = "three"\n\n[sprite.0]\ndrop = true\n', encoding="utf-8")
    user_text = path.read_text(encoding="utf-8")
    cfg = apply_overrides(project.config(), ["train.init=curated", "model.sprites=4"])   # saved: later runs stay fresh
    project.config_path.write_text(render_toml(cfg), encoding="utf-8")
    assert quiet_run(project) == ["train", "decompose", "report"]
    with h5py.File(project.stage_path("train"), "r") as f:
        attrs = dict(f.attrs)
    assert attrs["curated_from"] == old and model_id(attrs) != old
    # entries 1 (+4), 2, 3, 5 → new sprites 0..3, names carried over
    assert json.loads(attrs["curated_names_json"]) == {"0": "one", "1": "", "2": "three", "3": ""}
    assert json.loads(attrs["curated_members_json"]) == {"0": [1, 4], "1": [2], "2": [3], "3": [5]}
    text = path.read_text(encoding="utf-8")
    assert text.startswith(user_text) and f"as model {model_id(attrs)}" in text      # appended, never rewritten
    rows = list(csv.DictReader(open(project.exports_dir / "assignments.csv", newline="", encoding="utf-8")))
    assert all(r["name"] == {"0": "one", "2": "three"}.get(r["sprite"], "") for r in rows)
    assert quiet_run(project) == []                              # the note appended changes nothing
    assert (project.cache_dir / "curated_start.h5").exists()
    assert quiet_run(project, "train.seed=3") == ["train", "decompose", "report"]   # reruns from the kept start
    path.write_text(text + '\n[sprite.5]\nname = "five"\n', encoding="utf-8")
    assert stage_status(project, project.config(), "train", stages.STAGES).state == "stale"
