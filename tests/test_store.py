"""pipeline.core.store: atomic stage files, attributes, temporaries of killed runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from pipeline import __version__
from pipeline.core.store import (
    clean_temporaries,
    read_stage,
    read_strings,
    stage_attrs,
    string_dataset,
    write_atomic_h5,
    write_stage,
)

META = {"stage": "demo", "fingerprint": "abc123", "params_json": {"demo": {"k": 1}},
        "deps_json": {}, "inputs_json": {"count": 2}, "config_json": {"ingest": {"size": 16}},
        "stage_version": 3}


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


class TestWriteStage:
    def test_attributes_round_trip(self, tmp_path):
        path = tmp_path / "cache" / "demo.h5"
        with write_stage(path, META) as f:
            f["x"] = np.arange(5)
        attrs = stage_attrs(path)
        assert attrs["stage"] == "demo" and attrs["fingerprint"] == "abc123"
        assert int(attrs["stage_version"]) == 3
        assert json.loads(attrs["params_json"]) == {"demo": {"k": 1}}
        assert json.loads(attrs["config_json"]) == {"ingest": {"size": 16}}
        assert attrs["sprites_version"] == __version__
        assert attrs["complete"] and attrs["created_utc"].endswith("Z")
        with read_stage(path) as f:
            assert f["x"][()].tolist() == [0, 1, 2, 3, 4]

    def test_exception_leaves_nothing(self, tmp_path):
        path = tmp_path / "demo.h5"
        with pytest.raises(RuntimeError, match="boom"):
            with write_stage(path, META) as f:
                f["x"] = np.arange(5)
                assert _leftovers(tmp_path)  # written to a temporary meanwhile
                assert not path.exists()
                raise RuntimeError("boom")
        assert not path.exists()
        assert _leftovers(tmp_path) == []
        assert stage_attrs(path) is None

    def test_keyboard_interrupt_leaves_nothing(self, tmp_path):
        path = tmp_path / "demo.h5"
        with pytest.raises(KeyboardInterrupt):
            with write_stage(path, META):
                raise KeyboardInterrupt
        assert list(tmp_path.iterdir()) == []

    def test_failed_rewrite_keeps_complete_file(self, tmp_path):
        path = tmp_path / "demo.h5"
        with write_stage(path, META) as f:
            f["x"] = np.arange(3)
        before = path.read_bytes()
        with pytest.raises(ValueError):
            with write_stage(path, {**META, "fingerprint": "new"}) as f:
                f["x"] = np.arange(100)
                raise ValueError("disk full")
        assert path.read_bytes() == before
        assert stage_attrs(path)["fingerprint"] == "abc123"
        assert _leftovers(tmp_path) == []

    def test_rewrite_replaces(self, tmp_path):
        path = tmp_path / "demo.h5"
        for fp in ("one", "two"):
            with write_stage(path, {**META, "fingerprint": fp}) as f:
                f["x"] = np.arange(2)
        assert stage_attrs(path)["fingerprint"] == "two"


class TestStageAttrs:
    def test_missing_file(self, tmp_path):
        assert stage_attrs(tmp_path / "nope.h5") is None

    def test_not_hdf5(self, tmp_path):
        path = tmp_path / "junk.h5"
        path.write_bytes(b"not an hdf5 file at all")
        assert stage_attrs(path) is None

    def test_incomplete_file(self, tmp_path):
        path = tmp_path / "demo.h5"
        with h5py.File(path, "w") as f:
            for k, v in META.items():
                f.attrs[k] = json.dumps(v) if isinstance(v, dict) else v
        assert stage_attrs(path) is None
        with h5py.File(path, "a") as f:
            f.attrs["complete"] = False
        assert stage_attrs(path) is None

    def test_atomic_h5_has_no_stage_attrs(self, tmp_path):
        path = tmp_path / "plain.h5"
        with write_atomic_h5(path) as f:
            f["y"] = 1
        assert path.exists() and stage_attrs(path) is None


class TestStrings:
    def test_round_trip_unicode(self, tmp_path):
        values = ["a/1.png", "Évangéliaire ß.png", "<script>&.png", "日本.jpg", ""]
        with write_atomic_h5(tmp_path / "s.h5") as f:
            string_dataset(f, "fixed", values)
            grow = string_dataset(f, "grow")
            grow.resize(2, axis=0)
            grow[:] = np.array(values[:2], dtype=object)
        with h5py.File(tmp_path / "s.h5", "r") as f:
            assert read_strings(f["fixed"]) == values
            assert read_strings(f["grow"]) == values[:2]


class TestCleanTemporaries:
    def _dead_pid(self) -> int:
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        return proc.pid

    def test_removes_dead_keeps_live(self, tmp_path):
        dead = tmp_path / f"ingest.h5.tmp-{self._dead_pid()}"
        mine = tmp_path / f"train.h5.tmp-{os.getpid()}"
        live_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            live = tmp_path / f"decompose.h5.tmp-{live_proc.pid}"
            keep = tmp_path / "ingest.h5"
            for p in (dead, mine, live, keep):
                p.write_bytes(b"x")
            removed = clean_temporaries(tmp_path)
            assert sorted(removed) == sorted([dead, mine])
            assert not dead.exists() and not mine.exists()
            assert live.exists() and keep.exists()
        finally:
            live_proc.kill()
            live_proc.wait()

    def test_empty_folder(self, tmp_path):
        assert clean_temporaries(tmp_path) == []
