"""Re-seeding of under-used sprites (DTI-Clustering / DTI-Sprites "reassignment").

A sprite chosen for fewer than threshold / K of the selections since the last check, or one whose
mask has faded everywhere below 1/2 (it draws nothing: the greedy selection may still pick it as a
free blank layer, so its usage alone would keep it alive), restarts as a slightly perturbed copy of
the most used sprite: its colour (+ N(0, 1e-4²) noise), its mask, its
transformation heads in every layer, and the Adam moments of all of these are copied (cloned, so
the two sprites never share a moment buffer — the reference copies some by reference and forgets
the colour's). The source sprite gets the same small noise, so the two drift apart.

Optionally (`model.reassign_blurred`, ours, not the reference's) the blurriest sprite is re-seeded
too when its mask is that many times blurrier than the median sprite's: on scenes a sprite can stay
a soft blob that is chosen often enough to survive (it patches the edges of other objects) while
the most used sprite explains two shapes at once; re-seeding the blob from that sprite splits them.
"""

from __future__ import annotations

import torch

from pipeline.transforms import soft_clamp

__all__ = ["mask_blur", "reassign_unused", "restart_sprite"]

NOISE = 1e-4
VISIBLE = 0.5   # a sprite whose mask never reaches this opacity draws nothing
BLUR_FLOOR = 0.3  # a mask blurrier than the median but below this is soft, not a blob


def _copy_state(optimizer: torch.optim.Optimizer, param: torch.nn.Parameter, dst, src) -> None:
    state = optimizer.state.get(param)
    if not state:
        return
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][dst] = state[key][src].clone()


def restart_sprite(model, optimizer: torch.optim.Optimizer, dst: int, src: int) -> None:
    """Make sprite `dst` a perturbed copy of sprite `src` (weights, heads, optimiser moments)."""
    K, L = model.K, model.L
    with torch.no_grad():
        for p in (model.prototypes, model.masks):
            if p is None:
                continue
            p[dst] = p[src]
            _copy_state(optimizer, p, dst, src)
        for l in range(L):
            for p in model.sprite_heads.mlp.parameters():
                p[l * K + dst] = p[l * K + src]
                _copy_state(optimizer, p, l * K + dst, l * K + src)
        for k in (dst, src):
            model.prototypes[k] += torch.randn_like(model.prototypes[k]) * NOISE


def mask_blur(masks: torch.Tensor) -> torch.Tensor:
    """How blurred each mask is: the mean of 4 a (1 - a) weighted by the opacity a, 0 for a binary
    mask, 1 for a mask at 1/2 everywhere. masks (K, 1, h, w) raw parameters -> (K,)."""
    a = soft_clamp(masks.detach()).clamp(0, 1).flatten(1)
    return (4 * a * (1 - a)).sum(1) / a.sum(1).clamp_min(1e-6)


def reassign_unused(model, optimizer: torch.optim.Optimizer, usage: torch.Tensor, threshold: float,
                    blurred: float = 0.0) -> list[int]:
    """usage (L, K') selection counts since the last check (K' includes the empty sprite);
    `blurred` > 0 also re-seeds the blurriest sprite when its mask_blur is that many times the median.
    Returns the re-seeded sprite indices."""
    K = model.K
    counts = usage[:, :K].sum(0).double()          # (K,) over layers; the empty sprite is not a sprite
    if counts.sum() == 0:
        return []
    share = counts / counts.sum()
    if model.has_empty:  # relative to the most used sprite, since many layers may be empty
        share = counts / counts.max()
    low = [k for k in range(K) if share[k] < threshold / K]
    if model.masks is not None:  # invisible sprites
        visible = soft_clamp(model.masks.detach()).flatten(1).amax(1) >= VISIBLE
        low = sorted(set(low) | {k for k in range(K) if not visible[k]})
        if blurred > 0 and K > 2:
            blur = mask_blur(model.masks)
            worst = int(torch.argmax(blur))
            if blur[worst] >= max(BLUR_FLOOR, blurred * float(blur.median())):
                low = sorted(set(low) | {worst})
    moved = []
    for k in low:
        src = int(torch.argmax(counts))
        if src == k:
            continue
        restart_sprite(model, optimizer, k, src)
        moved.append(k)
    return moved
