"""The model interface: the one door through which every model kind passes.

A *model kind* (`model.kind` in the config: `sprites` today; AST and ReDO-style kinds later) is a
`Model` subclass in its own subpackage of `pipeline.models`, named by one line of
`pipeline.models.registry.KINDS`. The `train` and `decompose` stages call only what is below, so a
new kind needs no edit anywhere else. Its settings are the `[model]` keys they share (K =
`model.sprites`, L = `model.layers`, `model.background`, …) and, if it needs more, a dataclass of
its own keys named in its registry line: the config section `[<kind>]` (`cfg.<kind>`), checked,
written by `sprites init` and fingerprinted like every other section.

In DESIGN.md's terms, a kind explains each crop as an ordered stack of L *layers* (object layers,
back to front) over an optional *background*; each layer holds one of K *prototypes* (a *sprite*
with a transparency mask for DTI-Sprites, an opaque prototype for DTI-Clustering) or nothing (the
*empty sprite*), placed by the kind's *transformations*. What a kind must provide:

* **build** — `check_config(cfg, shape)` refuses a config the kind cannot honour, before any work,
  with a `SpritesError` naming the key to change; `build(cfg, shape, crops)` makes the model from
  the resolved config and the data's shape (`DataShape`), with `crops` (N, C, S, S) uint8 for a
  data-driven initialisation, or `crops=None` when the weights are about to be loaded; `start`
  (a `StartBank`, with `train.init = curated`): prototypes a curated catalogue keeps, which the
  first prototypes start from (a kind that has no prototypes to start raises SpritesError).
* **training** — `start_training(train_cfg, state)`: called when a run starts or resumes, with the
  `[train]` config and the kind's saved training state (`{}` on a fresh start);
  `param_groups(train_cfg)`: the optimiser's parameter groups, each a dict with
  `params`, `lr`, `weight_decay`, a `name`, and `decay` (whether `train.milestones` lower its
  learning rate); `training_step(x, clock)`: the loss (a scalar with gradient) of one batch
  x (B, C, S, S) in [0, 1] — the generic loop (`pipeline.models.fit`) does the backward pass, the
  optimiser step, learning-rate milestones, the wall-clock budget, checkpoints and Ctrl-C;
  `after_step(optimizer, clock)`: the periodic hook, called after every optimiser step (re-seeding
  of under-used sprites for `sprites`; a GAN's collapse restart later); `record(clock, history,
  log)`: values kept in `train.h5 history/` beside the loss at each record point (e.g. sprite
  usage) — it may also act on the history (a plateau-triggered curriculum); `progress()`: a few
  short values for the progress bar.
* **training state** — `training_state()`: the kind's own state besides its weights (counters,
  schedules), as plain JSON-able data, saved in every checkpoint and handed back to
  `start_training` so that an interrupted run resumes exactly (numpy arrays allowed);
  `training_attrs()`: attributes for `train.h5` (e.g. `reseeds_json`, read by the report);
  `training_arrays()`: datasets for `train.h5` — from `snapshots/epoch` (n,), `snapshots/colours`
  (n, K, C, s, s), `snapshots/masks` (n, K, 1, s, s) and `snapshots/backgrounds` (n, M, C, b, b)
  uint8 the report shows how the prototypes formed.
* **weights** — `state_dict()` / `load_state_dict()` (nn.Module's own): named tensors, written as
  HDF5 datasets by `pipeline.models.state_io` (never pickles).
* **decompose** — `decompose_batch(x)` → one `Record`, the same fields for every kind (below).
* **what the report shows** — `prototype_bank()` → `Prototypes` (uint8 pictures), `summary()` → a
  JSON-able dict: `kind`, `sprites` (K), `layers` (L), `backgrounds` (M), `transparent`,
  `sprite_size`, `facts` (label/value pairs shown on the report's first page), `describe` (one line
  for the log). The report reads these from `decompose.h5`; it never imports a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from pipeline.models.layers import front_layer   # noqa: F401 (part of this module's interface)

__all__ = ["DataShape", "Clock", "Record", "Prototypes", "StartBank", "Model", "front_layer"]


@dataclass(frozen=True)
class DataShape:
    """What a model is built for: crops of `channels` × `size` × `size`, `count` of them."""
    channels: int
    size: int
    count: int = 0


@dataclass(frozen=True)
class StartBank:
    """Prototypes a model starts from (`train.init = curated`): the entries of a curation, as
    pictures in [0, 1] — colours (E, C, s, s), masks (E, 1, s, s) or None, backgrounds (M, C, b, b)
    or None — and the entries' names (E,)."""
    colours: np.ndarray
    masks: np.ndarray | None
    backgrounds: np.ndarray | None
    names: tuple[str, ...]


