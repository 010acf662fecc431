"""pipeline.cli: `sprites init | run | status` through click's CliRunner on tmp_path projects."""

from __future__ import annotations

import dataclasses
import tomllib

import h5py
import pytest

import stages
from conftest import TINY_COUNT, synthetic_image
from pipeline import __version__
from pipeline.cli import cli
from pipeline.core.config import SECTIONS


def ok(runner, *args):
    result = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def fails(runner, *args, match: str):
    """A user error: non-zero exit through SystemExit, a message containing `match`, no traceback."""
    result = runner.invoke(cli, [str(a) for a in args])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert match in result.output, result.output
    return result


def _status_lines(runner, project, *extra) -> dict[str, str]:
    out = ok(runner, "status", "--project", project, *extra).output
    return {line.split()[0]: line for line in out.splitlines() if line.strip()}


@pytest.fixture
def proj(tmp_path, tiny_collection, cli_runner):
    """`sprites init` over the tiny collection with the default settings."""
    root = tmp_path / "proj"
    ok(cli_runner, "init", root, "--images", tiny_collection)
    return root


class TestHelp:
    def test_group_help_lists_commands(self, cli_runner):
        out = ok(cli_runner, "--help").output
        for name in ("init", "run", "status"):
            assert name in out

    @pytest.mark.parametrize("command", sorted(cli.commands))
    def test_every_command_has_help(self, cli_runner, command):
        out = ok(cli_runner, command, "--help").output
        assert "Usage:" in out and cli.commands[command].help
        assert ok(cli_runner, command, "-h").output == out

    def test_version(self, cli_runner):
        assert __version__ in ok(cli_runner, "--version").output


