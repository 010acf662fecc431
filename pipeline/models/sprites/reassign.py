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
Likewise (`model.reassign_duplicate`, ours) the less used of two sharp sprites with the same shape
(mask overlap, best over shifts) is re-seeded from the most used other sprite: two sprites for one
shape leave another shape without one. A sprite just re-seeded (or copied) is its source's twin, so
it is not judged a duplicate until it has had time to drift apart (`settled`, train.SETTLE checks).
A copy is expected to take half its source's images, so several re-seedings in one check spread
over the most used sprites instead of making triplets of one.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from pipeline.models.sprites.transforms import soft_clamp

__all__ = ["Reseed", "mask_blur", "mask_overlap", "reassign_unused", "redundant_sprites", "restart_sprite",
           "worst_explained"]

NOISE = 1e-4
VISIBLE = 0.5   # a sprite whose mask never reaches this opacity draws nothing
BLUR_FLOOR = 0.3  # a mask blurrier than the median but below this is soft, not a blob


class Reseed(NamedTuple):
    """Sprite `sprite` restarted as a copy of sprite `source`, and why (shown in the report)."""
    sprite: int
    source: int
    reason: str


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
    rows = model.sprite_rows()      # pixels (colours, masks) or the latents of a generator
    with torch.no_grad():
        for p in rows:
            p[dst] = p[src]
            _copy_state(optimizer, p, dst, src)
        for l in range(L):
            for p in model.sprite_heads.mlp.parameters():
                p[l * K + dst] = p[l * K + src]
                _copy_state(optimizer, p, l * K + dst, l * K + src)
        head = getattr(model, "selection_head", None)       # predicted selection: the sprite's logits
        if head is not None:
            for l in range(L):
                for p in (head.linear.weight, head.linear.bias):
                    p[l * head.K1 + dst] = p[l * head.K1 + src]
                    _copy_state(optimizer, p, l * head.K1 + dst, l * head.K1 + src)
        for k in (dst, src):
            rows[0][k] += torch.randn_like(rows[0][k]) * NOISE


def mask_blur(masks: torch.Tensor) -> torch.Tensor:
    """How blurred each mask is: the mean of 4 a (1 - a) weighted by the opacity a, 0 for a binary
    mask, 1 for a mask at 1/2 everywhere. masks (K, 1, h, w) raw parameters -> (K,)."""
    a = soft_clamp(masks.detach()).clamp(0, 1).flatten(1)
    return (4 * a * (1 - a)).sum(1) / a.sum(1).clamp_min(1e-6)


