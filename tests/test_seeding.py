"""Sprites started from the collection: k-means++ seeds, colour-neutral (model.sprite_init = samples)."""

from __future__ import annotations

import torch

from pipeline.core.config import config_from_dict
from pipeline.models.base import DataShape
from pipeline.models.sprites.model import SpriteModel
from pipeline.models.sprites.seeding import LUMA, neutral_colours, seed_sprites


def _discs(colours: list[tuple[float, float, float]], n: int = 30) -> torch.Tensor:
    """n crops per colour: a disc (shape A) or a bar (shape B) in that colour on grey, uint8."""
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    disc = ((yy - 8) ** 2 + (xx - 8) ** 2 < 25).float()
    bar = ((yy - 8).abs() < 2).float()
    crops = []
    for i, c in enumerate(colours):
        for j in range(n):
            shape = disc if j % 2 else bar
            img = 0.5 + shape * (torch.tensor(c).view(3, 1, 1) - 0.5)
            crops.append(img)
    return (torch.stack(crops) * 255).round().to(torch.uint8)


def test_seeds_keep_their_shapes_and_share_one_hue():
    crops = _discs([(0.9, 0.7, 0.2), (0.8, 0.8, 0.85), (0.6, 0.35, 0.2)])   # gold, silver, bronze
    seeds = seed_sprites(crops, 4, torch.Generator().manual_seed(0))
    assert seeds.shape == (4, 3, 16, 16)
    # every seed is one grey image times the same per-channel tint: the ratios between channels agree
    ratio = seeds[:, 0] / seeds[:, 2].clamp_min(1e-6)
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-4)
    # the shapes are kept: each seed correlates with its luminance-neutral source, disc or bar
    mean = (crops.float() / 255).mean(dim=(0, 2, 3))
    neutral = neutral_colours(crops.float() / 255, mean)
    best = [max(float(torch.nn.functional.cosine_similarity(s.flatten() - s.mean(), n.flatten() - n.mean(), dim=0))
                for n in neutral) for s in seeds]
    assert min(best) > 0.999


def test_grey_crops_are_seeded_unchanged():
    crops = (torch.rand(20, 1, 8, 8) * 255).to(torch.uint8)
    seeds = seed_sprites(crops, 3, torch.Generator().manual_seed(1))
    originals = crops.float() / 255
    for s in seeds:
        assert any(torch.equal(s, o) for o in originals)


def test_the_luminance_of_the_mean_colour_is_kept():
    x = torch.rand(2, 3, 4, 4) * 0.6
    mean = torch.tensor([0.8, 0.6, 0.3])
    out = neutral_colours(x, mean)
    luma_in = (x * LUMA.view(1, 3, 1, 1)).sum(1)
    luma_out = (out * LUMA.view(1, 3, 1, 1)).sum(1)
    assert torch.allclose(luma_in, luma_out, atol=1e-5)     # (no clamping at these values)


def test_objects_preset_starts_from_the_seeds():
    crops = _discs([(0.9, 0.7, 0.2), (0.6, 0.35, 0.2)])
    cfg = config_from_dict({"ingest": {"size": 16}, "model": {"sprites": 2}}, "objects")
    assert cfg.model.sprite_init == "samples" and cfg.model.background_init == "border"
    model = SpriteModel.build(cfg, DataShape(channels=3, size=16), crops)
    g = torch.Generator().manual_seed(cfg.train.seed)
    torch.randperm(crops.shape[0], generator=g)          # build draws its sample of crops first
    seeds = seed_sprites(crops, 2, g)
    assert torch.allclose(model.prototypes.detach(), seeds, atol=1e-6)
    assert torch.allclose(model.backgrounds.detach(), torch.full_like(model.backgrounds, 0.5), atol=2 / 255)