class TestInit:
    def test_writes_commented_config_with_every_key(self, proj, tiny_collection):
        text = (proj / "sprites.toml").read_text(encoding="utf-8")
        data = tomllib.loads(text)
        lines = text.splitlines()
        for section, cls in SECTIONS.items():
            assert set(data[section]) == {f.name for f in dataclasses.fields(cls)}, section
            start = lines.index(f"[{section}]")
            for f in dataclasses.fields(cls):
                i = next(j for j in range(start, len(lines)) if lines[j].startswith(f"{f.name} = "))
                assert lines[i - 1].startswith("# "), f"{section}.{f.name} has no comment"
        assert data["preset"] == "objects"
        assert (proj / data["ingest"]["images"]).resolve() == tiny_collection.resolve()

    def test_prints_next_step(self, tmp_path, tiny_collection, cli_runner):
        out = ok(cli_runner, "init", tmp_path / "p", "--images", tiny_collection).output
        assert "created" in out and "sprites run all --project" in out

    def test_without_images_says_what_to_do(self, tmp_path, cli_runner):
        out = ok(cli_runner, "init", tmp_path / "p").output
        assert "set ingest.images" in out
        assert tomllib.loads((tmp_path / "p" / "sprites.toml").read_text())["ingest"]["images"] == "images"

    def test_refuses_overwrite_without_force(self, proj, tiny_collection, cli_runner):
        (proj / "sprites.toml").write_text("# mine\n", encoding="utf-8")
        fails(cli_runner, "init", proj, "--images", tiny_collection, match="--force")
        assert (proj / "sprites.toml").read_text(encoding="utf-8") == "# mine\n"
        ok(cli_runner, "init", proj, "--images", tiny_collection, "--force", "--set", "model.sprites=4")
        assert tomllib.loads((proj / "sprites.toml").read_text())["model"]["sprites"] == 4

    def test_preset_clustering(self, tmp_path, tiny_collection, cli_runner):
        ok(cli_runner, "init", tmp_path / "c", "--images", tiny_collection, "--preset", "clustering")
        data = tomllib.loads((tmp_path / "c" / "sprites.toml").read_text())
        assert data["preset"] == "clustering"
        assert data["model"]["transparent"] is False and data["model"]["background"] is False
        ok(cli_runner, "init", tmp_path / "s", "--images", tiny_collection, "--preset", "scenes")
        scenes = tomllib.loads((tmp_path / "s" / "sprites.toml").read_text())
        assert scenes["model"]["layers"] > 1 and scenes["model"] != data["model"]

    def test_bad_preset(self, tmp_path, cli_runner):
        fails(cli_runner, "init", tmp_path / "p", "--preset", "clusters", match="clustering")

    @pytest.mark.parametrize("override, message", [
        ("train.minutes=-1", "train.minutes must be 0 or more; got -1"),
        ("train.lr=0", "train.lr must be above 0; got 0"),
        ("model.reassign_threshold=-1", "model.reassign_threshold must be 0 or more"),
    ])
    def test_out_of_range_number_is_one_line_and_writes_nothing(self, tmp_path, cli_runner, override, message):
        result = cli_runner.invoke(cli, ["init", str(tmp_path / "x"), "--example", "glyphs", "--count", "5",
                                         "--set", override])
        assert result.exit_code != 0 and message in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "x" / "sprites.toml").exists()

    def test_set_is_written(self, tmp_path, tiny_collection, cli_runner):
        ok(cli_runner, "init", tmp_path / "p", "--images", tiny_collection,
           "--set", "model.sprites=12", "--set", 'model.transforms=["color","tps"]', "--set", "model.curriculum=[]",
           "--set", "train.lr=1")
        data = tomllib.loads((tmp_path / "p" / "sprites.toml").read_text())
        assert data["model"]["sprites"] == 12
        assert data["model"]["transforms"] == ["color", "tps"]
        assert data["train"]["lr"] == 1.0 and isinstance(data["train"]["lr"], float)

    @pytest.mark.parametrize("setting, message", [
        ("model.sprits=3", "model.sprites"),
        ("ingest.size=abc", "ingest.size must be a whole number"),
        ("modle.sprites=3", "unknown section 'modle'"),
        ("model.occlusion=sometimes", "choose one of fixed, predicted"),
        ("model.background=yes", "model.background must be true or false"),
        ("model.curriculum=[0, 1, 2, 3, 4]", "model.curriculum has 5 entries"),
        ("sprites=3", "section.key=value"),
    ])
    def test_bad_set_is_a_clear_error(self, tmp_path, tiny_collection, cli_runner, setting, message):
        fails(cli_runner, "init", tmp_path / "p", "--images", tiny_collection, "--set", setting, match=message)
        assert not (tmp_path / "p" / "sprites.toml").exists()

    def test_missing_images_folder(self, tmp_path, cli_runner):
        fails(cli_runner, "init", tmp_path / "p", "--images", tmp_path / "nowhere", match="no such folder")

    def test_glob_images(self, tmp_path, tiny_collection, cli_runner):
        ok(cli_runner, "init", tmp_path / "p", "--images", f"{tiny_collection}/book2/*.png")
        ok(cli_runner, "run", "ingest", "-p", tmp_path / "p", "-q")
        with h5py.File(tmp_path / "p" / "cache" / "ingest.h5", "r") as f:
            assert f["crops"].shape[0] == 4


