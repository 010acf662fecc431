"""pipeline.core.runner: fingerprints, fresh/stale/missing with reasons, skipping, forcing, and a real
SIGKILL in the middle of a stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types

import h5py
import pytest

import stages
from conftest import TINY_COUNT, png_bytes, synthetic_image
from pipeline.errors import SpritesError
from pipeline.core.runner import resolve_targets, run_stages, stage_status
from pipeline.core.store import stage_attrs, write_stage


def _state(project, *sets, stage="ingest"):
    st = stage_status(project, project.config(list(sets)), stage, stages.STAGES)
    return st.state, st.reasons


def _fake_stage(calls: list, version: int = 1) -> types.ModuleType:
    """A downstream stage reading the `train` section, writing an empty artifact."""
    mod = types.ModuleType("fake")
    mod.NAME, mod.DEPS, mod.PARAMS, mod.VERSION = "fake", ("ingest",), ("train",), version

    def run(ctx):
        calls.append(ctx.fingerprint)
        with write_stage(ctx.output, ctx.meta) as f:
            f["ok"] = 1
    mod.run = run
    return mod


@pytest.fixture
def with_fake(monkeypatch):
    """Replace the registry by (ingest, fake); returns the list of the fake stage's runs."""
    calls: list = []
    monkeypatch.setattr(stages, "STAGES", (stages.ingest, _fake_stage(calls)))
    return calls


@pytest.fixture
def ingested(project, quiet):
    run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
    return project


class TestStatus:
    def test_missing_then_fresh(self, project, quiet):
        assert _state(project) == ("missing", ["never run (or its last run did not finish)"])
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet)
        assert _state(project) == ("fresh", [])

    def test_config_change_makes_stale(self, ingested):
        state, reasons = _state(ingested, "ingest.size=32")
        assert state == "stale" and reasons == ["config ingest.size 16 → 32"]
        assert _state(ingested) == ("fresh", [])  # --set is for one run only

    def test_other_sections_do_not_touch_ingest(self, ingested):
        assert _state(ingested, "train.lr=0.5", "model.sprites=3", "train.threads=1",
                      "train.device=cpu")[0] == "fresh"

    def test_sprites_toml_edit_makes_stale(self, ingested):
        path = ingested.config_path
        path.write_text(path.read_text(encoding="utf-8").replace('pad = "border"', 'pad = "white"'), encoding="utf-8")
        assert _state(ingested) == ("stale", ["config ingest.pad 'border' → 'white'"])

    def test_added_image(self, ingested, tiny_collection):
        synthetic_image(20, 20, 99).save(tiny_collection / "book2" / "new.png")
        state, reasons = _state(ingested)
        assert state == "stale" and reasons == ["images changed (1 added, 0 removed)"]

    def test_removed_image(self, ingested, tiny_collection):
        (tiny_collection / "book1" / "img01.png").unlink()
        assert _state(ingested) == ("stale", ["images changed (0 added, 1 removed)"])

    def test_modified_image(self, ingested, tiny_collection):
        path = tiny_collection / "img00.png"
        path.write_bytes(png_bytes(synthetic_image(25, 25, 1234)))
        state, reasons = _state(ingested)
        assert state == "stale" and "files modified" in reasons[0]

    def test_non_image_file_does_not_make_stale(self, ingested, tiny_collection):
        (tiny_collection / "notes.txt").write_text("hello")
        assert _state(ingested)[0] == "fresh"

    def test_code_version(self, ingested, monkeypatch):
        monkeypatch.setattr(stages.ingest, "VERSION", stages.ingest.VERSION + 1)
        state, reasons = _state(ingested)
        assert state == "stale" and reasons == [f"code version 1 → {stages.ingest.VERSION}"]

    def test_incomplete_artifact_is_missing(self, ingested):
        with h5py.File(ingested.stage_path("ingest"), "a") as f:
            del f.attrs["complete"]
        assert _state(ingested)[0] == "missing"

    def test_corrupt_artifact_is_missing(self, ingested):
        ingested.stage_path("ingest").write_bytes(b"\x89HDF\r\n garbage")
        assert _state(ingested)[0] == "missing"

    def test_stored_fingerprint_matches_expected(self, ingested):
        cfg = ingested.config()
        st = stage_status(ingested, cfg, "ingest", stages.STAGES)
        assert st.fingerprint == stage_attrs(ingested.stage_path("ingest"))["fingerprint"]