@dataclass(frozen=True)
class Clock:
    """Where training stands when a hook is called."""
    step: int               # optimiser steps done (before `training_step`, after `after_step`)
    epoch: int              # current epoch, 0-based
    progress: float         # schedule position in epochs (compressed to fit train.minutes)
    steps_per_epoch: int
    after_last_milestone: bool = False   # the learning rates have made their last step down
    epochs_done: float = 0.0             # epochs done, fractions counted (not compressed)


@dataclass
class Record:
    """One batch explained: what `decompose.h5` stores per crop (first axis B = crop).

    Per crop: `background` (B,) prototype id (−1 without background); `occlusion` (B, L, L) 1 where
    the row layer is in front of the column layer; `recon` (B, C, S, S) in [0, 1]; `error` (B,)
    reconstruction MSE; `cost` (B,) what the kind minimised to choose (MSE + λ per non-empty sprite
    for min-loss selection); `margin` (B,) the cost of the best other choice minus `cost` (≥ 0,
    small = ambiguous; its unit is the kind's cost).
    Per crop and layer: `sprite` (B, L) prototype id or −1 (empty); `runner_up` (B, L) the best
    other prototype for that layer, the others fixed (−1: the empty sprite, or none); `layer_margin`
    (B, L) its cost minus `cost` (inf when there is no other choice); `params` name → (B, L, P) raw
    transformation parameters; `values` column → (B, L) readable transformation values for the
    exports (e.g. `position_scale`), in column order.
    Masks (B, S, S): `semantic` 0 background, k+1 = prototype k; `instance` 0 background, l+1 =
    layer l; `instance_fg` the same with background pixels given to the non-empty layer of closest
    colour (the papers' ARI-FG protocol).
    Pictures: `layers` (B, L, C+1, S, S) each layer as placed, colour and alpha in [0, 1] (alpha 0
    for an empty layer); `backdrop` (B, C, S, S) the transformed background, or None.
    """
    sprite: torch.Tensor
    runner_up: torch.Tensor
    layer_margin: torch.Tensor
    background: torch.Tensor
    occlusion: torch.Tensor
    recon: torch.Tensor
    error: torch.Tensor
    cost: torch.Tensor
    margin: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor
    instance_fg: torch.Tensor
    layers: torch.Tensor
    backdrop: torch.Tensor | None = None
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Prototypes:
    """What the report shows as the model's bank, uint8: `colours` (K, C, s, s), `masks`
    (K, 1, s, s) or None (opaque prototypes), `backgrounds` (M, C, S, S) or None."""
    colours: np.ndarray
    masks: np.ndarray | None = None
    backgrounds: np.ndarray | None = None


class Model(nn.Module):
    """Base class of every model kind; see the module docstring for the contract."""

    kind: ClassVar[str] = ""

    # ------------------------------------------------------------------------------- build
    @classmethod
    def check_config(cls, cfg, shape: DataShape) -> None:
        """Raise SpritesError (naming the key to change) for a config this kind cannot honour."""

    @classmethod
    def build(cls, cfg, shape: DataShape, crops: torch.Tensor | None = None, start: StartBank | None = None) -> "Model":
        raise NotImplementedError

    # ---------------------------------------------------------------------------- training
    def param_groups(self, train_cfg) -> list[dict[str, Any]]:
        raise NotImplementedError

    def start_training(self, train_cfg, state: dict[str, Any]) -> None:
        """A run starts (`state` = {}) or resumes (`state` = what `training_state` returned)."""

    def training_step(self, x: torch.Tensor, clock: Clock) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self, optimizer: torch.optim.Optimizer, clock: Clock) -> None:
        """The periodic hook: called after every optimiser step."""

    def record(self, clock: Clock, history: dict[str, list], log: Callable[[str], None]) -> dict[str, Any]:
        return {}

    def progress(self) -> dict[str, str]:
        return {}

    def training_state(self) -> dict[str, Any]:
        return {}

    def training_attrs(self) -> dict[str, Any]:
        return {}

    def training_arrays(self) -> dict[str, np.ndarray]:
        return {}

    # ---------------------------------------------------------------------------- inference
    def decompose_batch(self, x: torch.Tensor) -> Record:
        raise NotImplementedError

    def prototype_bank(self) -> Prototypes:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        raise NotImplementedError
