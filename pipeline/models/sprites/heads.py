"""Transformation heads: for every group (a (layer, sprite) pair, a layer, or a background) an MLP
F → 128 → 128 → P predicting the parameters of a whole transformation sequence at once.

All groups run as batched matrix products (no Python loop per sprite). The last layer starts at
zero, so every transformation starts at the identity (zero parameters = identity); modules not yet
switched on by the curriculum get their parameters multiplied by 0 (identity, no gradient).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GroupedMLP", "SequenceHeads"]

HIDDEN = 128


class GroupedMLP(nn.Module):
    """G independent MLPs F → hidden → hidden → P evaluated together: (B, F) → (G, B, P)."""

    def __init__(self, groups: int, features: int, outputs: int, hidden: int = HIDDEN):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(groups, features, hidden))
        self.b1 = nn.Parameter(torch.zeros(groups, 1, hidden))
        self.w2 = nn.Parameter(torch.empty(groups, hidden, hidden))
        self.b2 = nn.Parameter(torch.zeros(groups, 1, hidden))
        self.w3 = nn.Parameter(torch.zeros(groups, hidden, outputs))
        self.b3 = nn.Parameter(torch.zeros(groups, 1, outputs))
        for w, fan_in in ((self.w1, features), (self.w2, hidden)):  # PyTorch's Linear default init
            if fan_in:
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(w, -bound, bound)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.w3.shape[-1] == 0:
            return features.new_zeros(self.w3.shape[0], features.shape[0], 0)
        h = torch.relu(torch.einsum("bf,gfh->gbh", features, self.w1) + self.b1)
        h = torch.relu(torch.baddbmm(self.b2, h, self.w2))
        return torch.baddbmm(self.b3, h, self.w3)  # (G, B, P)

    def copy_group(self, dst: int, src: int) -> None:
        with torch.no_grad():
            for p in self.parameters():
                p[dst] = p[src]


class SequenceHeads(nn.Module):
    """Heads of one transformation sequence for G groups; `forward` → list of (G, B, P_i)."""

    def __init__(self, groups: int, features: int, sizes: list[int]):
        super().__init__()
        self.sizes = list(sizes)
        # no transformation, no head (an empty sequence would still carry two hidden layers)
        self.mlp = GroupedMLP(groups, features, sum(sizes), hidden=HIDDEN if sum(sizes) else 0)
        # 1 = switched on by the curriculum (a buffer, so checkpoints keep it).
        self.register_buffer("active", torch.ones(len(sizes)))

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        out = self.mlp(features)
        betas = list(torch.split(out, self.sizes, dim=-1)) if self.sizes else []
        return [b * self.active[i] for i, b in enumerate(betas)]