class TestRun:
    def test_second_run_skips(self, project, monkeypatch):
        calls = []
        real = stages.ingest.run

        def spy(ctx):
            calls.append(ctx.fingerprint)
            real(ctx)
        monkeypatch.setattr(stages.ingest, "run", spy)
        log = []
        assert run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, log=log.append, progress=False) == ["ingest"]
        assert len(calls) == 1
        log.clear()
        assert run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, log=log.append, progress=False) == []
        assert len(calls) == 1
        assert "ingest: up to date, skipped" in log and any("nothing to do" in line for line in log)

    def test_force_reruns(self, ingested, quiet):
        before = stage_attrs(ingested.stage_path("ingest"))["run_id"]
        assert run_stages(ingested, ingested.config(), ["ingest"], stages=stages.STAGES, force=True, **quiet) == ["ingest"]
        after = stage_attrs(ingested.stage_path("ingest"))
        assert after["run_id"] != before
        assert _state(ingested) == ("fresh", [])

    def test_override_run_then_plain_run_is_stale_again(self, ingested, quiet):
        run_stages(ingested, ingested.config(["ingest.size=8"]), ["ingest"], stages=stages.STAGES, **quiet)
        with h5py.File(ingested.stage_path("ingest"), "r") as f:
            assert f["crops"].shape == (TINY_COUNT, 3, 8, 8)
        assert _state(ingested) == ("stale", ["config ingest.size 8 → 16"])

    def test_failing_stage_keeps_previous_artifact(self, ingested, monkeypatch, quiet):
        before = ingested.stage_path("ingest").read_bytes()

        def broken(ctx):
            with write_stage(ctx.output, ctx.meta):
                raise SpritesError("broken on purpose")
        monkeypatch.setattr(stages.ingest, "run", broken)
        with pytest.raises(SpritesError, match="broken on purpose"):
            run_stages(ingested, ingested.config(["ingest.size=8"]), ["ingest"], stages=stages.STAGES, **quiet)
        assert ingested.stage_path("ingest").read_bytes() == before
        assert not list(ingested.cache_dir.glob("*.tmp-*"))

    def test_unknown_stage(self, project, quiet):
        with pytest.raises(SpritesError, match="unknown stage 'ingset'.*'ingest'"):
            run_stages(project, project.config(), ["ingset"], stages=stages.STAGES, **quiet)

    def test_resolve_targets_adds_upstream_in_order(self, with_fake):
        assert resolve_targets(["fake"], stages.STAGES) == ["ingest", "fake"]
        assert resolve_targets(["all"], stages.STAGES) == resolve_targets([], stages.STAGES) == ["ingest", "fake"]
        assert resolve_targets(["fake", "ingest"], stages.STAGES) == ["ingest", "fake"]


