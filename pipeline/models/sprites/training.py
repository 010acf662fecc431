"""How the sprite model trains, as the hooks of the model interface: two parameter groups (sprites
and heads), sprite freezing, the curriculum of sprite transformations (by epoch, or early on a loss
plateau), and the periodic re-seeding of under-used, blurred or duplicate sprites.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from pipeline.models.base import Clock
from pipeline.models.sprites.reassign import reassign_unused

__all__ = ["SpriteTraining", "SpriteTrainState", "SETTLE", "PLATEAU"]

SETTLE = 20    # re-seeding checks before a re-seeded sprite and its source may be judged duplicates
PLATEAU = 0.01  # relative loss improvement over a patience window below which the loss has plateaued
SNAPSHOTS = 10  # pictures of the sprites kept over a schedule (and one at its start)


@dataclass
class SpriteTrainState:
    """The sprite model's training state besides its weights (saved in every checkpoint)."""
    usage: list = field(default_factory=list)        # (L, K') counts since the last re-seeding
    reseeds: list = field(default_factory=list)      # [step, epoch, sprite, source, reason] of each re-seeding
    touched: list = field(default_factory=list)      # (K,) step at which each sprite was last re-seeded or copied
    curriculum_on: int = 0          # sprite transformations switched on
    curriculum_since: int = 0       # step at which the last one switched on
    curriculum_early: int = 0       # how many the loss plateaus switched on (model.curriculum_patience)
    frozen: bool = False            # whether the sprites were frozen at the last step
    selection: list = field(default_factory=list)    # (K, 3) crops, summed margin, summed cost since the last check
    snapshots: list = field(default_factory=list)    # [epoch, colours, masks or None, backgrounds or None] (uint8)
    progress: float = 0.0           # epochs done at the last record point


