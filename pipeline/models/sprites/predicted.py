"""Predicted selection (`model.selection = "predicted"`): the deep-sprites paper's decision module.

Instead of trying candidates (min-loss selection: exhaustive K^L, or greedy sweeps), a linear head
maps the encoder's features to L × K' logits (K' = K sprites, + 1 with the empty sprite), turned
into probabilities p (B, L, K') by a soft Gumbel-softmax while training and a softmax at
decompose (the choice is the argmax). Every sprite of every layer is rendered once, with gradient,
and each layer becomes the probability-weighted mixture of its sprites, composited as usual:

    coloured_l = Σ_k p_lk α_lk c_lk,  α_l = Σ_k p_lk α_lk,   x̂ = Σ_l T_l · coloured_l + Π_l (1 − α_l) · bg

(`compositor.composite_premultiplied`; with one-hot p this is ordinary alpha compositing), so the
cost grows linearly with L. Regularisers (weights in `model.*_weight`, 0 = off):

* L_freq = 1 − Σ min(f, θ): f the sprites' share of use in the batch (L·K entries summing to 1;
  with several layers each layer's p is first divided by its largest, as the reference), θ =
  model.freq_threshold / K. It keeps every sprite in use, the part re-seeding plays in min-loss
  selection.
* L_bin = mean 6 p (1 − p), the Beta(2, 2) density: 0 at p ∈ {0, 1}, highest at 1/2.
* L_empty = mean over layers, sprites (the empty one included) and crops of p for the non-empty
  sprites. With one-hot p it is n_nonempty / (L · K'), so it matches min-loss selection's
  `model.empty_penalty` λ (a cost per non-empty sprite) when λ_empty = λ · L · K'.

Pure functions and one small module; the sprite model wires them in (`SpriteModel.forward`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.core.config import ModelConfig
from pipeline.errors import SpritesError
from pipeline.models.sprites.compositor import composite, composite_premultiplied
from pipeline.models.sprites.decomposition import Decomposition

__all__ = ["SelectionHead", "PredictedSelection", "check_predicted", "MIN_LOSS_ONLY", "gumbel_softmax", "mix_layers",
           "freq_loss", "bin_loss", "empty_loss", "top_two", "straight_through", "WARMUP_WEIGHT"]

# the warm-up's cross-entropy (≈ log K' at the start) against a reconstruction error of ≈ 0.01 – 0.05:
# it must teach the head without taking the shared encoder away from the transformations
WARMUP_WEIGHT = 0.01


class SelectionHead(nn.Module):
    """features (B, F) → logits (B, L, K'); the temperature τ is fixed or softplus(θ), learned."""

    def __init__(self, features: int, layers: int, candidates: int, tau: float, learn_tau: bool):
        super().__init__()
        self.L, self.K1 = layers, candidates
        self.linear = nn.Linear(features, layers * candidates)
        self.tau = tau
        if learn_tau:   # θ starts where softplus(θ) = τ
            self.theta = nn.Parameter(torch.tensor(tau + math.log(-math.expm1(-tau))))
        else:
            self.register_parameter("theta", None)

    def temperature(self) -> torch.Tensor:
        if self.theta is None:
            return self.linear.weight.new_tensor(self.tau)
        return nn.functional.softplus(self.theta)

    def forward(self, features: torch.Tensor, drop_last: bool = False) -> torch.Tensor:
        """`drop_last`: the last candidate (the empty sprite) gets probability 0 (while the sprites
        are frozen, as the reference)."""
        logits = self.linear(features).view(-1, self.L, self.K1)
        if drop_last:
            logits = torch.cat([logits[..., :-1], torch.full_like(logits[..., -1:], -math.inf)], dim=-1)
        return logits


def gumbel_softmax(logits: torch.Tensor, tau: torch.Tensor | float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Soft Gumbel-softmax over the last axis: softmax((logits + g) / τ), g ~ Gumbel(0, 1) drawn from
    `generator` (or torch's global one, seeded by train.seed). (..., K') → (..., K')."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    tiny = torch.finfo(logits.dtype).tiny
    g = -torch.log(-torch.log(u.clamp(min=tiny, max=1 - 1e-7)))
    return torch.softmax((logits + g) / tau, dim=-1)


def straight_through(p: torch.Tensor) -> torch.Tensor:
    """Straight-through (Jang et al. 2017): the one-hot argmax of p (..., K') in the forward pass,
    p's gradient in the backward one."""
    hard = torch.nn.functional.one_hot(p.argmax(dim=-1), p.shape[-1]).to(p.dtype)
    return hard + (p - p.detach())


def mix_layers(p: torch.Tensor, layers: torch.Tensor, alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """p (B, L, K') with layers (L, K, B, C, H, W) and alphas (L, K, B, 1, H, W) of the K real sprites
    (a K'-th, empty sprite draws nothing) → premultiplied colour (L, B, C, H, W), alpha (L, B, 1, H, W)."""
    K = layers.shape[1]
    w = p[..., :K].permute(1, 2, 0)[..., None, None, None]        # (L, K, B, 1, 1, 1)
    weighted = w * alphas                                         # (L, K, B, 1, H, W)
    return (weighted * layers).sum(1), weighted.sum(1)


def freq_loss(p: torch.Tensor, threshold: float, sprites: int) -> torch.Tensor:
    """L_freq of p (B, L, K') over the first `sprites` candidates (the empty one excluded);
    θ = threshold / sprites."""
    q = p[..., :sprites]
    if q.shape[1] > 1:      # several layers: each layer's probabilities relative to its largest
        q = q / q.amax(dim=-1, keepdim=True).clamp_min(1e-12)
    f = q.mean(0).flatten()                                        # (L·K,)
    f = f / f.sum().clamp_min(1e-12)
    return 1 - torch.clamp(f, max=threshold / sprites).sum()


def bin_loss(p: torch.Tensor) -> torch.Tensor:
    """L_bin = mean of the Beta(2, 2) density 6 p (1 − p) (p clamped to [1e-5, 1 − 1e-5], as the reference)."""
    q = p.clamp(1e-5, 1 - 1e-5)
    return (6 * q * (1 - q)).mean()


def empty_loss(p: torch.Tensor, sprites: int) -> torch.Tensor:
    """L_empty: the mean over crops, layers and all K' candidates of the real sprites' probabilities."""
    return p[..., :sprites].sum() / p.numel()


def top_two(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """p (B, L, K') → choice (B, L), runner-up (B, L) and the gap between their probabilities (B, L):
    the margin of a predicted choice (a probability, not a cost difference as in min-loss selection)."""
    if p.shape[-1] == 1:     # one candidate: no runner-up (index K', past every candidate)
        only = torch.zeros(p.shape[:-1], dtype=torch.long, device=p.device)
        return only, only + 1, p[..., 0]
    values, indices = p.topk(2, dim=-1)
    return indices[..., 0], indices[..., 1], values[..., 0] - values[..., 1]


# options only a min-loss selection (exhaustive, greedy, auto) can honour: key → (its neutral value, why)
MIN_LOSS_ONLY = {
    "rotations": (1, "the turns are candidates of the min-loss search; the head predicts one probability per sprite"),
    "backgrounds": (1, "the background prototype is chosen by min-loss; predicted selection learns one"),
    "selection_downsample": (1, "predicted selection renders every sprite at full size for the loss"),
    "greedy_iterations": (1, "there is no greedy search to sweep"),
    "reassign_redundant": (0.0, "it needs the min-loss runner-up of every crop"),
}


def check_predicted(cfg: ModelConfig) -> None:
    """Refuse, before training, the settings predicted selection cannot honour."""
    for key, (neutral, why) in MIN_LOSS_ONLY.items():
        if key == "backgrounds" and not cfg.background:
            continue
        if getattr(cfg, key) != neutral:
            raise SpritesError(f"model.{key} = {getattr(cfg, key)} cannot be used with model.selection = predicted ({why}): "
                               f"set model.{key} = {neutral}, or choose a min-loss selection (exhaustive, greedy or auto)")
    if cfg.predicted_loss == "expected" and cfg.layers > 1:
        raise SpritesError(f"model.predicted_loss = expected is for one layer (it would need every combination of "
                           f"{cfg.layers} layers): set model.predicted_loss = composite or model.layers = 1")


class PredictedSelection:
    """Mixin of `SpriteModel`: training and decomposition with predicted selection."""

    def probabilities(self, features: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """Predicted selection: (B, L, K') soft Gumbel-softmax while training (one-hot in value with
        `model.straight_through`), softmax otherwise."""
        logits = self.selection_head(features, drop_last=frozen and self.has_empty)
        tau = self.selection_head.temperature()
        if not self.training:
            return torch.softmax(logits / tau, dim=-1)
        p = gumbel_softmax(logits, tau)
        return straight_through(p) if self.cfg.straight_through else p

    def choice_loss(self, features: torch.Tensor, choice: torch.Tensor, frozen: bool) -> torch.Tensor:
        """The warm-up's cross-entropy of the selection head's logits (B, L, K') against the min-loss
        choice (B, L) (K = the empty sprite; not a target while the sprites are frozen, when the
        head drops it)."""
        logits = self.selection_head(features, drop_last=frozen and self.has_empty)
        target = choice.clone()
        if frozen and self.has_empty:
            target[target == self.K] = -100          # cross_entropy's ignore_index
        if not torch.any(target >= 0):
            return logits.sum() * 0
        return nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)

    def _predicted_loss(self, x: torch.Tensor, features: torch.Tensor, noise: torch.Tensor | None,
                        frozen: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted selection's training loss (the composite or the expected error, + the
        regularisers, predicted.py) and the most probable sprite per layer (B, L) (K = empty)."""
        cfg = self.cfg
        rendered = self.render_all(features, self.training, noise, frozen)    # every sprite, with gradient
        backgrounds = self.render_backgrounds(features, frozen)
        background = backgrounds[0] if backgrounds is not None else None
        occ = self.occlusion(features)
        p = self.probabilities(features, frozen)                               # (B, L, K')
        if cfg.predicted_loss == "expected":   # one layer: Σ_k p_k · error of sprite k alone
            K, B = self.K, x.shape[0]
            recons = composite(rendered.layers[0].flatten(0, 1)[None], rendered.alphas[0].flatten(0, 1)[None], None,
                               None if background is None else background.repeat(K, 1, 1, 1))
            errors = ((recons.view(K, B, *x.shape[1:]) - x) ** 2).flatten(2).mean(2).t()      # (B, K)
            if self.has_empty:
                alone = background if background is not None else torch.zeros_like(x)
                errors = torch.cat([errors, ((alone - x) ** 2).flatten(1).mean(1, keepdim=True)], dim=1)
            loss = (p[:, 0] * errors).sum(1).mean()
            alpha = (p[:, 0, :K].t()[:, :, None, None, None] * rendered.alphas[0]).sum(0)[None]
        else:
            coloured, alpha = mix_layers(p, rendered.layers, rendered.alphas)
            recon = composite_premultiplied(coloured, alpha, occ, background)
            loss = ((recon - x) ** 2).mean()
        if cfg.freq_weight > 0:
            loss = loss + cfg.freq_weight * freq_loss(p, cfg.freq_threshold, self.K)
        if cfg.bin_weight > 0 and not frozen:
            loss = loss + cfg.bin_weight * bin_loss(p)
        if cfg.empty_weight > 0 and self.has_empty and not frozen:
            loss = loss + cfg.empty_weight * empty_loss(p, self.K)
        if cfg.mask_penalty > 0 and self.transparent:
            loss = loss + cfg.mask_penalty * alpha.mean()
        return loss, p.detach().argmax(-1)

    def _decompose_predicted(self, x: torch.Tensor, features: torch.Tensor) -> Decomposition:
        """Predicted selection at inference: the most probable sprite per layer; the margin is the
        gap between the two highest probabilities (per crop: of its least sure layer), the cost the
        reconstruction error."""
        choice, runner_up, gap = top_two(self.probabilities(features))          # (B, L) each
        turns = torch.zeros_like(choice)
        layers, alphas, params = self.render_chosen(features, choice, turns, False, None, False)
        backgrounds = self.render_backgrounds(features, False)
        B = x.shape[0]
        backdrop = backgrounds[0] if backgrounds is not None else torch.zeros_like(x)
        occ = self.occlusion(features, hard=True)
        recon = composite(layers, alphas, occ, backdrop if backgrounds is not None else None)
        error = ((recon - x) ** 2).flatten(1).mean(1)
        return Decomposition(choice, turns, error, error, gap.min(1).values, torch.zeros(B, dtype=torch.long, device=x.device),
                             recon, layers, alphas, backdrop, occ, params, runner_up.clamp(max=self.K), error[:, None] + gap)