def mask_overlap(masks: torch.Tensor) -> torch.Tensor:
    """Intersection over union of the masks' opaque parts (opacity above 1/2), best over integer
    shifts of up to a third of the sprite size: two sprites drawing one shape at different places
    of their canvas overlap fully. masks (K, 1, h, w) raw parameters -> (K, K), 1 on the diagonal."""
    opaque = (soft_clamp(masks.detach()).clamp(0, 1) > VISIBLE).float()      # (K, 1, h, w)
    h, w = opaque.shape[-2:]
    inter = F.conv2d(opaque, opaque, padding=(h // 3, w // 3)).flatten(2).amax(2)   # (K, K)
    area = opaque.flatten(1).sum(1)
    return inter / (area[:, None] + area[None, :] - inter).clamp_min(1)


def _duplicates(model, masks: torch.Tensor, counts: torch.Tensor, overlap: float, settled: torch.Tensor,
                blur: torch.Tensor) -> dict[int, int]:
    """{less used sprite: its twin} for pairs of settled, sharp sprites (raw `masks` (K, 1, h, w), mask_blur `blur` (K,)
    below BLUR_FLOOR) whose masks overlap at least `overlap`."""
    sharp = blur < BLUR_FLOOR
    iou = mask_overlap(masks)
    twins = {}
    for i in range(model.K):
        for j in range(i + 1, model.K):
            if iou[i, j] >= overlap and sharp[i] and sharp[j] and settled[i] and settled[j]:
                low, high = (i, j) if counts[i] < counts[j] else (j, i)
                if low not in twins and high not in twins:
                    twins[low] = high
    return twins


def redundant_sprites(selection: torch.Tensor, ratio: float, settled: torch.Tensor) -> dict[int, str]:
    """selection (K, 3): per sprite the crops it explained since the last check, their summed margin
    to the runner-up and their summed cost. A sprite whose crops would cost almost as little with
    their runner-up (mean margin below `ratio` × the median sprite's) is redundant: one letter drawn
    by two sprites. Returns {sprite: why} for the settled redundant one with the lowest margin."""
    n, margin = selection[:, 0], selection[:, 1]
    used = n > 0
    if used.sum() < 3:
        return {}
    mean_margin = torch.where(used, margin / n.clamp(min=1), torch.full_like(margin, math.inf))
    median = float(mean_margin[used].median())
    low = torch.where(settled & used, mean_margin, torch.full_like(mean_margin, math.inf))
    k = int(torch.argmin(low))
    if not math.isfinite(float(low[k])) or float(low[k]) >= ratio * median:
        return {}
    return {k: f"its crops were explained almost as well by another sprite (margin {float(low[k]) / median:.2f}× the median)"}


def worst_explained(selection: torch.Tensor) -> torch.Tensor:
    """(K,) the mean cost of each sprite's crops since the last check (−1 for a sprite with fewer
    than a quarter of the median sprite's crops): the highest marks the sprite most likely to draw
    two shapes, the best source of a re-seeded sprite when frequencies are unequal."""
    n, cost = selection[:, 0], selection[:, 2]
    enough = n >= max(1.0, float(n[n > 0].median()) / 4) if (n > 0).any() else n > 0
    return torch.where(enough, cost / n.clamp(min=1), torch.full_like(cost, -1.0))


def reassign_unused(model, optimizer: torch.optim.Optimizer, usage: torch.Tensor, threshold: float,
                    blurred: float = 0.0, duplicate: float = 0.0,
                    settled: torch.Tensor | None = None, redundant: float = 0.0,
                    selection: torch.Tensor | None = None) -> list[Reseed]:
    """usage (L, K') selection counts since the last check (K' includes the empty sprite);
    `blurred` > 0 also re-seeds the blurriest sprite when its mask_blur is that many times the median;
    `duplicate` > 0 also re-seeds the less used of two sprites whose mask_overlap is at least that,
    among the `settled` ones (K,) bool (default all); `redundant` > 0 also re-seeds a sprite whose
    crops' margin to their runner-up is below that fraction of the median sprite's (`selection`,
    see redundant_sprites), and then every re-seeded sprite restarts from the sprite worst at its
    crops (worst_explained) instead of the most used one, which with unequal frequencies is the
    commonest letter, copied again and again. Returns the re-seedings made."""
    K = model.K
    counts = usage[:, :K].sum(0).double()          # (K,) over layers; the empty sprite is not a sprite
    if counts.sum() == 0:
        return []
    settled = torch.ones(K, dtype=torch.bool) if settled is None else settled
    share = counts / counts.sum()
    if model.has_empty:  # relative to the most used sprite, since many layers may be empty
        share = counts / counts.max()
    why = {k: "rarely used" for k in range(K) if share[k] < threshold / K}
    by_error = redundant > 0 and selection is not None
    if by_error:
        for k, reason in redundant_sprites(selection, redundant, settled).items():
            why.setdefault(k, reason)
    twins = {}
    with torch.no_grad():
        masks = model.sprite_images()[1]
    if masks is not None:
        visible = soft_clamp(masks).flatten(1).amax(1) >= VISIBLE
        why.update({k: "its mask faded" for k in range(K) if not visible[k]})
        blur = mask_blur(masks) if (blurred > 0 or duplicate > 0) and K > 2 else None
        if blurred > 0 and blur is not None:
            worst = int(torch.argmax(blur))
            if blur[worst] >= max(BLUR_FLOOR, blurred * float(blur.median())):
                why.setdefault(worst, "its mask stayed a blur")
        if duplicate > 0 and blur is not None:
            twins = _duplicates(model, masks, counts, duplicate, settled, blur)
            for k, twin in twins.items():
                why.setdefault(k, f"it drew the same shape as sprite {twin}")
    moved = []
    score = worst_explained(selection) if by_error else counts.clone()    # the higher, the better a source
    for k in sorted(why):
        # the twin of a duplicate is not a source: its copy would be the same duplicate again
        others = score.clone()
        others[k] = -1
        if k in twins:
            others[twins[k]] = -1
        src = int(torch.argmax(others))
        if others[src] < 0 or (not by_error and counts[src] < counts[k]):
            continue
        restart_sprite(model, optimizer, k, src)
        # the copy will take about half its source's images: a second copy in this check comes
        # from another sprite unless this one still stands twice as high (no triplets of one sprite)
        score[src] /= 2
        score[k] = -1      # a copy made in this check is not a source in it
        moved.append(Reseed(k, src, why[k]))
    return moved
