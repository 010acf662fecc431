"""The training loop every model kind shares: Adam over the kind's parameter groups, learning-rate
milestones, a wall-clock budget, and checkpoints from which an interrupted run resumes with the
same result as an uninterrupted one (same seed, epochs budget). What is particular to a kind
(its loss, curriculum, re-seeding) comes through the hooks of `pipeline.models.base.Model`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from pipeline.core.config import TrainConfig
from pipeline.models.base import Clock, Model

__all__ = ["TrainState", "fit", "make_optimizer"]


def make_optimizer(model: Model, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over the kind's parameter groups (each keeps its `name` and `decay` flag)."""
    return torch.optim.Adam(model.param_groups(cfg))


@dataclass
class TrainState:
    """Everything a resumed run needs besides model and optimiser weights."""
    epoch: int = 0                  # current epoch (0-based)
    step_in_epoch: int = 0          # steps done in the current epoch
    step: int = 0                   # steps done in total
    elapsed: float = 0.0            # training seconds so far, over all sessions
    history: dict = field(default_factory=lambda: {"step": [], "epoch": [], "loss": [], "seconds": []})
    model: dict = field(default_factory=dict)        # the kind's own state (Model.training_state)
    rng: object = None              # torch RNG state (mask noise, re-seeding noise)
    finished: bool = False


def _progress(state: TrainState, cfg: TrainConfig, steps_per_epoch: int, stretch: bool = False) -> float:
    """Schedule position in epochs; with a minutes budget the schedule is compressed to fit it, and
    with `stretch` it follows the clock alone (stretched over the whole budget)."""
    done = state.epoch + state.step_in_epoch / steps_per_epoch
    if cfg.minutes > 0:
        by_time = cfg.epochs * state.elapsed / (60 * cfg.minutes)
        done = by_time if stretch else max(done, by_time)
    return done


def _after_last_milestone(cfg: TrainConfig, progress: float) -> bool:
    """Whether the learning rates have made their last step down."""
    return bool(cfg.milestones) and progress >= max(cfg.milestones)


def _lr_factor(cfg: TrainConfig, progress: float) -> float:
    return cfg.gamma ** sum(progress >= m for m in cfg.milestones)


def fit(model: Model, crops: torch.Tensor, cfg: TrainConfig, optimizer: torch.optim.Optimizer,
        state: TrainState, device: torch.device, save: Callable[[TrainState], None] | None = None,
        progress: bool = True, log: Callable[[str], None] = print, stretch: bool = False) -> TrainState:
    """Train `model` on `crops` (N, C, S, S) uint8, continuing from `state`; `save(state)` writes a
    checkpoint (called every `cfg.checkpoint_minutes`, at the end, and on Ctrl-C). With `stretch`
    (and a minutes budget) the run goes on until the budget is spent, its schedule stretched over it."""
    stretch = stretch and cfg.minutes > 0
    N = crops.shape[0]
    B = min(cfg.batch_size, N)
    steps_per_epoch = max(1, N // B)  # drop the last partial batch: BatchNorm needs full batches
    total = cfg.epochs * steps_per_epoch
    model.start_training(cfg, state.model)
    if state.rng is not None:
        torch.set_rng_state(state.rng)
    else:
        torch.manual_seed(cfg.seed)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    model.to(device).train()
    last_save = time.monotonic()
    session_start, elapsed_start = time.monotonic(), state.elapsed
    running: list[float] = []
    clock = Clock(state.step, state.epoch, 0.0, steps_per_epoch)

    def snapshot() -> None:
        state.elapsed = elapsed_start + time.monotonic() - session_start
        state.rng = torch.get_rng_state()
        state.model = model.training_state()

    bar = tqdm(total=None if stretch else total, initial=state.step, desc="train", unit="step", disable=not progress,
               mininterval=0.5, dynamic_ncols=True)
    try:
        while (state.epoch < cfg.epochs or stretch) and not state.finished:
            order = torch.randperm(N, generator=torch.Generator().manual_seed(cfg.seed * 100003 + state.epoch))
            while state.step_in_epoch < steps_per_epoch:
                state.elapsed = elapsed_start + time.monotonic() - session_start
                where = _progress(state, cfg, steps_per_epoch, stretch)
                if cfg.minutes > 0 and state.elapsed >= 60 * cfg.minutes:
                    state.finished = True
                    break
                last = _after_last_milestone(cfg, where)
                clock = Clock(state.step, state.epoch, where, steps_per_epoch, last)
                factor = _lr_factor(cfg, where)
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr * (factor if g.get("decay", True) else 1.0)
                idx = order[state.step_in_epoch * B:(state.step_in_epoch + 1) * B]
                x = crops[idx].to(device, non_blocking=True).float().div_(255)
                loss = model.training_step(x, clock)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                state.step += 1
                state.step_in_epoch += 1
                running.append(loss.item())
                clock = Clock(state.step, state.epoch, where, steps_per_epoch, last,
                              state.epoch + state.step_in_epoch / steps_per_epoch)
                model.after_step(optimizer, clock)
                if state.step % max(1, min(50, steps_per_epoch)) == 0 or state.step_in_epoch == steps_per_epoch:
                    _record(state, running, model, clock, log)
                    running = []
                    bar.set_postfix(loss=f"{state.history['loss'][-1]:.4f}", epoch=state.epoch, **model.progress())
                bar.update(1)
                if save and time.monotonic() - last_save > 60 * cfg.checkpoint_minutes:
                    snapshot()
                    save(state)
                    last_save = time.monotonic()
            else:
                state.epoch += 1
                state.step_in_epoch = 0
                continue
            break
        if running:
            _record(state, running, model, clock, log)
        state.finished = True
        snapshot()
    except KeyboardInterrupt:
        snapshot()
        if save:
            log("\ninterrupted: saving a checkpoint; rerun to resume")
            save(state)
        raise
    finally:
        bar.close()
    return state


def _record(state: TrainState, running: list[float], model: Model, clock: Clock, log: Callable[[str], None]) -> None:
    h = state.history
    h["step"].append(state.step)
    h["epoch"].append(state.epoch + 0.0)
    h["loss"].append(float(np.mean(running)) if running else math.nan)
    h["seconds"].append(state.elapsed)
    for key, value in model.record(clock, h, log).items():
        h.setdefault(key, []).append(value)
