"""pipeline.core.config: parsing --set values, typing, validation, presets, loading and rendering."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from pipeline.core.config import (
    PRESETS,
    SECTIONS,
    Config,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
    render_toml,
)
from pipeline.errors import SpritesError


class TestParseOverride:
    @pytest.mark.parametrize("text, expected", [
        ("model.sprites=12", ("model", "sprites", 12)),
        ("train.lr=0.01", ("train", "lr", 0.01)),
        ("model.background=false", ("model", "background", False)),
        ('model.transforms=["color","tps"]', ("model", "transforms", ["color", "tps"])),
        ("model.curriculum=[]", ("model", "curriculum", [])),
        ('ingest.images="scans/a b"', ("ingest", "images", "scans/a b")),
        (" model.sprites = 3 ", ("model", "sprites", 3)),
    ])
    def test_toml_literals(self, text, expected):
        assert parse_override(text) == expected

    def test_bare_word_is_a_string(self):
        assert parse_override("ingest.pad=white") == ("ingest", "pad", "white")
        assert parse_override("ingest.images=scans/**/*.png") == ("ingest", "images", "scans/**/*.png")

    def test_value_may_contain_equals(self):
        assert parse_override("ingest.images=a=b") == ("ingest", "images", "a=b")

    @pytest.mark.parametrize("text", ["sprites=12", "model.sprites", "nonsense"])
    def test_malformed(self, text):
        with pytest.raises(SpritesError, match="section.key=value"):
            parse_override(text)


class TestApplyOverrides:
    def test_int_becomes_float(self):
        cfg = apply_overrides(Config(), ["train.lr=1", "train.minutes=2"])
        assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
        assert isinstance(cfg.train.minutes, float)

    def test_float_lists_accept_ints(self):
        cfg = apply_overrides(Config(), ["model.transforms=[\"color\",\"tps\"]", "model.curriculum=[0, 2.5]"])
        assert cfg.model.transforms == ["color", "tps"]
        assert cfg.model.curriculum == [0.0, 2.5]
        assert all(isinstance(v, float) for v in cfg.model.curriculum)

    def test_does_not_mutate_input(self):
        cfg = Config()
        new = apply_overrides(cfg, ["model.sprites=3", "ingest.size=32"])
        assert (new.model.sprites, new.ingest.size) == (3, 32)
        assert (cfg.model.sprites, cfg.ingest.size) == (10, 64)

    def test_list_defaults_are_not_shared(self):
        a, b = Config(), Config()
        a.model.transforms.append("position")
        assert "position" not in b.model.transforms

    @pytest.mark.parametrize("value", ["yes", "1", "0", "True"])
    def test_bool_is_strict(self, value):
        with pytest.raises(SpritesError, match=r"model\.background must be true or false"):
            apply_overrides(Config(), [f"model.background={value}"])

    @pytest.mark.parametrize("value", ["abc", "3.5", "true"])
    def test_int_is_strict(self, value):
        with pytest.raises(SpritesError, match=r"ingest\.size must be a whole number"):
            apply_overrides(Config(), [f"ingest.size={value}"])

    def test_string_rejects_number(self):
        with pytest.raises(SpritesError, match=r"ingest\.pad"):
            apply_overrides(Config(), ["ingest.pad=3"])

    def test_list_required(self):
        with pytest.raises(SpritesError, match=r"model\.transforms must be a list"):
            apply_overrides(Config(), ["model.transforms=color"])

    def test_list_items_typed(self):
        with pytest.raises(SpritesError, match=r"model\.curriculum"):
            apply_overrides(Config(), ['model.curriculum=["a", "b", "c"]'])

    def test_unknown_key_suggests_closest(self):
        with pytest.raises(SpritesError, match=r"unknown key 'model\.sprits'.*'model\.sprites'"):
            apply_overrides(Config(), ["model.sprits=3"])

    def test_unknown_section_suggests_closest(self):
        with pytest.raises(SpritesError, match=r"unknown section 'modle'.*'model'"):
            apply_overrides(Config(), ["modle.sprites=3"])

    def test_bad_choice_lists_choices(self):
        with pytest.raises(SpritesError, match=r"model\.occlusion = 'sometimes' is not allowed.*fixed, predicted"):
            apply_overrides(Config(), ["model.occlusion=sometimes"])

    def test_choice_suggests_closest(self):
        with pytest.raises(SpritesError, match="Did you mean 'white'"):
            apply_overrides(Config(), ["ingest.pad=whte"])


class TestValidate:
    def test_curriculum_length_mismatch(self):
        with pytest.raises(SpritesError, match="model.curriculum has 3 entries but model.transforms has only 2"):
            apply_overrides(Config(), ['model.transforms=["color","affine"]', "model.curriculum=[0, 1, 2]"])

    def test_sprite_size_larger_than_crops(self):
        with pytest.raises(SpritesError, match=r"model\.sprite_size = 40 is larger than the crops \(ingest\.size = 32\)"):
            apply_overrides(Config(), ["ingest.size=32", "model.sprite_size=40"])

    def test_sprite_size_equal_is_fine(self):
        assert apply_overrides(Config(), ["ingest.size=32", "model.sprite_size=32"]).model.sprite_size == 32

    @pytest.mark.parametrize("key", ["model.sprites", "model.layers", "train.batch_size"])
    def test_positive(self, key):
        with pytest.raises(SpritesError, match=key.replace(".", r"\.") + " must be at least 1"):
            apply_overrides(Config(), [f"{key}=0"])

    def test_tiny_size(self):
        with pytest.raises(SpritesError, match=r"ingest\.size must be at least 8; got 4"):
            apply_overrides(Config(), ["ingest.size=4"])

    @pytest.mark.parametrize("override, message", [
        ("train.minutes=-1", r"train\.minutes must be 0 or more; got -1"),
        ("train.epochs=0", r"train\.epochs must be at least 1; got 0"),
        ("train.lr=0", r"train\.lr must be above 0"),
        ("train.sprite_lr=-1e-3", r"train\.sprite_lr must be 0 or more"),
        ("train.gamma=1.5", r"train\.gamma must be in \(0, 1\]"),
        ("train.milestones=[10, -2]", r"each value of train\.milestones must be 0 or more; got -2"),
        ("train.minutes=nan", r"train\.minutes must be a finite number"),
        ("train.minutes=inf", r"train\.minutes must be a finite number"),
        ("model.reassign_threshold=-0.1", r"model\.reassign_threshold must be 0 or more"),
        ("model.reassign_duplicate=1.5", r"model\.reassign_duplicate must be between 0 and 1"),
        ("model.empty_penalty=-1", r"model\.empty_penalty must be 0 or more"),
        ("model.mask_init_elongation=0.5", r"model\.mask_init_elongation must be at least 1"),
        ("model.position_scale=0", r"model\.position_scale must be above 0"),
        ("ingest.iiif_timeout=0", r"ingest\.iiif_timeout must be above 0"),
        ("report.reconstructions=1000", r"report\.reconstructions must be between 0 and 256"),
        ("model.kind=redo", r"model\.kind = 'redo' is not a model kind: choose one of sprites"),
    ])
    def test_numbers_out_of_range_are_refused(self, override, message):
        with pytest.raises(SpritesError, match=message):
            apply_overrides(Config(), [override])

    def test_every_numeric_key_has_a_range(self):
        import dataclasses
        import typing
        from pipeline.core.config import SECTIONS
        for section, cls in SECTIONS.items():
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                numeric = hints[f.name] in (int, float, list[int], list[float])
                if numeric and not f.metadata.get("choices"):
                    assert f.metadata.get("low") is not None, f"{section}.{f.name} has no range"

    def test_added_key_at_its_default_stays_out_of_the_fingerprint(self):
        cfg = Config()
        assert "kind" not in cfg.section("model", results_only=True)
        assert "kind" in cfg.section("model")

    def test_even_morpho_kernel(self):
        with pytest.raises(SpritesError, match="morpho_kernel must be odd"):
            apply_overrides(Config(), ["model.morpho_kernel=4"])

    def test_opaque_needs_one_layer_without_background(self):
        with pytest.raises(SpritesError, match="model.transparent = false"):
            apply_overrides(Config(), ["model.transparent=false"])


class TestPresets:
    def test_presets_differ(self):
        cfgs = {p: config_from_dict({}, preset=p) for p in PRESETS}
        assert cfgs["clustering"].model.transparent is False
        assert cfgs["clustering"].model.background is False
        assert cfgs["objects"].model.transparent is True and cfgs["objects"].model.layers == 1
        assert cfgs["scenes"].model.layers > 1 and cfgs["scenes"].model.transforms == []
        dicts = [c.to_dict() for c in cfgs.values()]
        assert all(a != b for i, a in enumerate(dicts) for b in dicts[i + 1:])

    def test_every_preset_is_valid_and_recorded(self):
        for name in PRESETS:
            cfg = config_from_dict({}, preset=name)
            assert cfg.preset == name

    def test_default_preset_is_objects(self):
        assert config_from_dict({}).preset == "objects"

    def test_file_overrides_preset(self):
        cfg = config_from_dict({"preset": "scenes", "model": {"layers": 2, "occlusion": "predicted"}})
        assert cfg.model.layers == 2 and cfg.model.occlusion == "predicted"


class TestPresetRules:
    """The presets derive what the examples learned from the data's shape (crop size S, layers L)."""

    @pytest.mark.parametrize("S, L, side", [(35, 3, 24), (64, 5, 36), (128, 6, 64), (64, 1, 64), (16, 8, 8)])
    def test_sprite_side_follows_the_objects_per_crop(self, S, L, side):
        from pipeline.core.presets import sprite_side
        assert sprite_side(S, L) == side

    @pytest.mark.parametrize("S, f", [(35, 1), (64, 4), (32, 2), (48, 2), (28, 1), (128, 4)])
    def test_selection_scale_keeps_16_px(self, S, f):
        from pipeline.core.presets import selection_scale
        assert selection_scale(S) == f

    def test_few_and_many_layers(self):
        few = config_from_dict({"model": {"layers": 3}, "ingest": {"size": 35}}, preset="scenes").model
        many = config_from_dict({"model": {"layers": 5}, "ingest": {"size": 64}}, preset="scenes").model
        assert (few.empty_sprite, few.occlusion, few.greedy_iterations, few.encoder_pool) == (False, "fixed", 1, 1)
        assert (many.empty_sprite, many.occlusion, many.greedy_iterations, many.encoder_pool) == (True, "predicted", 3, 4)
        assert (few.sprite_size, few.selection_downsample, many.sprite_size, many.selection_downsample) == (24, 1, 36, 4)
        assert many.background_init == "constant" and few.background_init == "mean"

    def test_given_keys_are_never_derived(self):
        m = config_from_dict({"model": {"layers": 5, "empty_sprite": False, "sprite_size": 20}}, preset="scenes").model
        assert (m.empty_sprite, m.sprite_size, m.occlusion) == (False, 20, "predicted")

    def test_init_derives_from_what_it_is_given_and_writes_it(self, tmp_path):
        from pipeline.core.project import init_project
        project = init_project(tmp_path / "p", preset="scenes", sets=["model.layers=5", "ingest.size=64"])
        text = project.config_path.read_text(encoding="utf-8")
        assert "empty_sprite = true" in text and "sprite_size = 36" in text and 'occlusion = "predicted"' in text
        cfg = project.config()   # the written file reads back as it was resolved
        assert cfg.model.sprite_size == 36 and cfg.model.empty_sprite is True

    def test_the_examples_carry_only_k_l_background_and_size(self):
        from pipeline.examples import EXAMPLES
        for name, ex in EXAMPLES.items():
            assert set(ex.config.get("model", {})) <= {"sprites", "layers", "background"}, name
            assert set(ex.config) <= {"model", "ingest"}, name

    def test_unknown_preset(self):
        with pytest.raises(SpritesError, match="unknown preset 'cluster'.*'clustering'"):
            config_from_dict({"preset": "cluster"})

    def test_section_must_be_table(self):
        with pytest.raises(SpritesError, match=r"\[model\] must be a table"):
            config_from_dict({"model": 3})


