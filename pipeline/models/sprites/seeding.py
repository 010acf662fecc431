"""Sprites started from the collection (`model.sprite_init = samples`): k-means++ seeding."""

from __future__ import annotations

import torch

__all__ = ["seed_sprites"]


def seed_sprites(crops: torch.Tensor, k: int, generator: torch.Generator, pool: int = 2000) -> torch.Tensor:
    """k-means++ seeding: k diverse crops (each next one drawn with probability ∝ its squared
    distance to the nearest chosen one), compared at a coarse 8 × 8 resolution so small shifts
    do not count. crops (N, C, S, S) uint8 → (k, C, S, S) float in [0, 1]."""
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
