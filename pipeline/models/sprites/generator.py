"""Where the sprites' pixels come from (`model.generator`): learned directly (`pixels`, DTI-Sprites)
or decoded from one learned latent per sprite by networks shared by all sprites (`mlp`, the
analysis paper's MLP sprite generator, §1.2 of ../shared/reference/other-models.md).

Both give the same thing to the rest of the model: raw images before the soft clamp — colours
(K, C, s, s), masks (K, 1, s, s), backgrounds (M, C, b, b) — so rendering, selection, re-seeding
and the report do not know which generator made them; the soft clamp comes after, in rendering.
The decoder's last layer starts with near-zero weights and the initial image as its bias (the
reference), so the first output is the initial image (constant colour, Gaussian mask, mean or
border background) as for raw pixels; where the initial images differ from sprite to sprite (crops
as seeds, masks turned evenly) the least-norm weights reaching each one are added.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpriteImages", "MLPGenerator", "Decoder", "LATENT_SIZE", "HIDDEN_SIZE"]

LATENT_SIZE = 128     # the reference's latent per sprite
HIDDEN_SIZE = 1024    # Linear(128, 1024) → GroupNorm(8) → ReLU → Linear(1024, C·h·w)
START_WEIGHT = 1e-10  # the last layer's initial weights: its output is its bias, the initial image


class Decoder(nn.Module):
    """latents (N, LATENT_SIZE) → raw images (N, *shape), started at `init` (N, *shape) for `latents`."""

    def __init__(self, init: torch.Tensor, latents: torch.Tensor):
        super().__init__()
        self.shape = tuple(init.shape[1:])
        self.hidden = nn.Sequential(nn.Linear(LATENT_SIZE, HIDDEN_SIZE), nn.GroupNorm(8, HIDDEN_SIZE), nn.ReLU())
        self.out = nn.Linear(HIDDEN_SIZE, init[0].numel())
        with torch.no_grad():
            # the mean image as the bias, near-zero weights (the reference); images that differ from
            # sprite to sprite (crops as seeds, masks turned evenly) are reached exactly by the
            # least-norm weights mapping each latent's hidden code to its difference from the mean
            target = init.flatten(1).double()                                  # (N, P)
            self.out.bias.copy_(target.mean(0))
            self.out.weight.fill_(START_WEIGHT)
            residual = target - target.mean(0)
            if residual.abs().max() > 0:
                h = self.hidden(latents).double()                              # (N, HIDDEN)
                self.out.weight.copy_(torch.linalg.lstsq(h, residual, driver="gelsd").solution.t())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(z)).view(z.shape[0], *self.shape)


class MLPGenerator(nn.Module):
    """N images per part decoded from N latents (N(0, 1), as the reference) by one shared decoder
    per part: a sprite's latent is shared by its colour and its mask decoders."""

    def __init__(self, inits: dict[str, torch.Tensor], count: int):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(count, LATENT_SIZE))
        self.decoders = nn.ModuleDict({name: Decoder(init, self.latents.detach()) for name, init in inits.items()})

    def forward(self) -> dict[str, torch.Tensor]:
        return {name: decoder(self.latents) for name, decoder in self.decoders.items()}


class SpriteImages:
    """Mixin of `SpriteModel`: where its sprites' and backgrounds' raw images come from (model.generator)."""

    def _init_images(self, generator: str, colours: torch.Tensor, masks: torch.Tensor | None,
                     backgrounds: torch.Tensor | None) -> None:
        """The sprites' and backgrounds' pixels, raw (before the soft clamp): parameters themselves
        (`pixels`), or decoded from a latent per sprite and per background (`mlp`) starting at the
        same images. Parameter names stay those of earlier versions for pixels (checkpoints load)."""
        self.sprite_generator = self.background_generator = None
        if generator == "mlp":
            parts = {"colours": colours, **({"masks": masks} if masks is not None else {})}
            self.sprite_generator = MLPGenerator(parts, self.K)
            for name in ("prototypes", "masks", "backgrounds"):
                self.register_parameter(name, None)
            if backgrounds is not None:
                self.background_generator = MLPGenerator({"backgrounds": backgrounds}, self.M)
            return
        self.prototypes = nn.Parameter(colours.clone())
        for name, images in (("masks", masks), ("backgrounds", backgrounds)):
            if images is None:
                self.register_parameter(name, None)
            else:
                setattr(self, name, nn.Parameter(images.clone()))

    def sprite_images(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw colours (K, C, s, s) and masks (K, 1, s, s) or None (opaque prototypes)."""
        if self.sprite_generator is None:
            return self.prototypes, self.masks
        images = self.sprite_generator()
        return images["colours"], images.get("masks")

    def background_images(self) -> torch.Tensor | None:
        """Raw backgrounds (M, C, b, b), or None without background."""
        if self.background_generator is not None:
            return self.background_generator()["backgrounds"]
        return self.backgrounds

    def sprite_rows(self) -> list[nn.Parameter]:
        """The parameters holding one row per sprite, the first perturbed when one is re-seeded: pixels
        (colours, masks) or the latents (the decoders are shared)."""
        if self.sprite_generator is not None:
            return [self.sprite_generator.latents]
        return [p for p in (self.prototypes, self.masks) if p is not None]

    def sprite_parameters(self) -> list[nn.Parameter]:
        """Everything that draws the sprites and backgrounds (learning rate train.sprite_lr)."""
        generators = [g for g in (self.sprite_generator, self.background_generator) if g is not None]
        if generators:
            return [p for g in generators for p in g.parameters()]
        return [p for p in (self.prototypes, self.masks, self.backgrounds) if p is not None]
