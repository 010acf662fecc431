"""Several runs from different seeds (`train.seeds = N`, `sprites run --seeds N`): the run with the
lowest reconstruction loss is kept for the exports and the report; the others say how stable each
sprite is (decompose explains every crop with each of them, the report compares: agreement).

Run r trains from seed `train.seed + SEED_STEP·r` as any single run does (budget, fill_budget and
all), so N seeds cost N single runs. Each finished run is kept in `cache/train.seed<r>.h5` until
the train stage completes, so an interrupted training resumes at the run it was in (and inside it
from its checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import torch

from pipeline.core.config import Config
from pipeline.core.store import write_atomic_h5
from pipeline.models.base import DataShape, StartBank
from pipeline.models.runs import TrainedRun, reconstruction_loss, train_runs
from pipeline.models.state_io import load_tree, save_tree

__all__ = ["SEED_STEP", "SeedRun", "train_seeds", "forget_seed_runs"]

SEED_STEP = 100   # seeds of run r: train.seed + 100·r (restarts inside a run use +1, +2, …)


@dataclass
class SeedRun:
    seed: int
    loss: float            # reconstruction loss over up to 1,024 evenly spread crops (runs.reconstruction_loss)
    epochs: int
    minutes: float
    kept: bool = False


def _path(cache_dir: Path, r: int) -> Path:
    return cache_dir / f"train.seed{r}.h5"


def _save(path: Path, tag: str, run: TrainedRun, info: SeedRun) -> None:
    with write_atomic_h5(path) as f:
        save_tree(f.create_group("model"), run.model.state_dict())
        save_tree(f.create_group("state"), dataclasses.asdict(run.state))
        save_tree(f.create_group("arrays"), run.arrays)
        f.attrs.update({"fingerprint": tag, "info_json": json.dumps(dataclasses.asdict(info)),
                        "attrs_json": json.dumps(run.attrs), "restarts_json": json.dumps([dataclasses.asdict(x) for x in run.restarts])})


def _load(path: Path, tag: str, model, device) -> tuple[TrainedRun, SeedRun] | None:
    from pipeline.models.fit import TrainState
    from pipeline.models.runs import Restart
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("fingerprint") != tag:
                return None
            model.load_state_dict(load_tree(f["model"], device))
            run = TrainedRun(model, TrainState(**load_tree(f["state"])), json.loads(f.attrs["attrs_json"]),
                             load_tree(f["arrays"]), [Restart(**x) for x in json.loads(f.attrs["restarts_json"])])
            return run, SeedRun(**json.loads(f.attrs["info_json"]))
    except (OSError, KeyError, TypeError, ValueError, RuntimeError):
        return None


def train_seeds(cfg: Config, crops: torch.Tensor, shape: DataShape, device, cache_dir: Path, fingerprint: str,
                progress: bool = True, log: Callable[[str], None] = print, threads: int = 0,
                start: StartBank | None = None) -> tuple[TrainedRun, list[SeedRun], list[dict]]:
    """→ the kept run, every run's figures (in seed order) and the weights of every run (state dicts)."""
    from pipeline.models.trained import build_model
    runs, infos = [], []
    for r in range(cfg.train.seeds):
        run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=cfg.train.seed + SEED_STEP * r))
        tag = f"{fingerprint}:seed{r}"
        loaded = _load(_path(cache_dir, r), tag, build_model(run_cfg, shape).to(device), device)
        if loaded is not None:
            run, info = loaded
            log(f"train: seed run {r + 1} of {cfg.train.seeds} already done (loss {info.loss:.5f})")
        else:
            log(f"train: seed run {r + 1} of {cfg.train.seeds}, seed {run_cfg.train.seed}")
            run = train_runs(run_cfg, crops, shape, device, cache_dir, tag, progress, log, threads, start=start)
            minutes = sum(x.minutes for x in run.restarts) if run.restarts else run.state.elapsed / 60
            info = SeedRun(run_cfg.train.seed, reconstruction_loss(run.model, crops, device), run.state.epoch, minutes)
            _save(_path(cache_dir, r), tag, run, info)
        runs.append(run)
        infos.append(info)
    best = min(range(len(infos)), key=lambda r: infos[r].loss)
    infos[best].kept = True
    log(f"train: kept seed run {best + 1} of {len(infos)} (seed {infos[best].seed}), the lowest reconstruction loss")
    weights = [{k: v.detach().cpu() for k, v in run.model.state_dict().items()} for run in runs]
    return runs[best], infos, weights


def forget_seed_runs(cache_dir: Path, count: int) -> None:
    """Remove the per-run files once train.h5 holds every run."""
    for r in range(count):
        _path(cache_dir, r).unlink(missing_ok=True)
