"""What a training budget is used for (`train.fill_budget`, with `train.minutes` set).

* `no`: one run of the schedule; it stops when its epochs are done, however much budget is left.
* `stretch`: one run whose schedule (milestones, curriculum, freezing) is stretched over the whole
  budget: the run trains until the budget is spent.
* `restarts`: as many complete runs from new seeds (train.seed, +1, +2, …) as the budget holds; the
  run with the lowest reconstruction loss is kept. The loss is the model's own cost (for sprites:
  MSE + λ per non-empty sprite) over up to 1,024 evenly spread crops, in inference mode: a figure
  of the crops alone, never of a label. Every run's figures go to train.h5 (`restarts_json`) and the
  report.

A run of a schedule longer than the budget is compressed to fit it, whatever the mode. An
interrupted training resumes in the run it was in: the runs already done and the best so far are
kept in `cache/train.best.h5`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import torch

from pipeline.core.config import Config
from pipeline.core.sample import spread_ids
from pipeline.core.store import write_atomic_h5
from pipeline.models.base import DataShape, Model, StartBank
from pipeline.models.fit import TrainState, fit, make_optimizer
from pipeline.models.state_io import load_tree, save_tree
from pipeline.models.trained import build_model, resume, save_checkpoint

__all__ = ["Restart", "TrainedRun", "reconstruction_loss", "train_runs", "SCORE_CROPS"]

SCORE_CROPS = 1024   # crops on which restarts are compared


@dataclass
class Restart:
    """One run of a `restarts` training, as train.h5's `restarts_json` and the report list it."""
    seed: int
    epochs: int            # epochs done
    steps: int
    minutes: float         # training minutes of this run
    train_loss: float      # the last training loss recorded (noisy: mask noise, a running mean)
    loss: float            # the reconstruction loss restarts are compared by
    kept: bool = False


@dataclass
class TrainedRun:
    model: Model
    state: TrainState
    attrs: dict            # the kept run's `training_attrs()`
    arrays: dict           # the kept run's `training_arrays()`
    restarts: list[Restart]


@torch.no_grad()
def reconstruction_loss(model: Model, crops: torch.Tensor, device, batch: int = 64) -> float:
    """The mean of the model's cost over up to SCORE_CROPS evenly spread crops (inference mode)."""
    ids = torch.from_numpy(spread_ids(crops.shape[0], SCORE_CROPS))
    was_training = model.training
    model.eval()
    total = 0.0
    for lo in range(0, len(ids), batch):
        x = crops[ids[lo:lo + batch]].to(device).float().div_(255)
        total += float(model.decompose_batch(x).cost.double().sum())
    model.train(was_training)
    return total / max(1, len(ids))


def _final_loss(state: TrainState) -> float:
    return float(state.history["loss"][-1]) if state.history["loss"] else math.nan


def _save_best(path: Path, fingerprint: str, done: list[Restart], best: int, weights: dict, state: TrainState,
               attrs: dict) -> None:
    attrs = dict(attrs)
    arrays = attrs.pop("arrays", {})
    with write_atomic_h5(path) as f:
        save_tree(f.create_group("model"), weights)
        save_tree(f.create_group("state"), dataclasses.asdict(state))
        save_tree(f.create_group("arrays"), arrays)
        f.attrs.update({"fingerprint": fingerprint, "restarts_json": json.dumps([dataclasses.asdict(r) for r in done]),
                        "best": best, "attrs_json": json.dumps(attrs)})


def _load_best(path: Path, fingerprint: str, device):
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("fingerprint") != fingerprint:
                return None
            done = [Restart(**r) for r in json.loads(f.attrs["restarts_json"])]
            return done, int(f.attrs["best"]), load_tree(f["model"], device), TrainState(**load_tree(f["state"])), \
                {**json.loads(f.attrs["attrs_json"]), "arrays": load_tree(f["arrays"])}
    except (OSError, KeyError, TypeError, ValueError):
        return None


