"""Using the budget (train.fill_budget): stretched schedules, and restarts that keep the run with the
lowest reconstruction loss, chosen from the crops alone (no label is read)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import pytest
import torch

import stages
from pipeline.core.config import config_from_dict
from pipeline.core.runner import run_stages
from pipeline.models import runs
from pipeline.models.base import DataShape
from pipeline.models.fit import TrainState, fit, make_optimizer
from pipeline.models.sprites.model import SpriteModel
from pipeline.models.trained import load_trained


def _cfg(**train):
    return config_from_dict({"model": {"sprites": 3, "transforms": ["color"], "curriculum": []},
                             "ingest": {"size": 16, "channels": 1},
                             "train": {"epochs": 2, "batch_size": 8, "checkpoint_minutes": 0.0, **train}},
                            preset="clustering")


def _crops(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 16, 16, generator=g) * 255).to(torch.uint8)


def test_stretch_trains_until_the_budget_and_follows_the_clock(monkeypatch):
    import types
    from pipeline.models import fit as fit_module
    ticks = iter(range(10**6))     # a clock that moves 0.1 s at each reading: the same run on any machine
    monkeypatch.setattr(fit_module, "time", types.SimpleNamespace(monotonic=lambda: next(ticks) * 0.1))
    cfg = _cfg(epochs=1, minutes=0.05, milestones=[0.5])
    crops = _crops()
    model = SpriteModel(cfg.model, 1, 16)
    opt = make_optimizer(model, cfg.train)
    state = fit(model, crops, cfg.train, opt, TrainState(), torch.device("cpu"), progress=False, stretch=True)
    assert state.step > 48 // 8                         # the schedule's one epoch was stretched
    assert state.elapsed >= 0.05 * 60
    # the milestone (half the stretched schedule) fell half-way through the budget: the learning rate dropped
    assert opt.param_groups[1]["lr"] == pytest.approx(cfg.train.lr * cfg.train.gamma)


def test_without_a_budget_stretch_changes_nothing():
    cfg = _cfg(epochs=2)
    crops = _crops()
    a = SpriteModel(cfg.model, 1, 16)
    state = fit(a, crops, cfg.train, make_optimizer(a, cfg.train), TrainState(), torch.device("cpu"),
                progress=False, stretch=True)
    assert state.epoch == 2 and state.step == 2 * (48 // 8)


def test_restarts_keep_the_lowest_loss_run(tmp_path, monkeypatch):
    # every run takes 1 min (faked), the budget 3.5 min: three complete runs (a fourth would not
    # fit); their losses are set so that the second run is kept
    real_fit, losses, weights = runs.fit, iter([0.30, 0.10, 0.20]), []

    def timed_fit(model, *args, **kwargs):
        state = real_fit(model, *args, **kwargs)
        state.elapsed = 60.0
        return state

    def loss_of(model, crops, device):
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(losses)

    monkeypatch.setattr(runs, "fit", timed_fit)
    monkeypatch.setattr(runs, "reconstruction_loss", loss_of)
    cfg = _cfg(minutes=3.5, fill_budget="restarts", seed=7)
    out = runs.train_runs(cfg, _crops(), DataShape(1, 16, 48), torch.device("cpu"), tmp_path, "fp",
                          progress=False, log=lambda m: None)
    assert [r.seed for r in out.restarts] == [7, 8, 9]
    assert [r.kept for r in out.restarts] == [False, True, False]
    assert all(r.epochs == 2 for r in out.restarts)
    for key, value in out.model.state_dict().items():
        assert torch.equal(value, weights[1][key]), key
    assert not (tmp_path / "train.best.h5").exists()


def test_restarts_stop_when_the_schedule_is_cut_by_the_budget(tmp_path, monkeypatch):
    real_fit = runs.fit

    def slow_fit(model, crops, cfg, *args, **kwargs):   # a run that does not finish its epochs
        state = real_fit(model, crops, cfg, *args, **kwargs)
        state.epoch, state.elapsed = cfg.epochs - 1, 60 * cfg.minutes
        return state

    monkeypatch.setattr(runs, "fit", slow_fit)
    out = runs.train_runs(_cfg(minutes=0.5, fill_budget="restarts"), _crops(), DataShape(1, 16, 48),
                          torch.device("cpu"), tmp_path, "fp", progress=False, log=lambda m: None)
    assert len(out.restarts) == 1 and out.restarts[0].kept


def test_a_killed_restart_training_resumes_in_its_run(tmp_path, monkeypatch):
    real_fit, calls = runs.fit, []

    def fit_then_kill(model, crops, cfg, *args, **kwargs):
        calls.append(cfg.seed)
        if len(calls) == 2:
            raise KeyboardInterrupt       # Ctrl-C in the second run
        state = real_fit(model, crops, cfg, *args, **kwargs)
        state.elapsed = 60.0
        return state

    monkeypatch.setattr(runs, "fit", fit_then_kill)
    cfg = _cfg(minutes=2.5, fill_budget="restarts")
    with pytest.raises(KeyboardInterrupt):
        runs.train_runs(cfg, _crops(), DataShape(1, 16, 48), torch.device("cpu"), tmp_path, "fp",
                        progress=False, log=lambda m: None)
    assert (tmp_path / "train.best.h5").exists()          # the first run is kept on disk
    lines = []
    out = runs.train_runs(cfg, _crops(), DataShape(1, 16, 48), torch.device("cpu"), tmp_path, "fp",
                          progress=False, log=lines.append)
    assert calls == [0, 1, 1] and [r.seed for r in out.restarts] == [0, 1]
    assert any("1 run(s) already done" in line for line in lines)


def test_the_stage_records_every_run_and_reads_no_label(tmp_path, monkeypatch):
    from pipeline.core.project import init_project
    real_fit = runs.fit

    def timed_fit(*args, **kwargs):   # every run takes 1 min (faked), so the budget holds 3 whatever the machine
        state = real_fit(*args, **kwargs)
        state.elapsed = 60.0
        return state

    monkeypatch.setattr(runs, "fit", timed_fit)
    project = init_project(tmp_path / "p", example="glyphs", count=60,
                           sets=["train.minutes=3.5", "train.epochs=2", "train.fill_budget=restarts",
                                 "model.sprites=3", "train.batch_size=16"])
    truth = project.ground_truth_dir.resolve()
    opened, watching = [], [True]

    def audit(event, args):   # an audit hook cannot be removed: it goes quiet after this test
        if watching[0] and event == "open" and isinstance(args[0], (str, Path)) \
                and str(Path(args[0]).resolve()).startswith(str(truth)):
            opened.append(args[0])
    sys.addaudithook(audit)
    try:
        run_stages(project, project.config(), ["train"], stages=stages.STAGES, log=lambda m: None, progress=False)
    finally:
        watching[0] = False
    assert opened == []                                    # ground_truth/ was never opened
    with h5py.File(project.stage_path("train"), "r") as f:
        restarts = json.loads(f.attrs["restarts_json"])
        seconds = float(f.attrs["seconds"])
    assert len(restarts) == 3 and sum(r["kept"] for r in restarts) == 1
    kept = next(r for r in restarts if r["kept"])
    assert kept["loss"] == min(r["loss"] for r in restarts)
    assert seconds == pytest.approx(60 * sum(r["minutes"] for r in restarts))
    model, _ = load_trained(project.stage_path("train"))
    with h5py.File(project.stage_path("ingest"), "r") as f:
        crops = torch.from_numpy(f["crops"][()])
    assert runs.reconstruction_loss(model, crops, "cpu") == pytest.approx(kept["loss"], rel=1e-6)
    run_stages(project, project.config(), ["report"], stages=stages.STAGES, log=lambda m: None, progress=False)
    index = (project.report_dir / "index.html").read_text(encoding="utf-8")
    assert "3 runs from different seeds" in index and index.count("✓ kept") == 1
