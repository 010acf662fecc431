"""What the sprite model hands to the decompose stage and the report (the interface's
`decompose_batch`, `prototypes` and `summary`), and the readable transformation values of the
exports: position → scale, tx, ty; color → gain, offset (means over channels); any other module →
the norm of its parameters (its distance from the identity).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.models.base import Prototypes, Record
from pipeline.models.sprites.compositor import instance_labels, nearest_layer_labels
from pipeline.models.sprites.transforms import soft_clamp

__all__ = ["SpriteRecord", "readable_values", "value_columns"]


def value_columns(name: str, width: int) -> list[str]:
    """The readable columns of transformation module `name` with `width` parameters."""
    if width == 0:
        return []
    if name.endswith("position"):
        return [f"{name}_scale", f"{name}_tx", f"{name}_ty"]
    if name.endswith("color"):
        return [f"{name}_gain", f"{name}_offset"]
    return [f"{name}_norm"]


def _module_values(name: str, beta: np.ndarray, init_scale: float) -> list[np.ndarray]:
    """beta (N, P) float64 → one (N,) array per column of `value_columns`."""
    if beta.shape[1] == 0:
        return []
    if name.endswith("position"):
        return [init_scale * np.exp(beta[:, 0]), beta[:, 1], beta[:, 2]]
    if name.endswith("color"):
        ab = beta.reshape(len(beta), -1, 2)
        return [(1 + ab[:, :, 0]).mean(1), ab[:, :, 1].mean(1)]
    return [np.linalg.norm(beta, axis=1)]


def readable_values(params: dict[str, np.ndarray], order: list[str], init_scale: float) -> dict[str, np.ndarray]:
    """params name → (B, L, P) float32 → column → (B, L) float64, modules in `order` first (the
    model's), then the others sorted (e.g. quarter_turns)."""
    names = [n for n in order if n in params] + sorted(n for n in params if n not in order)
    out: dict[str, np.ndarray] = {}
    for name in names:
        beta = params[name].astype(np.float64)                                # (B, L, P)
        B, L, P = beta.shape
        values = _module_values(name, beta.reshape(B * L, P), init_scale)
        for col, v in zip(value_columns(name, P), values):
            out[col] = v.reshape(B, L)
    return out


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


class SpriteRecord:
    """Mixin of `SpriteModel`: the inference side of `pipeline.models.base.Model`."""

    @torch.no_grad()
    def decompose_batch(self, x: torch.Tensor) -> Record:
        d = self.decompose(x)
        K = self.K
        sprite = torch.where(d.choice >= K, -1, d.choice)                       # (B, L)
        inst = instance_labels(d.alphas, d.occlusion)                            # (B, S, S) 0 = background
        padded = torch.cat([torch.full_like(sprite[:, :1], -1), sprite], dim=1)   # (B, L+1), index by label
        sem = torch.gather(padded, 1, inst.flatten(1)).view_as(inst) + 1          # 0 = background
        nonempty = sprite >= 0
        runner_up = torch.where(d.runner_up >= K, -1, d.runner_up)
        params = {k: v.float() for k, v in d.params.items()}
        order = list(self.sprite_seq) + [f"layer_{n}" for n in self.layer_seq]
        values = readable_values({k: v.cpu().numpy() for k, v in params.items()}, order, self.cfg.position_scale)
        return Record(
            sprite=sprite, runner_up=runner_up, layer_margin=(d.layer_cost - d.cost[:, None]).clamp(min=0),
            background=d.background if self.M else torch.full_like(d.background, -1),
            occlusion=(d.occlusion.permute(2, 0, 1) > 0.5).to(torch.uint8), recon=d.recon.clamp(0, 1),
            error=d.error, cost=d.cost, margin=d.margin, semantic=sem, instance=inst,
            instance_fg=nearest_layer_labels(inst, d.layers, x, nonempty),
            layers=torch.cat([d.layers, d.alphas], dim=2).transpose(0, 1),        # (B, L, C+1, S, S)
            backdrop=d.backdrop if self.M else None, params=params, values=values)

    @torch.no_grad()
    def prototype_bank(self) -> Prototypes:
        colours, masks = self.sprite_images()
        backgrounds = self.background_images()
        return Prototypes(
            colours=_to_uint8(soft_clamp(colours)),
            masks=_to_uint8(soft_clamp(masks)) if masks is not None else None,
            backgrounds=_to_uint8(soft_clamp(backgrounds)) if backgrounds is not None else None)

    def summary(self) -> dict[str, Any]:
        transforms = ", ".join(self.sprite_seq + [f"{x} (per layer)" for x in self.layer_seq]) or "none"
        transparent = self.transparent
        return {
            "kind": self.kind, "sprites": self.K, "layers": self.L, "backgrounds": self.M,
            "transparent": transparent, "sprite_size": self.s, "empty_sprite": bool(self.has_empty),
            "facts": [["Transparency", "learned masks" if transparent else "opaque prototypes (clustering)"],
                      ["Transformations", transforms],
                      ["Sprites drawn by", "an MLP generator from a latent per sprite (deep sprites)"
                       if self.cfg.generator == "mlp" else "their own pixels (DTI-Sprites)"],
                      ["Selection", self._selection_fact()]],
            "describe": f"K={self.K} sprites, L={self.L} layers",
        }

    def _selection_fact(self) -> str:
        if self.cfg.selection == "predicted":
            tau = "learned temperature" if self.cfg.learn_tau else f"temperature {self.cfg.tau:g}"
            if self.cfg.straight_through:
                tau += ", straight-through one-hot choices in training"
            if self.cfg.selection_warmup > 0:
                tau += f", min-loss greedy choices for the first {self.cfg.selection_warmup:g} epochs"
            return (f"predicted by a linear head (Gumbel-softmax, {tau}; margin = the gap between the two "
                    "highest probabilities)")
        return f"min-loss, {self.cfg.selection} (margin = the cost gap to the runner-up)"