class SpriteTraining:
    """Mixin of `SpriteModel`: the training hooks of `pipeline.models.base.Model`."""

    def param_groups(self, cfg) -> list[dict[str, Any]]:
        return [
            {"params": self.sprite_parameters(), "lr": cfg.sprite_lr, "weight_decay": 0.0, "name": "sprites",
             "decay": cfg.decay_sprites},
            {"params": self.head_parameters(), "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "heads",
             "decay": True},
        ]

    def start_training(self, cfg, state: dict[str, Any]) -> None:
        self.train_cfg = cfg
        self.train_state = SpriteTrainState(**state)
        K1 = self.K + int(self.has_empty)
        if not self.train_state.usage:
            self.train_state.usage = [[0] * K1 for _ in range(self.L)]
        if not self.train_state.touched:
            self.train_state.touched = [-SETTLE * max(cfg.reassign_every, 1)] * self.K
        if not self.train_state.selection:
            self.train_state.selection = [[0, 0.0, 0.0] for _ in range(self.K)]

    def training_state(self) -> dict[str, Any]:
        return asdict(self.train_state)

    def training_step(self, x: torch.Tensor, clock: Clock) -> torch.Tensor:
        st = self.train_state
        on = self.set_epoch(clock.progress, st.curriculum_early)
        if on != st.curriculum_on:
            st.curriculum_on, st.curriculum_since = on, clock.step
        st.frozen = clock.progress < self.train_cfg.freeze_sprites
        self.warming = self.predicted and clock.progress < self.cfg.selection_warmup
        self.colours_frozen = clock.progress < self.train_cfg.freeze_colours
        if self.cfg.reassign_redundant > 0:   # the margins that tell a redundant sprite
            loss, choice, _, (cost, second) = self(x, frozen=st.frozen, stats=True)
            self._add_selection(choice, cost, second)
        else:
            loss, choice, _ = self(x, frozen=st.frozen)
        counts = torch.zeros(self.L, self.K + int(self.has_empty), dtype=torch.long)
        counts.scatter_add_(1, choice.t().cpu(), torch.ones_like(choice.t().cpu()))
        st.usage = (torch.tensor(st.usage) + counts).tolist()
        return loss

    def after_step(self, optimizer: torch.optim.Optimizer, clock: Clock) -> None:
        """Re-seeding every train.reassign_every steps; none while the sprites are frozen, and none
        after the last milestone, when a copy has too little learning left to become a shape of its
        own and would stay its source's twin (ours: the reference re-seeds to the end)."""
        cfg, st = self.train_cfg, self.train_state
        if not cfg.reassign_every or clock.step % cfg.reassign_every or st.frozen or clock.after_last_milestone:
            return
        settled = torch.tensor(st.touched) <= clock.step - SETTLE * cfg.reassign_every
        moved = reassign_unused(self, optimizer, torch.tensor(st.usage), self.cfg.reassign_threshold,
                                self.cfg.reassign_blurred, self.cfg.reassign_duplicate, settled,
                                redundant=self.cfg.reassign_redundant, selection=torch.tensor(st.selection))
        epoch = round(clock.epochs_done, 2)
        for r in moved:
            st.touched[r.sprite] = st.touched[r.source] = clock.step
            st.reseeds.append([clock.step, epoch, r.sprite, r.source, r.reason])
        st.usage = [[0] * (self.K + int(self.has_empty)) for _ in range(self.L)]
        st.selection = [[0, 0.0, 0.0] for _ in range(self.K)]

    def _add_selection(self, choice: torch.Tensor, cost: torch.Tensor, second: torch.Tensor | None) -> None:
        """Per sprite (the front layer's, as the exports count them for one layer): crops chosen,
        their summed margin to the runner-up and their summed cost."""
        if second is None:
            return
        k = choice[:, -1].cpu()
        real = k < self.K
        margin = (second - cost).clamp(min=0).nan_to_num(posinf=0.0).double().cpu()
        stats = torch.tensor(self.train_state.selection, dtype=torch.float64)
        stats[:, 0].index_add_(0, k[real], torch.ones(int(real.sum()), dtype=torch.float64))
        stats[:, 1].index_add_(0, k[real], margin[real])
        stats[:, 2].index_add_(0, k[real], cost.double().cpu()[real])
        self.train_state.selection = stats.tolist()

    def record(self, clock: Clock, history: dict[str, list], log: Callable[[str], None]) -> dict[str, Any]:
        """The share of each sprite (and the empty one) since the last re-seeding; switches the next
        transformation of the curriculum on early when the loss has plateaued."""
        st = self.train_state
        st.progress = clock.epochs_done
        usage = np.array(st.usage, dtype=np.float64).sum(0)
        if clock.progress / max(self.train_cfg.epochs, 1e-9) * SNAPSHOTS >= len(st.snapshots):
            bank = self.prototype_bank()   # how the sprites form: one picture per tenth of the schedule (labelled by epochs done)
            st.snapshots.append([round(clock.epochs_done, 2), bank.colours, bank.masks, bank.backgrounds])
        if self._plateau(clock, history):
            st.curriculum_early = st.curriculum_on + 1
            log(f"\ntrain: the loss stopped improving at epoch {clock.progress:.1f}: switching on "
                f"{self.curriculum_order()[st.curriculum_on]}")
        return {"usage": (usage / max(usage.sum(), 1)).tolist()}

    def progress(self) -> dict[str, str]:
        used = sum(1 for c in np.array(self.train_state.usage).sum(0)[:self.K] if c > 0)
        return {"used": f"{used}/{self.K}"}

    def training_attrs(self) -> dict[str, Any]:
        n = len(self.train_state.reseeds)
        return {"reseeded": n, "reseeds_json": json.dumps(self.train_state.reseeds),
                "training_note": f"{n} sprites re-seeded"}

    def training_arrays(self) -> dict[str, np.ndarray]:
        """snapshots/*: the sprites at every tenth of the schedule, and as training left them."""
        st = self.train_state
        shots = list(st.snapshots)
        if not shots:
            return {}
        if round(st.progress, 2) > shots[-1][0]:
            bank = self.prototype_bank()
            shots.append([round(st.progress, 2), bank.colours, bank.masks, bank.backgrounds])
        out = {"snapshots/epoch": np.array([s[0] for s in shots], dtype=np.float64),
               "snapshots/colours": np.stack([s[1] for s in shots])}
        for i, name in ((2, "masks"), (3, "backgrounds")):
            if shots[0][i] is not None:
                out[f"snapshots/{name}"] = np.stack([s[i] for s in shots])
        return out

    def _plateau(self, clock: Clock, history: dict[str, list]) -> bool:
        """Whether the next transformation of the curriculum should switch on early: the mean loss of
        the last `curriculum_patience` epochs is within 1 % of the window before, both windows after
        the last switch."""
        st, patience = self.train_state, self.cfg.curriculum_patience
        if patience <= 0 or st.curriculum_on >= len(self.sprite_seq):
            return False
        window = max(1, round(patience * clock.steps_per_epoch))
        if clock.step - st.curriculum_since < 2 * window:
            return False
        steps, losses = np.asarray(history["step"]), np.asarray(history["loss"])
        last = losses[steps > clock.step - window]
        before = losses[(steps > clock.step - 2 * window) & (steps <= clock.step - window)]
        if not len(last) or not len(before):
            return False
        return float(before.mean() - last.mean()) < PLATEAU * float(before.mean())
