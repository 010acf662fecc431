"""What the sprite model's rendering and decomposition hand on: every candidate rendered, and the
decomposition of a batch (the raw tensors `record.py` turns into the interface's `Record`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Rendered", "Decomposition"]


@dataclass
class Rendered:
    """Every candidate: layers (L, K·R, B, C, H, W), alphas (L, K·R, B, 1, H, W): candidate k·R + r
    is sprite k turned r · 360°/R (R = model.rotations); the empty sprite, candidate K·R when
    the model has one, is left to the selection (`select(empty=True)`), not rendered."""
    layers: torch.Tensor
    alphas: torch.Tensor


@dataclass
class Decomposition:
    """What `decompose` returns for a batch."""
    choice: torch.Tensor        # (B, L) sprite per layer, K = empty
    turns: torch.Tensor         # (B, L) turns (of 360°/R) of the chosen sprite (0 unless model.rotations > 1)
    cost: torch.Tensor          # (B,) selection cost (MSE + λ per non-empty sprite)
    error: torch.Tensor         # (B,) reconstruction MSE
    margin: torch.Tensor        # (B,) cost of the best alternative minus cost (≥ 0; small = ambiguous); predicted
                                # selection: the gap between the two highest probabilities of the least sure layer
    background: torch.Tensor    # (B,) chosen background prototype
    recon: torch.Tensor         # (B, C, H, W)
    layers: torch.Tensor        # (L, B, C, H, W) chosen sprites, transformed
    alphas: torch.Tensor        # (L, B, 1, H, W)
    backdrop: torch.Tensor      # (B, C, H, W) transformed background (zeros without background)
    occlusion: torch.Tensor     # (L, L, B) hard occlusion
    params: dict[str, torch.Tensor]  # name → (B, L, P) chosen sprite's parameters per module
    runner_up: torch.Tensor | None = None     # (B, L) best other sprite per layer, others fixed (K = empty, −1 = none)
    layer_cost: torch.Tensor | None = None    # (B, L) the cost with the runner-up (inf = none)