class TestDownstream:
    """Fingerprints across two stages, with a stand-in downstream stage reading [train]."""

    def test_missing_upstream(self, project, with_fake):
        state, reasons = _state(project, stage="fake")
        assert state == "missing" and reasons == ["upstream ingest has not run yet"]

    def test_runs_upstream_first(self, project, with_fake, quiet):
        assert run_stages(project, project.config(), ["fake"], stages=stages.STAGES, **quiet) == ["ingest", "fake"]
        assert _state(project, stage="fake") == ("fresh", [])
        assert run_stages(project, project.config(), ["all"], stages=stages.STAGES, **quiet) == []

    def test_train_key_changes_only_downstream(self, project, with_fake, quiet):
        run_stages(project, project.config(), ["all"], stages=stages.STAGES, **quiet)
        assert _state(project, "train.lr=0.5", stage="ingest") == ("fresh", [])
        assert _state(project, "train.lr=0.5", stage="fake") == ("stale", ["config train.lr 0.001 → 0.5"])

    def test_run_only_keys_change_nothing(self, project, with_fake, quiet):
        run_stages(project, project.config(), ["all"], stages=stages.STAGES, **quiet)
        sets = ["train.threads=1", "train.device=cpu", "train.checkpoint_minutes=9"]
        assert _state(project, *sets, stage="fake") == ("fresh", [])
        assert run_stages(project, project.config(sets), ["all"], stages=stages.STAGES, **quiet) == []
        assert len(with_fake) == 1

    def test_forced_upstream_makes_downstream_stale(self, project, with_fake, quiet):
        run_stages(project, project.config(), ["all"], stages=stages.STAGES, **quiet)
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, force=True, **quiet)
        assert _state(project, stage="fake") == ("stale", ["upstream ingest was rerun"])
        assert run_stages(project, project.config(), ["all"], stages=stages.STAGES, **quiet) == ["fake"]
        assert len(with_fake) == 2

    def test_upstream_config_change_reruns_both(self, project, with_fake, quiet):
        run_stages(project, project.config(), ["all"], stages=stages.STAGES, **quiet)
        assert run_stages(project, project.config(["ingest.size=8"]), ["fake"], stages=stages.STAGES, **quiet) == ["ingest", "fake"]

    def test_force_on_one_stage_only(self, project, with_fake, quiet):
        # `sprites run report --force` must not retrain: only the named stage reruns, its fresh upstreams stay
        run_stages(project, project.config(), ["all"], stages=stages.STAGES, **quiet)
        assert run_stages(project, project.config(), ["fake"], stages=stages.STAGES, force=True, **quiet) == ["fake"]
        assert run_stages(project, project.config(), ["all"], stages=stages.STAGES, force=True, **quiet) == ["ingest", "fake"]


# --- a real SIGKILL in the middle of ingest ------------------------------------------------------

KILL_COUNT = 3000


@pytest.fixture(scope="session")
def big_collection(tmp_path_factory):
    """3,000 PNG files of 256 × 256 px in 10 folders (16 distinct images, written as bytes: fast)."""
    root = tmp_path_factory.mktemp("big") / "images"
    blobs = [png_bytes(synthetic_image(256, 256, s), compress_level=1) for s in range(16)]
    for i in range(KILL_COUNT):
        folder = root / f"d{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:05d}.png").write_bytes(blobs[i % 16])
    return root


@pytest.mark.slow
def test_sigkill_mid_ingest_leaves_no_artifact_and_rerun_completes(make_project, big_collection, quiet):
    project = make_project(big_collection, "ingest.size=32")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "ingest", "--project", str(project.root), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        temps = []
        while not temps and proc.poll() is None and time.monotonic() < deadline:
            temps = list(project.cache_dir.glob("ingest.h5.tmp-*")) if project.cache_dir.exists() else []
            time.sleep(0.01)
        time.sleep(0.3)  # let it write a few batches
        assert temps and proc.poll() is None, "ingest finished (or never started) before it could be killed"
    finally:
        # The whole session: the stage's worker processes go with it.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert temps[0].name == f"ingest.h5.tmp-{proc.pid}"
    assert temps[0].exists()
    assert not project.stage_path("ingest").exists()
    assert stage_attrs(project.stage_path("ingest")) is None
    assert _state(project)[0] == "missing"

    assert run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **quiet) == ["ingest"]
    assert _state(project) == ("fresh", [])
    assert int(stage_attrs(project.stage_path("ingest"))["count"]) == KILL_COUNT
    with h5py.File(project.stage_path("ingest"), "r") as f:
        assert f["crops"].shape == (KILL_COUNT, 3, 32, 32)
    assert not temps[0].exists()
    assert not list(project.cache_dir.glob("*.tmp-*"))