class TestRunAndStatus:
    def test_run_twice_then_up_to_date(self, proj, cli_runner):
        out = ok(cli_runner, "run", "ingest", "--project", proj, "-q").output
        assert f"ingest: {TINY_COUNT} crops of 64×64 px" in out
        out = ok(cli_runner, "run", "ingest", "--project", proj, "-q").output
        assert "up to date" in out

    def test_status_fresh_missing_stale(self, proj, cli_runner):
        assert "ingest" in _status_lines(cli_runner, proj)
        assert _status_lines(cli_runner, proj)["ingest"].split()[1].startswith("missing")
        ok(cli_runner, "run", "ingest", "-p", proj, "-q")
        lines = _status_lines(cli_runner, proj)
        assert lines["ingest"].split()[1] == "fresh"
        assert set(lines) == {s.NAME for s in stages.STAGES}
        stale = _status_lines(cli_runner, proj, "--set", "ingest.size=32")["ingest"]
        assert "stale" in stale and "ingest.size 64 → 32" in stale

    def test_status_after_adding_an_image(self, proj, cli_runner, tiny_collection):
        ok(cli_runner, "run", "ingest", "-p", proj, "-q")
        synthetic_image(16, 16, 77).save(tiny_collection / "extra.png")
        assert "1 added" in _status_lines(cli_runner, proj)["ingest"]

    def test_run_set_is_for_this_run_only(self, proj, cli_runner):
        ok(cli_runner, "run", "ingest", "-p", proj, "-q", "--set", "ingest.size=32")
        with h5py.File(proj / "cache" / "ingest.h5", "r") as f:
            assert f["crops"].shape[-1] == 32
        assert tomllib.loads((proj / "sprites.toml").read_text())["ingest"]["size"] == 64
        assert "ingest.size 32 → 64" in _status_lines(cli_runner, proj)["ingest"]

    def test_force_reruns(self, proj, cli_runner, monkeypatch):
        ok(cli_runner, "run", "ingest", "-p", proj, "-q")
        calls = []
        real = stages.ingest.run
        monkeypatch.setattr(stages.ingest, "run", lambda ctx: (calls.append(1), real(ctx)))
        assert "up to date" in ok(cli_runner, "run", "ingest", "-p", proj, "-q").output
        out = ok(cli_runner, "run", "ingest", "-p", proj, "-q", "--force").output
        assert "running (forced)" in out and calls == [1]

    def test_default_project_is_cwd(self, proj, cli_runner, monkeypatch):
        monkeypatch.chdir(proj)
        ok(cli_runner, "run", "ingest", "-q")
        assert "fresh" in _status_lines(cli_runner, ".")["ingest"]

    def test_not_a_project(self, tmp_path, cli_runner):
        fails(cli_runner, "run", "ingest", "--project", tmp_path, match="is not a sprites project")
        fails(cli_runner, "status", "--project", tmp_path, match="sprites init")

    def test_toml_syntax_error(self, proj, cli_runner):
        path = proj / "sprites.toml"
        path.write_text(path.read_text(encoding="utf-8").replace("sprites = 10", "sprites = = 10"), encoding="utf-8")
        for command in ("run", "status"):
            fails(cli_runner, command, "--project", proj, match="is not valid TOML")

    def test_bad_value_in_file(self, proj, cli_runner):
        path = proj / "sprites.toml"
        path.write_text(path.read_text(encoding="utf-8").replace("size = 64", 'size = "big"'), encoding="utf-8")
        fails(cli_runner, "run", "ingest", "--project", proj, match="ingest.size")

    def test_run_bad_set(self, proj, cli_runner):
        fails(cli_runner, "run", "ingest", "-p", proj, "--set", "model.sprits=3", match="model.sprites")
        fails(cli_runner, "status", "-p", proj, "--set", "ingest.size=abc", match="ingest.size")

    def test_unknown_stage(self, proj, cli_runner):
        fails(cli_runner, "run", "ingset", "-p", proj, match="'ingest'")

    def test_stage_error_is_clear(self, tmp_path, cli_runner):
        (tmp_path / "empty").mkdir()
        ok(cli_runner, "init", tmp_path / "p", "--images", tmp_path / "empty")
        fails(cli_runner, "run", "ingest", "-p", tmp_path / "p", "-q", match="no images found")

    def test_interrupt(self, proj, cli_runner, monkeypatch):
        def interrupted(ctx):
            raise KeyboardInterrupt
        monkeypatch.setattr(stages.ingest, "run", interrupted)
        result = cli_runner.invoke(cli, ["run", "ingest", "-p", str(proj), "-q"])
        assert result.exit_code == 130 and "rerun the same command to resume" in result.output
        assert "Traceback" not in result.output