def train_runs(cfg: Config, crops: torch.Tensor, shape: DataShape, device, cache_dir: Path, fingerprint: str,
               progress: bool = True, log: Callable[[str], None] = print, threads: int = 0,
               start: StartBank | None = None) -> TrainedRun:
    """Train as `train.fill_budget` says; returns the model kept, its state and the runs made.
    `start`: the curated prototypes every run starts from (`train.init = curated`)."""
    mode = cfg.train.fill_budget if cfg.train.minutes > 0 else "no"
    checkpoint, best_path = cache_dir / "train.checkpoint.h5", cache_dir / "train.best.h5"
    done: list[Restart] = []
    best = None          # (index in done, weights, state, attrs)
    saved = _load_best(best_path, fingerprint, device) if mode == "restarts" else None
    if saved is not None:
        done, index, weights, state, attrs = saved
        best = (index, weights, state, attrs)
        log(f"train: {len(done)} run(s) already done, resuming with run {len(done) + 1}")
    while True:
        r = len(done)
        spent = sum(x.minutes for x in done)
        train = dataclasses.replace(cfg.train, seed=cfg.train.seed + r,
                                    minutes=max(cfg.train.minutes - spent, 1e-3) if cfg.train.minutes > 0 else 0.0)
        run_cfg = dataclasses.replace(cfg, train=train)
        model = build_model(run_cfg, shape, crops, start).to(device)
        optimizer = make_optimizer(model, train)
        tag = f"{fingerprint}:run{r}"
        state = resume(checkpoint, model, optimizer, device, tag)
        if state is not None:
            log(f"train: resuming from the checkpoint at epoch {state.epoch}, step {state.step}")
        if r == 0 and state is None:
            n_params = sum(p.numel() for p in model.parameters())
            log(f"train: {shape.count} crops, {model.summary()['describe']}, {n_params:,} parameters, {device.type}"
                + (f" ({threads} threads)" if device.type == "cpu" and threads else ""))
        if mode == "restarts" and r > 0:
            log(f"train: run {r + 1} from seed {train.seed} ({train.minutes:.1f} min of the budget left)")
        state = fit(model, crops, train, optimizer, state or TrainState(), device,
                    save=lambda s: save_checkpoint(checkpoint, model, optimizer, s, tag),
                    progress=progress, log=log, stretch=mode == "stretch")
        if mode != "restarts":
            return TrainedRun(model, state, model.training_attrs(), model.training_arrays(), [])
        run = Restart(train.seed, state.epoch, state.step, state.elapsed / 60, _final_loss(state),
                      reconstruction_loss(model, crops, device))
        done.append(run)
        log(f"train: run {r + 1} (seed {train.seed}): {run.epochs} epochs in {run.minutes:.1f} min, "
            f"reconstruction loss {run.loss:.5f}")
        if best is None or run.loss < done[best[0]].loss:
            best = (r, copy.deepcopy(model.state_dict()), state, {**model.training_attrs(),
                                                                  "arrays": model.training_arrays()})
        complete = state.epoch >= train.epochs
        shortest = min(x.minutes for x in done if x.epochs >= cfg.train.epochs) if complete else math.inf
        if not complete or cfg.train.minutes - sum(x.minutes for x in done) < shortest:
            break   # the budget is spent, or too little is left for another complete run
        _save_best(best_path, fingerprint, done, best[0], best[1], best[2], best[3])
        checkpoint.unlink(missing_ok=True)
    index, weights, state, attrs = best
    done[index].kept = True
    model.load_state_dict(weights)
    best_path.unlink(missing_ok=True)
    if len(done) > 1:
        log(f"train: kept run {index + 1} of {len(done)} (seed {done[index].seed}), the lowest reconstruction loss")
    arrays = attrs.pop("arrays", {})
    return TrainedRun(model, state, attrs, arrays, done)
