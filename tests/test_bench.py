"""`sprites bench`: the commands run and report their figures (tiny settings; not benchmarks)."""

from __future__ import annotations

import json

import pytest

from pipeline.evaluation.bench import PRESET_CASES, SPEED_CASES, _prepare_dir, case_config, ingest_bench, quality_bench
from pipeline.cli import cli
from pipeline.errors import SpritesError
from pipeline.examples import EXAMPLES
import stages


def test_speed_cases_follow_the_reference_settings():
    assert set(PRESET_CASES["all"]) == set(SPEED_CASES)
    clu = case_config(SPEED_CASES["clustering-28"])
    assert clu.model.transforms == ["color", "projective", "tps"] and clu.model.sprites == 10
    assert clu.ingest.channels == 1 and clu.ingest.size == 28 and clu.model.layers == 1
    for case, example in (("tetrominoes", "tetrominoes"), ("multi-dsprites", "multi-dsprites"), ("objects-64", "coins")):
        cfg = case_config(SPEED_CASES[case])
        assert cfg.preset == EXAMPLES[example].preset
        for key, value in EXAMPLES[example].config["model"].items():
            assert getattr(cfg.model, key) == value, (case, key)
        assert cfg.ingest.size == EXAMPLES[example].size
    assert SPEED_CASES["objects-64"].reference is None


def test_cli_bench_speed(cli_runner, tmp_path):
    out = tmp_path / "speed.json"
    result = cli_runner.invoke(cli, ["bench", "speed", "--preset", "clustering", "--steps", "1", "--warmup", "1",
                                     "--batch", "8", "--decompose-steps", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "img/s" in result.output and "clustering-28" in result.output and "threads" in result.output
    data = json.loads(out.read_text())
    (case,) = data["cases"]
    assert case["case"] == "clustering-28" and case["img_per_s"] > 0 and case["reference_img_per_s"] == 134
    assert case["decompose_crops_per_s"] > 0 and case["peak_rss_mb"] > 0
    assert data["threads"] >= 1 and data["torch"]


def test_bench_dir_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(SpritesError, match="not made by `sprites bench`"):
        _prepare_dir(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.txt").exists()
    _prepare_dir(tmp_path / "bench")      # new → made and marked
    (tmp_path / "bench" / "old").write_text("x")
    _prepare_dir(tmp_path / "bench")      # marked → emptied
    assert not (tmp_path / "bench" / "old").exists()


def test_quality_bench_tiny(tmp_path):
    line = quality_bench("glyphs", stages=stages.STAGES, minutes=0.02, count=40, directory=tmp_path / "bq",
                         sets=["train.batch_size=16"], log=lambda *a: None, progress=False)
    assert line["example"] == "glyphs" and line["count"] == 40
    assert 0 <= line["acc"] <= 1 and 0 <= line["nmi"] <= 1
    assert line["wall_s"] > 0 and line["peak_rss_mb"] > 0
    saved = json.loads((tmp_path / "bq" / "exports" / "bench.json").read_text())
    assert saved["acc"] == line["acc"]
    with pytest.raises(SpritesError, match="unknown example"):
        quality_bench("nope", directory=tmp_path / "x", log=lambda *a: None)


def test_ingest_bench_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the generated collection stays in tmp_path
    r = ingest_bench(count=12, size=40, crop=16, directory=tmp_path / "proj", log=lambda *a: None)
    assert r["count"] == 12 and r["images_per_s"] > 0 and r["stage_s"] is not None
    assert r["peak_rss_largest_process_mb"] > 0 and r["peak_rss_tree_mb"] > 0


def test_cli_bench_speed_variants_in_one_run(cli_runner, tmp_path):
    out = tmp_path / "speed.json"
    result = cli_runner.invoke(cli, ["bench", "speed", "--preset", "clustering", "--steps", "1", "--warmup", "1",
                                     "--batch", "8", "--decompose-steps", "0", "--variant", "eager",
                                     "--variant", "channels-last", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "clustering-28 [channels-last]" in result.output
    cases = json.loads(out.read_text())["cases"]
    assert [c["variant"] for c in cases] == ["eager", "channels-last"]
    assert all(c["img_per_s"] > 0 and c["compile_s"] is None for c in cases)


def test_bench_speed_unknown_variant():
    from pipeline.evaluation.bench import speed_bench
    with pytest.raises(SpritesError, match="unknown variant 'fast'"):
        speed_bench("clustering", steps=1, warmup=0, variants=("fast",), log=lambda m: None)


def test_cli_bench_speed_with_model_overrides_in_one_run(cli_runner, tmp_path):
    out = tmp_path / "speed.json"
    result = cli_runner.invoke(cli, ["bench", "speed", "--preset", "clustering", "--steps", "1", "--warmup", "1",
                                     "--batch", "8", "--decompose-steps", "0",
                                     "--set", "model.selection_downsample=2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "clustering-28 [selection_downsample=2]" in result.output
    cases = json.loads(out.read_text())["cases"]
    assert [c["case"] for c in cases] == ["clustering-28", "clustering-28 [selection_downsample=2]"]
    assert all(c["img_per_s"] > 0 for c in cases)


@pytest.mark.parametrize("override, message", [
    ("train.lr=1", "model keys only"),
    ("model.sprite=3", "sprite"),
    ("model.selection_downsample=3", "selection_downsample"),
])
def test_cli_bench_speed_bad_override_fails_before_timing(cli_runner, override, message):
    result = cli_runner.invoke(cli, ["bench", "speed", "--preset", "clustering", "--set", override])
    assert result.exit_code != 0 and message in result.output and "img/s" not in result.output
    assert "Traceback" not in result.output


def test_bench_speed_skips_a_case_the_override_does_not_suit(monkeypatch):
    # scenes: selection_downsample = 2 suits multi-dsprites (64 px) but not tetrominoes (35 px)
    from pipeline.evaluation import bench
    timed = []
    monkeypatch.setattr(bench, "speed_case", lambda case, **kw: timed.append(case.name) or {
        "case": case.name, "img_per_s": 1.0, "s_per_iter": 1.0, "reference_img_per_s": None, "ratio": None,
        "peak_rss_mb": 1.0})
    lines = []
    result = bench.speed_bench("scenes", steps=1, warmup=0, log=lines.append, sets=("model.selection_downsample=2",))
    assert timed == ["tetrominoes", "multi-dsprites", "multi-dsprites [selection_downsample=2]"]
    assert result["skipped"][0]["case"] == "tetrominoes [selection_downsample=2]"
    assert any("skipped" in line and "35 px" in line for line in lines)
