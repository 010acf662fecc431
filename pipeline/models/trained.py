"""A project's model: built through the registry, trained with checkpoints, written to and read
back from train.h5 (weights as HDF5 datasets, never pickles)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import torch

from pipeline.core.config import Config, config_from_dict
from pipeline.core.store import write_atomic_h5
from pipeline.errors import SpritesError
from pipeline.models.base import DataShape, Model, StartBank
from pipeline.models.fit import TrainState
from pipeline.models.registry import model_class
from pipeline.models.state_io import load_tree, save_tree

__all__ = ["load_crops", "build_model", "save_checkpoint", "resume", "save_weights", "load_trained"]


def load_crops(path: Path) -> torch.Tensor:
    """All crops of ingest.h5 in memory as uint8 (N, C, S, S): 20,000 crops of 64×64 RGB are 250 MB."""
    with h5py.File(path, "r") as f:
        return torch.from_numpy(f["crops"][()])


def build_model(cfg: Config, shape: DataShape, crops: torch.Tensor | None = None, start: StartBank | None = None) -> Model:
    """The model of `cfg.model.kind`, checked against the config, then built (from `crops` when
    given, for a data-driven start; its first prototypes from `start`, a curated bank)."""
    cls = model_class(cfg.model.kind)
    cls.check_config(cfg, shape)
    return cls.build(cfg, shape, crops) if start is None else cls.build(cfg, shape, crops, start=start)


def save_checkpoint(path: Path, model: Model, optimizer: torch.optim.Optimizer, state: TrainState,
                    fingerprint: str) -> None:
    with write_atomic_h5(path) as f:
        save_tree(f.create_group("model"), model.state_dict())
        save_tree(f.create_group("optimizer"), optimizer.state_dict())
        save_tree(f.create_group("state"), dataclasses.asdict(state))
        f.attrs["fingerprint"] = fingerprint


def resume(path: Path, model: Model, optimizer: torch.optim.Optimizer, device, fingerprint: str) -> TrainState | None:
    """The checkpoint's training state (weights loaded into model and optimizer), or None when
    there is none for this fingerprint (or it cannot be read: a fresh start)."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("fingerprint") != fingerprint:
                return None
            state = TrainState(**load_tree(f["state"]))
            model.load_state_dict(load_tree(f["model"], device))
            optimizer.load_state_dict(load_tree(f["optimizer"], device))
    except (OSError, KeyError, TypeError, RuntimeError, ValueError):
        return None
    if state.rng is not None and not isinstance(state.rng, torch.Tensor):
        state.rng = torch.as_tensor(state.rng)
    return state


def save_weights(group: h5py.Group, model: Model) -> None:
    save_tree(group, model.state_dict())


def load_trained(path: Path, device="cpu", weights: str = "model") -> tuple[Model, dict]:
    """The trained model of a train.h5, rebuilt from the config it carries; and its attributes.
    `weights`: the group to load (`model`, or `seeds/run<r>` for another seed run)."""
    with h5py.File(path, "r") as f:
        # a matched project's train.h5 carries the bank's config: the model is the bank's
        config = json.loads(f.attrs.get("model_config_json", f.attrs["config_json"]))
        cfg = config_from_dict({k: v for k, v in config.items() if k != "preset"}, preset=config.get("preset"))
        shape = DataShape(int(f.attrs["channels"]), int(f.attrs["size"]), int(f.attrs.get("crops", 0)))
        model = build_model(cfg, shape)
        try:
            model.load_state_dict(load_tree(f[weights], device))
        except RuntimeError:
            raise SpritesError(f"{path} was written by another version of sprites: rerun `sprites run train --force`") from None
        attrs = dict(f.attrs)
    return model.to(device).eval(), attrs