class TestSection:
    def test_results_only_drops_run_only_keys(self):
        cfg = Config()
        full, results = cfg.section("train"), cfg.section("train", results_only=True)
        assert {"device", "threads", "checkpoint_minutes"} <= set(full)
        assert not {"device", "threads", "checkpoint_minutes"} & set(results)
        assert results["lr"] == full["lr"]
        assert cfg.section("decompose", results_only=True) == {}


class TestLoadAndRender:
    def test_round_trip(self, tmp_path):
        cfg = apply_overrides(config_from_dict({}, preset="clustering"),
                              ["model.sprites=7", 'ingest.images="a \\"quoted\\" ß folder"', "train.lr=0.5"])
        path = tmp_path / "sprites.toml"
        path.write_text(render_toml(cfg), encoding="utf-8")
        assert load_config(path) == cfg

    def test_render_lists_every_key_with_a_comment(self):
        lines = render_toml(Config()).splitlines()
        for section, cls in SECTIONS.items():
            start = lines.index(f"[{section}]")
            for f in dataclasses.fields(cls):
                i = next(j for j in range(start, len(lines)) if lines[j].startswith(f"{f.name} = "))
                assert lines[i - 1].startswith("# ") and len(lines[i - 1]) > 4, f.name
        data = tomllib.loads("\n".join(lines))
        assert {s: set(v) for s, v in data.items() if isinstance(v, dict)} == {
            s: {f.name for f in dataclasses.fields(c)} for s, c in SECTIONS.items()}

    def test_missing_file(self, tmp_path):
        with pytest.raises(SpritesError, match="sprites init"):
            load_config(tmp_path / "nope.toml")

    def test_syntax_error(self, tmp_path):
        path = tmp_path / "sprites.toml"
        path.write_text("[model]\nsprites = = 3\n", encoding="utf-8")
        with pytest.raises(SpritesError, match="is not valid TOML.*line 2"):
            load_config(path)

    def test_unknown_key_in_file(self, tmp_path):
        path = tmp_path / "sprites.toml"
        path.write_text("[train]\nepoch = 3\n", encoding="utf-8")
        with pytest.raises(SpritesError, match=r"'train\.epochs'"):
            load_config(path)
