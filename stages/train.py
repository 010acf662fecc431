"""train: learn the sprites and the transformation predictors → cache/train.h5.

train.h5: `model/` (weights, HDF5 datasets), `history/{step,epoch,loss,seconds,usage}`, attrs
`channels`, `size`, `steps`, `seconds`, `device`, `threads`, plus the stage attributes. While
training, `cache/train.checkpoint.h5` holds the latest checkpoint (same fingerprint → resume).
"""

from __future__ import annotations

import dataclasses
import json
import time

import h5py
import numpy as np
import torch

from pipeline.errors import SpritesError
from pipeline.models.sprites.model import SpriteModel, check_model_config
from pipeline.models.state_io import load_tree, save_tree
from pipeline.core.store import write_atomic_h5, write_stage
from pipeline.models.fit import TrainState, fit, make_optimizer, pick_device, set_threads

NAME = "train"
DEPS = ("ingest",)
PARAMS = ("model", "train")
VERSION = 2  # 2: no hidden layers for empty transformation sequences


def load_crops(path) -> torch.Tensor:
    """All crops in memory as uint8 (N, C, S, S): 20,000 crops of 64×64 RGB are 250 MB."""
    with h5py.File(path, "r") as f:
        return torch.from_numpy(f["crops"][()])


def seed_sprites(crops: torch.Tensor, k: int, generator: torch.Generator, pool: int = 2000) -> torch.Tensor:
    """k-means++ seeding: k diverse crops (each next one drawn with probability ∝ its squared
    distance to the nearest chosen one), compared at a coarse 8 × 8 resolution so small shifts
    do not count. Returns (k, C, S, S) float in [0, 1]."""
    idx = torch.randperm(crops.shape[0], generator=generator)[:max(pool, k)]
    x = crops[idx].float() / 255
    small = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)            # (P, C*64)
    chosen = [int(torch.randint(len(idx), (1,), generator=generator))]
    dist = ((small - small[chosen[0]]) ** 2).sum(1)
    while len(chosen) < min(k, len(idx)):
        probs = dist / dist.sum() if dist.sum() > 0 else torch.full_like(dist, 1 / len(dist))
        nxt = int(torch.multinomial(probs, 1, generator=generator))
        chosen.append(nxt)
        dist = torch.minimum(dist, ((small - small[nxt]) ** 2).sum(1))
    return x[chosen]


def build_model(cfg, crops: torch.Tensor) -> SpriteModel:
    g = torch.Generator().manual_seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    sample = crops[torch.randperm(crops.shape[0], generator=g)[:100]].float() / 255
    seeds = seed_sprites(crops, cfg.model.sprites, g) if cfg.model.sprite_init == "samples" else None
    return SpriteModel(cfg.model, crops.shape[1], crops.shape[-1], init_images=seeds,
                       mean_image=sample.mean(0))


def _checkpoint_path(ctx):
    return ctx.project.cache_dir / "train.checkpoint.h5"


def _save_checkpoint(ctx, model, optimizer, state: TrainState) -> None:
    with write_atomic_h5(_checkpoint_path(ctx)) as f:
        save_tree(f.create_group("model"), model.state_dict())
        save_tree(f.create_group("optimizer"), optimizer.state_dict())
        save_tree(f.create_group("state"), dataclasses.asdict(state))
        f.attrs["fingerprint"] = ctx.fingerprint


def _resume(ctx, model, optimizer, device) -> TrainState | None:
    path = _checkpoint_path(ctx)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("fingerprint") != ctx.fingerprint:
                return None
            model.load_state_dict(load_tree(f["model"], device))
            optimizer.load_state_dict(load_tree(f["optimizer"], device))
            return TrainState(**load_tree(f["state"]))
    except (OSError, KeyError):
        return None


def run(ctx) -> None:
    cfg = ctx.config
    crops = load_crops(ctx.upstream("ingest"))
    check_model_config(cfg.model, crops.shape[-1])
    if crops.shape[1] != cfg.ingest.channels:
        raise SpritesError("cache/ingest.h5 does not match ingest.channels: rerun `sprites run ingest --force`")
    device = pick_device(cfg.train.device)
    threads = set_threads(cfg.train.threads)
    model = build_model(cfg, crops).to(device)
    optimizer = make_optimizer(model, cfg.train)
    state = _resume(ctx, model, optimizer, device)
    if state is not None:
        ctx.log(f"train: resuming from the checkpoint at epoch {state.epoch}, step {state.step}")
        if isinstance(state.rng, np.ndarray):
            state.rng = torch.from_numpy(state.rng)
    else:
        state = TrainState()
    n_params = sum(p.numel() for p in model.parameters())
    ctx.log(f"train: {crops.shape[0]} crops, K={model.K} sprites, L={model.L} layers, {n_params:,} parameters, "
            f"{device.type}" + (f" ({threads} threads)" if device.type == "cpu" else ""))
    start = time.time()
    state = fit(model, crops, cfg.train, optimizer, state, device,
                save=lambda s: _save_checkpoint(ctx, model, optimizer, s), progress=ctx.progress, log=ctx.log)
    with write_stage(ctx.output, ctx.meta) as f:
        save_tree(f.create_group("model"), model.state_dict())
        for key, values in state.history.items():
            f.create_dataset(f"history/{key}", data=np.asarray(values, dtype=np.float64))
        f.attrs.update({"channels": crops.shape[1], "size": crops.shape[-1], "steps": state.step,
                        "epochs_done": state.epoch, "seconds": state.elapsed, "device": device.type,
                        "threads": threads, "reseeded": len(state.reseeds), "crops": crops.shape[0],
                        "reseeds_json": json.dumps(state.reseeds)})
    _checkpoint_path(ctx).unlink(missing_ok=True)
    final = state.history["loss"][-1] if state.history["loss"] else float("nan")
    ctx.log(f"train: {state.step} steps in {state.elapsed / 60:.1f} min (this session {time.time() - start:.0f} s), "
            f"final loss {final:.5f}, {len(state.reseeds)} sprites re-seeded")


def load_model(project, device="cpu") -> tuple[SpriteModel, dict]:
    """The trained model of a project, rebuilt from cache/train.h5."""
    from pipeline.core.config import config_from_dict
    path = project.stage_path(NAME)
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["config_json"])
        cfg = config_from_dict({k: v for k, v in config.items() if k != "preset"}, preset=config.get("preset"))
        model = SpriteModel(cfg.model, int(f.attrs["channels"]), int(f.attrs["size"]))
        try:
            model.load_state_dict(load_tree(f["model"], device))
        except RuntimeError:
            raise SpritesError(f"{path} was written by another version of sprites: rerun `sprites run train --force`") from None
        attrs = dict(f.attrs)
    return model.to(device).eval(), attrs
