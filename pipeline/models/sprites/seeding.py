"""Sprites started from the collection (`model.sprite_init = samples`): k-means++ seeding of
colour-neutral crops."""

from __future__ import annotations

import torch

__all__ = ["seed_sprites", "neutral_colours"]

LUMA = torch.tensor([0.299, 0.587, 0.114])     # ITU-R BT.601 weights of R, G, B


def neutral_colours(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """x (N, C, S, S) → each image's luminance tinted with the mean colour `mean` (C,): the images
    keep their shapes and shading and lose their own hues (grey images are unchanged)."""
    if x.shape[1] == 1:
        return x
    luma = (x * LUMA.view(1, -1, 1, 1)).sum(1, keepdim=True)                     # (N, 1, S, S)
    return (luma * (mean / (mean * LUMA).sum().clamp_min(1e-6)).view(1, -1, 1, 1)).clamp(0, 1)


def seed_sprites(crops: torch.Tensor, k: int, generator: torch.Generator, pool: int = 2000) -> torch.Tensor:
    """k-means++ seeding: k diverse crops (each next one drawn with probability ∝ its squared
    distance to the nearest chosen one), compared at a coarse 8 × 8 resolution so small shifts
    do not count, and made colour-neutral: every seed is its luminance tinted with the
    collection's mean colour (`neutral_colours`), so that the sprites start told apart by shape, not by the
    colour of the metal, paper or ink of the crop they came from (the colour transformation maps a
    sprite to each crop's colours; seeds of the crops' own colours made the coins example's sprites
    one per metal). crops (N, C, S, S) uint8 → (k, C, S, S) float in [0, 1]."""
    idx = torch.randperm(crops.shape[0], generator=generator)[:max(pool, k)]
    x = crops[idx].float() / 255
    x = neutral_colours(x, x.mean(dim=(0, 2, 3)))
    small = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)            # (P, C*64)
    chosen = [int(torch.randint(len(idx), (1,), generator=generator))]
    dist = ((small - small[chosen[0]]) ** 2).sum(1)
    while len(chosen) < min(k, len(idx)):
        probs = dist / dist.sum() if dist.sum() > 0 else torch.full_like(dist, 1 / len(dist))
        nxt = int(torch.multinomial(probs, 1, generator=generator))
        chosen.append(nxt)
        dist = torch.minimum(dist, ((small - small[nxt]) ** 2).sum(1))
    return x[chosen]
