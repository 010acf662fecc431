"""The training loop: Adam with two parameter groups, learning-rate milestones, curriculum, sprite
freezing, re-seeding of under-used sprites, a wall-clock budget, and checkpoints from which an
interrupted run resumes with the same result as an uninterrupted one (same seed, epochs budget).
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
from pipeline.models.sprites.model import SpriteModel
from pipeline.models.sprites.reassign import reassign_unused

__all__ = ["TrainState", "fit", "make_optimizer", "pick_device", "set_threads"]


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        from pipeline.errors import SpritesError
        raise SpritesError("train.device = cuda but no CUDA GPU is visible: set train.device = auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads(threads: int) -> int:
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def make_optimizer(model: SpriteModel, cfg: TrainConfig) -> torch.optim.Adam:
    return torch.optim.Adam([
        {"params": model.sprite_parameters(), "lr": cfg.sprite_lr, "weight_decay": 0.0, "name": "sprites"},
        {"params": model.head_parameters(), "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "heads"},
    ])


@dataclass
class TrainState:
    """Everything a resumed run needs besides model and optimiser weights."""
    epoch: int = 0                  # current epoch (0-based)
    step_in_epoch: int = 0          # steps done in the current epoch
    step: int = 0                   # steps done in total
    elapsed: float = 0.0            # training seconds so far, over all sessions
    usage: list = field(default_factory=list)        # (L, K') counts since the last re-seeding
    history: dict = field(default_factory=lambda: {"step": [], "epoch": [], "loss": [], "seconds": [], "usage": []})
    reseeds: list = field(default_factory=list)      # [step, epoch, sprite, source, reason] of each re-seeding
    touched: list = field(default_factory=list)      # (K,) step at which each sprite was last re-seeded or copied
    curriculum_on: int = 0          # sprite transformations switched on
    curriculum_since: int = 0       # step at which the last one switched on
    curriculum_early: int = 0       # how many the loss plateaus switched on (model.curriculum_patience)
    rng: object = None              # torch RNG state (mask noise, re-seeding noise)
    finished: bool = False


def _progress(state: TrainState, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Schedule position in epochs; with a minutes budget the schedule is compressed to fit it."""
    done = state.epoch + state.step_in_epoch / steps_per_epoch
    if cfg.minutes > 0:
        done = max(done, cfg.epochs * state.elapsed / (60 * cfg.minutes))
    return done


def _after_last_milestone(cfg: TrainConfig, progress: float) -> bool:
    """Whether the learning rates have made their last step down: a sprite re-seeded then has too
    little learning left to become a shape of its own and would stay its source's twin (ours: the
    reference re-seeds to the end)."""
    return bool(cfg.milestones) and progress >= max(cfg.milestones)


def _lr_factor(cfg: TrainConfig, progress: float) -> float:
    return cfg.gamma ** sum(progress >= m for m in cfg.milestones)


def fit(model: SpriteModel, crops: torch.Tensor, cfg: TrainConfig, optimizer: torch.optim.Optimizer,
        state: TrainState, device: torch.device, save: Callable[[TrainState], None] | None = None,
        progress: bool = True, log: Callable[[str], None] = print) -> TrainState:
    """Train `model` on `crops` (N, C, S, S) uint8, continuing from `state`; `save(state)` writes a
    checkpoint (called every `cfg.checkpoint_minutes`, at the end, and on Ctrl-C)."""
    N = crops.shape[0]
    B = min(cfg.batch_size, N)
    steps_per_epoch = max(1, N // B)  # drop the last partial batch: BatchNorm needs full batches
    total = cfg.epochs * steps_per_epoch
    K1 = model.K + int(model.has_empty)
    if not state.usage:
        state.usage = [[0] * K1 for _ in range(model.L)]
    if not state.touched:
        state.touched = [-SETTLE * max(cfg.reassign_every, 1)] * model.K
    if state.rng is not None:
        torch.set_rng_state(state.rng)
    else:
        torch.manual_seed(cfg.seed)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    model.to(device).train()
    last_save = time.monotonic()
    session_start, elapsed_start = time.monotonic(), state.elapsed
    running = []
    bar = tqdm(total=total, initial=state.step, desc="train", unit="step", disable=not progress,
               mininterval=0.5, dynamic_ncols=True)
    try:
        while state.epoch < cfg.epochs and not state.finished:
            order = torch.randperm(N, generator=torch.Generator().manual_seed(cfg.seed * 100003 + state.epoch))
            while state.step_in_epoch < steps_per_epoch:
                state.elapsed = elapsed_start + time.monotonic() - session_start
                where = _progress(state, cfg, steps_per_epoch)
                if cfg.minutes > 0 and state.elapsed >= 60 * cfg.minutes:
                    state.finished = True
                    break
                on = model.set_epoch(where, state.curriculum_early)
                if on != state.curriculum_on:
                    state.curriculum_on, state.curriculum_since = on, state.step
                frozen = where < cfg.freeze_sprites
                factor = _lr_factor(cfg, where)
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr * (factor if (g.get("name") != "sprites" or cfg.decay_sprites) else 1.0)
                idx = order[state.step_in_epoch * B:(state.step_in_epoch + 1) * B]
                x = crops[idx].to(device, non_blocking=True).float().div_(255)
                loss, choice, _ = model(x, frozen=frozen)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                state.step += 1
                state.step_in_epoch += 1
                counts = torch.zeros(model.L, K1, dtype=torch.long)
                counts.scatter_add_(1, choice.t().cpu(), torch.ones_like(choice.t().cpu()))
                state.usage = (torch.tensor(state.usage) + counts).tolist()
                running.append(loss.item())
                if cfg.reassign_every and state.step % cfg.reassign_every == 0 and not frozen \
                        and not _after_last_milestone(cfg, where):
                    settled = torch.tensor(state.touched) <= state.step - SETTLE * cfg.reassign_every
                    moved = reassign_unused(model, optimizer, torch.tensor(state.usage), model.cfg.reassign_threshold,
                                            model.cfg.reassign_blurred, model.cfg.reassign_duplicate, settled)
                    epoch = round(state.epoch + state.step_in_epoch / steps_per_epoch, 2)
                    for r in moved:
                        state.touched[r.sprite] = state.touched[r.source] = state.step
                        state.reseeds.append([state.step, epoch, r.sprite, r.source, r.reason])
                    state.usage = [[0] * K1 for _ in range(model.L)]
                if state.step % max(1, min(50, steps_per_epoch)) == 0 or state.step_in_epoch == steps_per_epoch:
                    _record(state, running, model)
                    running = []
                    if _plateau(state, model, steps_per_epoch):
                        state.curriculum_early = state.curriculum_on + 1
                        log(f"\ntrain: the loss stopped improving at epoch {where:.1f}: switching on "
                            f"{model.curriculum_order()[state.curriculum_on]}")
                    used = sum(1 for c in np.array(state.history["usage"][-1]).reshape(-1)[:model.K] if c > 0)
                    bar.set_postfix(loss=f"{state.history['loss'][-1]:.4f}", epoch=state.epoch, used=f"{used}/{model.K}")
                bar.update(1)
                if save and time.monotonic() - last_save > 60 * cfg.checkpoint_minutes:
                    state.rng = torch.get_rng_state()
                    save(state)
                    last_save = time.monotonic()
            else:
                state.epoch += 1
                state.step_in_epoch = 0
                continue
            break
        if running:
            _record(state, running, model)
        state.finished = True
        state.elapsed = elapsed_start + time.monotonic() - session_start
        state.rng = torch.get_rng_state()
    except KeyboardInterrupt:
        state.elapsed = elapsed_start + time.monotonic() - session_start
        state.rng = torch.get_rng_state()
        if save:
            log("\ninterrupted: saving a checkpoint; rerun to resume")
            save(state)
        raise
    finally:
        bar.close()
    return state


SETTLE = 20    # re-seeding checks before a re-seeded sprite and its source may be judged duplicates
PLATEAU = 0.01  # relative loss improvement over a patience window below which the loss has plateaued


def _plateau(state: TrainState, model: SpriteModel, steps_per_epoch: int) -> bool:
    """Whether the next transformation of the curriculum should switch on early: the mean loss of
    the last `curriculum_patience` epochs is within 1 % of the window before, both windows after
    the last switch."""
    patience = model.cfg.curriculum_patience
    if patience <= 0 or state.curriculum_on >= len(model.sprite_seq):
        return False
    window = max(1, round(patience * steps_per_epoch))
    if state.step - state.curriculum_since < 2 * window:
        return False
    steps, losses = np.asarray(state.history["step"]), np.asarray(state.history["loss"])
    last = losses[steps > state.step - window]
    before = losses[(steps > state.step - 2 * window) & (steps <= state.step - window)]
    if not len(last) or not len(before):
        return False
    return float(before.mean() - last.mean()) < PLATEAU * float(before.mean())


def _record(state: TrainState, running: list[float], model: SpriteModel) -> None:
    h = state.history
    h["step"].append(state.step)
    h["epoch"].append(state.epoch + 0.0)
    h["loss"].append(float(np.mean(running)) if running else math.nan)
    h["seconds"].append(state.elapsed)
    usage = np.array(state.usage, dtype=np.float64).sum(0)
    h["usage"].append((usage / max(usage.sum(), 1)).tolist())
