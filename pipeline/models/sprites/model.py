"""The sprite model (DTI-Sprites; DTI-Clustering as its one-opaque-layer case).

K sprites (colour + mask, soft-clamped), optional background prototypes and a frozen empty
sprite; one encoder; heads predicting, per image, the transformation parameters of every
(layer, sprite) pair, of every layer and of every background, and for scenes the occlusion matrix.
Layers are composited back to front (`pipeline.models.sprites.compositor`); which sprite fills each layer is
chosen by min-loss selection (`pipeline.models.sprites.selection`) or predicted by a head
(`predicted.py`, the deep-sprites paper); the sprites' pixels are parameters or decoded by an MLP
generator (`generator.py`).

Speed: selection needs every candidate rendered but no gradient, and the min-loss gradient only
reaches the chosen candidate; so candidates are rendered under `no_grad` and only the chosen
sprites are rendered again with gradient — the same gradient as back-propagating through all.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.core.config import ModelConfig
from pipeline.errors import SpritesError
from pipeline.models.base import DataShape, Model, StartBank
from pipeline.models.sprites.compositor import composite, fixed_occlusion, occlusion_from_logits
from pipeline.models.sprites.decomposition import Decomposition, Rendered
from pipeline.models.sprites.encoder import Encoder
from pipeline.models.sprites.generator import SpriteImages
from pipeline.models.sprites.heads import GroupedMLP, SequenceHeads
from pipeline.models.sprites.predicted import WARMUP_WEIGHT, PredictedSelection, SelectionHead, check_predicted
from pipeline.models.sprites.record import SpriteRecord
from pipeline.models.sprites.seeding import seed_sprites
from pipeline.models.sprites.selection import layer_runner_up, select
from pipeline.models.sprites.training import SpriteTraining
from pipeline.models.sprites.transforms import TRANSFORMS, apply_sequence, canonical_name, soft_clamp, turn_eighths

__all__ = ["SpriteModel", "Rendered", "Decomposition", "check_model_config", "gaussian_masks"]


def _options(cfg: ModelConfig) -> dict:
    return {"grid_size": cfg.tps_grid, "kernel_size": cfg.morpho_kernel, "init_scale": cfg.position_scale}


def check_model_config(cfg: ModelConfig, size: int) -> None:
    """Fail before training with a message saying what to change."""
    for key in ("transforms", "layer_transforms", "background_transforms"):
        for name in getattr(cfg, key):
            try:
                canonical_name(name)
            except ValueError as e:
                raise SpritesError(f"model.{key}: {e}") from None
    candidates = cfg.sprites * cfg.rotations
    if cfg.selection == "exhaustive" and candidates ** cfg.layers > 4096:
        turns = f" × {cfg.rotations} turns" if cfg.rotations > 1 else ""
        raise SpritesError(
            f"model.selection = exhaustive would try (K{turns})^L = {candidates}^{cfg.layers} = {candidates ** cfg.layers:,} "
            f"combinations per image: set model.selection = greedy (or auto), or fewer sprites/layers")
    if cfg.background and cfg.backgrounds > 1 and cfg.layers > 1:
        raise SpritesError("model.backgrounds > 1 is supported with one layer only: set model.backgrounds = 1 or model.layers = 1")
    if size % cfg.selection_downsample:
        raise SpritesError(f"model.selection_downsample = {cfg.selection_downsample} does not divide the crop size ({size} px): "
                           "use 1 or a crop size divisible by it")
    if cfg.background_size > size:
        raise SpritesError(f"model.background_size = {cfg.background_size} is larger than the crops ({size} px): lower it or set 0")
    if cfg.sprite_size > size:
        raise SpritesError(f"model.sprite_size = {cfg.sprite_size} is larger than the crops ({size} px): lower it or set 0")
    if cfg.selection == "predicted":
        check_predicted(cfg)


ELONGATION = 1.25  # initial masks' std ratio x / y with turn candidates (model.rotations > 1)


def gaussian_masks(K: int, s: int, std: float, elongation: float = 1.0, turned: bool = False) -> torch.Tensor:
    """The paper's initial masks: K Gaussians of `std` px centred in s × s -> (K, 1, s, s).
    `elongation` > 1 stretches them along their long axis (std · e) and squeezes them across it
    (std / e); the long axis is x, or with `turned` mask k's is turned k · 180°/K (evenly over a
    half-turn: an elongated Gaussian looks the same after half a turn)."""
    r = torch.arange(s, dtype=torch.float32) - (s - 1) / 2
    y, x = r[:, None], r[None, :]                                          # (s, 1), (1, s)
    angle = torch.arange(K, dtype=torch.float32) * (math.pi / K if turned else 0.0)
    c, n = angle.cos()[:, None, None], angle.sin()[:, None, None]          # (K, 1, 1)
    along, across = c * x + n * y, c * y - n * x                           # (K, s, s)
    g = torch.exp(-0.5 * (along / (std * elongation)) ** 2) * torch.exp(-0.5 * (across / (std / elongation)) ** 2)
    return g[:, None].contiguous()


def _area_resize(t: torch.Tensor | None, side: int) -> torch.Tensor | None:
    """(..., h, w) → (..., side, side) by area averaging (the mean of each f × f block when side
    divides h by f); unchanged at its own size; None stays None."""
    if t is None or t.shape[-2:] == (side, side):
        return t
    flat = t.reshape(-1, *t.shape[-3:]) if t.dim() > 4 else t
    return nn.functional.interpolate(flat, size=(side, side), mode="area").view(*t.shape[:-2], side, side)


def _from_start(start: StartBank, protos: torch.Tensor, masks: torch.Tensor | None,
                bkg: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The first E sprites (and the backgrounds) replaced by a curated bank's pictures, resized to
    the model's sizes. A bank without masks gives opaque sprites (mask 1)."""
    E, K = len(start.colours), protos.shape[0]
    if E > K:
        raise SpritesError(f"the curation keeps {E} entries but model.sprites is {K}: set model.sprites to {E} or more")
    protos = protos.clone()
    protos[:E] = _resized(start.colours, protos.shape[-1])
    if masks is not None:
        masks = masks.clone()
        masks[:E] = 1.0 if start.masks is None else _resized(start.masks, masks.shape[-1])
    if bkg is not None and start.backgrounds is not None and len(start.backgrounds) == bkg.shape[0]:
        bkg = _resized(start.backgrounds, bkg.shape[-1])
    return protos, masks, bkg


def _resized(images, side: int) -> torch.Tensor:
    t = torch.as_tensor(images, dtype=torch.float32)
    return t if t.shape[-1] == side else nn.functional.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)


class SpriteModel(SpriteImages, PredictedSelection, SpriteTraining, SpriteRecord, Model):
    """The `sprites` model kind (`pipeline.models.base.Model`)."""

    kind = "sprites"

    @classmethod
    def check_config(cls, cfg, shape: DataShape) -> None:
        check_model_config(cfg.model, shape.size)

    @classmethod
    def build(cls, cfg, shape: DataShape, crops: torch.Tensor | None = None, start: StartBank | None = None) -> "SpriteModel":
        """With `crops` (N, C, S, S) uint8: the backgrounds start as the mean of 100 crops and, with
        model.sprite_init = samples, the sprites as k-means++ seeds; the seed is train.seed. With
        `start` (a curated bank of E entries): sprites 0..E−1 start as its pictures (colours and
        masks), the others as above; its backgrounds replace the data's."""
        if crops is None:
            return cls(cfg.model, shape.channels, shape.size)
        g = torch.Generator().manual_seed(cfg.train.seed)
        torch.manual_seed(cfg.train.seed)
        sample = crops[torch.randperm(crops.shape[0], generator=g)[:100]].float() / 255
        seeds = seed_sprites(crops, cfg.model.sprites, g) if cfg.model.sprite_init == "samples" else None
        ring = torch.cat([sample[..., 0, :], sample[..., -1, :], sample[..., 1:-1, 0], sample[..., 1:-1, -1]], -1)
        return cls(cfg.model, shape.channels, shape.size, init_images=seeds, mean_image=sample.mean(0),
                   border_colour=ring.transpose(0, 1).flatten(1).median(1).values, start=start)

    def __init__(self, cfg: ModelConfig, channels: int, size: int,
                 init_images: torch.Tensor | None = None, mean_image: torch.Tensor | None = None,
                 border_colour: torch.Tensor | None = None, start: StartBank | None = None):
        super().__init__()
        check_model_config(cfg, size)
        self.cfg, self.C, self.H = cfg, channels, size
        K, L, s = cfg.sprites, cfg.layers, cfg.sprite_size or size
        self.K, self.L, self.s = K, L, s
        self.R = cfg.rotations       # candidate turns (of 360°/R) of each sprite in the selection
        self.M = cfg.backgrounds if cfg.background else 0
        self.has_empty = cfg.empty_sprite
        options = _options(cfg)
        self.options = options

        if cfg.sprite_init == "samples" and init_images is not None:
            protos = nn.functional.interpolate(init_images[:K].float(), size=(s, s), mode="bilinear", align_corners=False)
            if protos.shape[0] < K:
                protos = torch.cat([protos, torch.full((K - protos.shape[0], channels, s, s), 0.5)])
        else:
            protos = torch.full((K, channels, s, s), 0.9)
        self.transparent = cfg.transparent
        masks = None
        if cfg.transparent:
            # a round mask looks the same at every quarter-turn: the selection could never tell the
            # turns apart, so with turn candidates the masks start elongated along x (the turns
            # orient them); model.mask_init_elongation > 1 elongates them and turns mask k by k·180°/K
            turned = cfg.mask_init_elongation > 1
            elongation = cfg.mask_init_elongation if turned else (ELONGATION if self.R > 1 else 1.0)
            masks = gaussian_masks(K, s, cfg.mask_init_std or s / 5, elongation, turned)
        bkg = None
        if self.M:
            b = cfg.background_size or size     # drawn up to the crop size by the background's warp
            if cfg.background_init == "mean" and mean_image is not None:
                bkg = _area_resize(mean_image.float()[None], b).expand(self.M, channels, b, b).clone()
            elif cfg.background_init == "border" and border_colour is not None:
                bkg = border_colour.float().view(1, channels, 1, 1).expand(self.M, channels, b, b).clone()
            else:
                bkg = torch.full((self.M, channels, b, b), 0.5)
        if start is not None:
            protos, masks, bkg = _from_start(start, protos, masks, bkg)
        self._init_images(cfg.generator, protos, masks, bkg)

        self.encoder = Encoder(channels, size, cfg.encoder_width, cfg.encoder_blocks, cfg.encoder_pool)
        F = self.encoder.features
        self.sprite_seq = [canonical_name(n) for n in cfg.transforms]
        self.layer_seq = [canonical_name(n) for n in cfg.layer_transforms]
        self.bkg_seq = [canonical_name(n) for n in cfg.background_transforms] if self.M else []
        self.sprite_heads = SequenceHeads(L * K, F, self._sizes(self.sprite_seq))
        self.layer_heads = SequenceHeads(L, F, self._sizes(self.layer_seq))
        self.bkg_heads = SequenceHeads(max(self.M, 1), F, self._sizes(self.bkg_seq))
        pairs = L * (L - 1) // 2
        self.occlusion_head = GroupedMLP(1, F, pairs) if cfg.occlusion == "predicted" and pairs else None
        self.predicted = cfg.selection == "predicted"
        self.warming = False   # predicted selection's min-loss warm-up (model.selection_warmup), set per step
        self.colours_frozen = False   # train.freeze_colours, set per step
        self.selection_head = (SelectionHead(F, L, K + int(self.has_empty), cfg.tau, cfg.learn_tau)
                               if self.predicted else None)
        self.padding = cfg.padding if cfg.padding != "auto" else ("zeros" if cfg.transparent else "border")
        self.set_epoch(0)

    def _sizes(self, seq: list[str]) -> list[int]:
        return [TRANSFORMS[n].n_params(self.C, self.options) for n in seq]

    # ----------------------------------------------------------------------------------- state
    def set_epoch(self, epoch: float, early: int = 0) -> int:
        """Curriculum: switch on the sprite transformations whose epoch has come, and at least the
        first `early` of the curriculum's order (those switched on early by a loss plateau).
        Returns how many are on."""
        order = self._curriculum()
        on = max(early, sum(epoch >= m for _, m in order))
        for rank, (i, _) in enumerate(order):
            self.sprite_heads.active[i] = float(rank < on)
        return on

    def _curriculum(self) -> list[tuple[int, float]]:
        """(index in the sprite sequence, switch-on epoch) in switch-on order; no epoch = 0."""
        milestones = list(self.cfg.curriculum) + [0] * (len(self.sprite_seq) - len(self.cfg.curriculum))
        return sorted(enumerate(milestones), key=lambda im: im[1])

    def curriculum_order(self) -> list[str]:
        """The sprite transformations in the order the curriculum switches them on."""
        return [self.sprite_seq[i] for i, _ in self._curriculum()]

    def head_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.sprite_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    # ------------------------------------------------------------------------------- rendering
    def _colour(self, src: torch.Tensor, names: list[str], betas: list[torch.Tensor]) -> torch.Tensor:
        """The colour transformations of `names` on the first C channels of src (..., C', h, w),
        broadcasting src and betas (..., P) over their leading dimensions."""
        C = self.C
        colours = [b for n, b in zip(names, betas) if n == "color"]
        if not colours:
            return src
        rgb = src[..., :C, :, :]
        for b in colours:  # (1 + a_c) x_c + b_c, soft-clamped, as transforms.color
            ab = b.reshape(*b.shape[:-1], C, 2)[..., None, None]                  # (..., C, 2, 1, 1)
            rgb = soft_clamp(torch.addcmul(ab[..., 1, :, :], rgb, 1 + ab[..., 0, :, :]))
        rest = src[..., C:, :, :]
        if not rest.shape[-3]:
            return rgb
        shape = torch.broadcast_shapes(rgb.shape[:-3], rest.shape[:-3])
        return torch.cat([rgb.expand(*shape, *rgb.shape[-3:]), rest.expand(*shape, *rest.shape[-3:])], dim=-3)

    def _warp(self, src: torch.Tensor, lead: tuple[int, ...], names: list[str], betas: list[torch.Tensor],
              padding: str, colour: bool = True, size: int | None = None) -> torch.Tensor:
        """src broadcastable to (*lead, C', h, w), betas broadcastable to (*lead, P_i) → (N, C', H, W),
        N = prod(lead), H = W = `size` (default the crop size). Colour transformations run first,
        at sprite resolution and broadcast over `lead` (the reference's order for color_position;
        elsewhere they commute with the warp up to the clamp), then every spatial transformation is
        composed and sampled once."""
        C = self.C
        if colour:
            src = self._colour(src, names, betas)
        n = 1
        for d in lead:
            n *= d
        x = src.expand(*lead, *src.shape[-3:]).reshape(n, *src.shape[-3:])
        spatial = [(name, b.expand(*lead, b.shape[-1]).reshape(n, -1))
                   for name, b in zip(names, betas) if name not in ("color", "identity")]
        return apply_sequence(x, [m for m, _ in spatial], [b for _, b in spatial], (size or self.H,) * 2,
                              C, padding_mode=padding, options=self.options)

    def _turned(self, src: torch.Tensor) -> torch.Tensor:
        """(K, C', s, s) → (K·R, C', s, s): sprite k turned r · 360°/R at row k·R + r (quarter-turns
        are permutations of pixels, exact; the predicted rotation then refines the turn)."""
        if self.R == 1:
            return src
        step = 8 // self.R
        return torch.stack([turn_eighths(src, r * step) for r in range(self.R)], 1).flatten(0, 1)

    def _sprite_source(self, train: bool) -> torch.Tensor:
        """(K, C[+1[+1]], s, s): soft-clamped colour, raw mask, noise canvas when training; opaque
        prototypes have no mask channel (their alpha is 1 everywhere, border padding included)."""
        colours, masks = self.sprite_images()
        colour = soft_clamp(colours)
        parts = [colour.detach() if self.colours_frozen else colour]   # train.freeze_colours: masks learn alone
        K, s = self.K, self.s
        if masks is None:
            return parts[0]
        parts.append(masks)
        if train and self.cfg.mask_noise > 0:
            parts.append(colours.new_ones(K, 1, s, s))
        return torch.cat(parts, dim=1)

    def _finish(self, warped: torch.Tensor, noise: torch.Tensor | None,
                canvas: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """warped (..., C', H, W) → colour (..., C, H, W), alpha (..., 1, H, W) with mask noise;
        the warped noise canvas is channel C+1 of `warped` unless given (broadcastable)."""
        # split, not sliced: one backward cat, where each slice's backward would fill a zero
        # tensor of warped's whole size (at 10 layers × 6 sprites, 126 MB per slice and step)
        C = self.C
        parts = warped.split([C, 1, warped.shape[-3] - C - 1] if warped.shape[-3] > C else [C], dim=-3)
        rgb = parts[0]
        if not self.transparent:
            return rgb, rgb.new_ones(*rgb.shape[:-3], 1, *rgb.shape[-2:])  # opaque prototypes
        mask = parts[1]
        if noise is not None:
            canvas = parts[2][..., :1, :, :] if canvas is None else canvas
            mask = torch.addcmul(mask, canvas, noise)
        return rgb, soft_clamp(mask)

    def render_all(self, features: torch.Tensor, train: bool, noise: torch.Tensor | None, frozen: bool,
                   size: int | None = None) -> Rendered:
        """Every (layer, sprite) candidate for a batch, H = W = `size` (default the crop size);
        `noise` (K, 1, H, W) or None."""
        B, L, R = features.shape[0], self.L, self.R
        H = size or self.H
        K = self.K * R                                   # candidates per layer: every sprite at every turn
        src = self._turned(self._sprite_source(train))
        # prefiltered like the image (area average): sampling a sharp sprite at every f-th pixel aliases
        src = _area_resize(src, max(1, round(self.s * H / self.H)))
        s = src.shape[-1]
        if frozen:
            src = src.detach()
        # list of (L*K, B, P): the R turns of a sprite share its heads
        sprite_betas = [b.view(L, self.K, 1, B, -1).expand(L, self.K, R, B, b.shape[-1]).reshape(L * K, B, -1)
                        for b in self.sprite_heads(features)]
        layer_betas = self.layer_heads(features)         # list of (L, B, P)
        Cp = src.shape[1]
        names = self.sprite_seq + self.layer_seq
        if all(n in ("identity", "color") for n in self.sprite_seq):
            # Only the layer moves the sprites: one sampling grid per (layer, image) warps the K
            # sprites stacked as channels — K times fewer grids than one warp per sprite.
            betas = [b.view(L, K, B, -1).transpose(1, 2) for b in sprite_betas] + [b[:, :, None] for b in layer_betas]
            Cs = min(Cp, self.C + 1)     # the noise canvas is the same for all sprites: warp it once
            coloured = self._colour(src[None, None, :, :Cs], names, betas)           # (L|1, B|1, K, Cs, s, s)
            coloured = coloured.expand(L, B, K, Cs, s, s).reshape(L, B, K * Cs, s, s)
            if Cp > Cs:
                coloured = torch.cat([coloured, coloured.new_ones(L, B, 1, s, s)], dim=2)
            warped = self._warp(coloured, (L, B), self.layer_seq, list(layer_betas), self.padding, colour=False, size=H)
            warped = warped.view(L, B, -1, H, H)
            canvas = None
            if Cp > Cs:   # split (one backward cat), not sliced (a zero fill of warped's size per slice)
                warped, canvas = warped.split([K * Cs, warped.shape[2] - K * Cs], dim=2)
                canvas = canvas[:, None]                                               # (L, 1, B, 1, H, W)
            warped = warped.view(L, B, K, Cs, H, H).transpose(1, 2)
        else:  # candidates (L, K, B); sprite heads are grouped l*K + k, layer heads shared over k
            betas = [b.view(L, K, B, -1) for b in sprite_betas] + [b[:, None] for b in layer_betas]
            warped = self._warp(src[None, :, None], (L, K, B), names, betas, self.padding, size=H)
            warped = warped.view(L, K, B, Cp, H, H)
            canvas = None
        # (1, K, 1, 1, H, W): in the image frame, so the turns of a sprite share it
        nz = noise.repeat_interleave(R, 0)[None, :, None] if noise is not None else None
        layers, alphas = self._finish(warped, nz, canvas)
        return Rendered(layers, alphas)

    def render_chosen(self, features: torch.Tensor, choice: torch.Tensor, turns: torch.Tensor, train: bool,
                      noise: torch.Tensor | None, frozen: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Only the chosen sprite of each layer at its turn (B, L), with gradient: (L, B, C, H, W),
        (L, B, 1, H, W)."""
        B, L, K = features.shape[0], self.L, self.K
        src = self._turned(self._sprite_source(train))    # (K·R, C', s, s)
        if frozen:
            src = src.detach()
        k = choice.t().clamp(max=K - 1)                   # (L, B); the empty sprite is masked below
        empty = (choice.t() >= K)
        group = torch.arange(L, device=k.device)[:, None] * K + k          # (L, B)
        sprite_betas = [b[group, torch.arange(B, device=k.device)[None, :]] for b in self.sprite_heads(features)]
        layer_betas = self.layer_heads(features)
        x = src[k * self.R + turns.t()]                    # (L, B, C', s, s)
        warped = self._warp(x, (L, B), self.sprite_seq + self.layer_seq, sprite_betas + layer_betas,
                            self.padding).view(L, B, -1, self.H, self.H)
        nz = noise[k][:, :, None] if noise is not None else None          # (L, B, 1, H, W)
        nz = nz.squeeze(2) if nz is not None else None
        layers, alphas = self._finish(warped, nz)
        keep = (~empty).to(layers.dtype)[:, :, None, None, None]
        params = {n: b.transpose(0, 1) for n, b in zip(self.sprite_seq, sprite_betas)}
        params.update({f"layer_{n}": b.transpose(0, 1) for n, b in zip(self.layer_seq, layer_betas)})
        if self.R > 1:   # (B, L, 1) counter-clockwise quarter-turns (0.5 = 45°) applied before the transformations
            params["quarter_turns"] = (turns.to(layers.dtype) * (4 / self.R))[..., None]
        return layers * keep, alphas * keep, params

    def render_backgrounds(self, features: torch.Tensor, frozen: bool) -> torch.Tensor | None:
        """(M, B, C, H, W) transformed background prototypes, or None."""
        if not self.M:
            return None
        B = features.shape[0]
        bkg = soft_clamp(self.background_images())
        if frozen:
            bkg = bkg.detach()
        betas = self.bkg_heads(features)[:len(self.bkg_seq)]                  # (M, B, P) each
        return self._warp(bkg[:, None], (self.M, B), self.bkg_seq, betas, "border").view(self.M, B, self.C, self.H, self.H)

    def occlusion(self, features: torch.Tensor, hard: bool = False) -> torch.Tensor | None:
        if self.occlusion_head is None:
            return None if not hard else fixed_occlusion(self.L, features.shape[0], device=features.device)
        return occlusion_from_logits(self.occlusion_head(features)[0], self.L, hard=hard)

    # ------------------------------------------------------------------------------- selection
    def penalty(self, frozen: bool, device) -> torch.Tensor:
        """λ per real candidate (K·R), 0 for the empty one (+inf while sprites are frozen)."""
        pen = torch.full((self.K * self.R + int(self.has_empty),), self.cfg.empty_penalty if self.has_empty else 0.0, device=device)
        if self.has_empty:
            pen[-1] = math.inf if frozen else 0.0
        return pen

    def split_candidates(self, candidate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """candidate (B, L) in [0, K·R] (K·R = empty) → sprite (B, L) in [0, K] (K = empty), turn (B, L)."""
        empty = candidate >= self.K * self.R
        sprite = torch.where(empty, self.K, candidate // self.R)
        return sprite, torch.where(empty, 0, candidate % self.R)

    def choose(self, x, rendered: Rendered, backgrounds, occlusion, frozen: bool, second: bool = False):
        """Min-loss selection over candidates (and background prototypes): candidate (B, L), bkg (B,),
        cost (B,), second-best cost (B,) or None."""
        pen = self.penalty(frozen, x.device)
        # predicted selection's warm-up searches greedily
        mode = {"auto": "auto", "exhaustive": "exhaustive", "greedy": "greedy", "predicted": "greedy"}[self.cfg.selection]
        bkgs = backgrounds if backgrounds is not None else [None]
        best = None
        for m, bkg in enumerate(bkgs):
            out = select(x, rendered.layers, rendered.alphas, bkg, occlusion, pen, mode=mode,
                         iterations=self.cfg.greedy_iterations, return_second=second, empty=self.has_empty)
            choice, cost = out[0], out[1]
            sec = out[2] if second else None
            mm = torch.full_like(cost, m, dtype=torch.long)
            if best is None:
                best = [choice, mm, cost, sec]
            else:
                better = cost < best[2]
                if second:  # the runner-up is the best of everything but the winner
                    best[3] = torch.minimum(torch.where(better, best[2], cost), torch.where(better, sec, best[3]))
                best[0] = torch.where(better[:, None], choice, best[0])
                best[1] = torch.where(better, mm, best[1])
                best[2] = torch.where(better, cost, best[2])
        return best

    # --------------------------------------------------------------------------------- passes
    def forward(self, x: torch.Tensor, frozen: bool = False, stats: bool = False):
        """One training pass: (loss, choice (B, L) sprite per layer (K = empty), chosen background (B,)),
        and with `stats` also the selection's (cost (B,), runner-up cost (B,)) at its resolution."""
        features = self.encoder(x)
        noise = None
        if self.training and self.transparent and self.cfg.mask_noise > 0:
            a = self.cfg.mask_noise
            noise = (torch.rand(self.K, 1, self.H, self.H, device=x.device) * 2 - 1) * a  # shared across layers and batch
        if self.predicted and not self.warming:
            loss, choice = self._predicted_loss(x, features, noise, frozen)
            bkg_choice = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            return (loss, choice, bkg_choice, (None, None)) if stats else (loss, choice, bkg_choice)
        with torch.no_grad():
            # the choice needs every candidate but no gradient: with selection_downsample = f
            # they are rendered and compared at (H/f)², f² times fewer pixels (image, background
            # and noise area-averaged to match)
            side = self.H // self.cfg.selection_downsample
            rendered = self.render_all(features, self.training, _area_resize(noise, side), frozen, size=side)
            backgrounds = _area_resize(self.render_backgrounds(features, frozen), side)
            occ = self.occlusion(features)
            candidate, bkg_choice, cost, second = self.choose(_area_resize(x, side), rendered, backgrounds, occ, frozen,
                                                              second=stats)
            choice, turns = self.split_candidates(candidate)
        layers, alphas, _ = self.render_chosen(features, choice, turns, self.training, noise, frozen)
        backgrounds = self.render_backgrounds(features, frozen)
        background = backgrounds[bkg_choice, torch.arange(x.shape[0])] if backgrounds is not None else None
        recon = composite(layers, alphas, self.occlusion(features), background)
        loss = ((recon - x) ** 2).mean()
        if self.cfg.mask_penalty > 0 and self.transparent:   # ours: masks give way where they add nothing
            loss = loss + self.cfg.mask_penalty * alphas.mean()
        if self.predicted:   # the warm-up: the head learns the min-loss choices
            loss = loss + WARMUP_WEIGHT * self.choice_loss(features, choice, frozen)
        if stats:
            return loss, choice, bkg_choice, (cost, second)
        return loss, choice, bkg_choice

    @torch.no_grad()
    def decompose(self, x: torch.Tensor) -> Decomposition:
        """Inference: chosen sprites, parameters, hard occlusion, reconstruction, error, margin."""
        features = self.encoder(x)
        if self.predicted:
            return self._decompose_predicted(x, features)
        rendered = self.render_all(features, False, None, False)
        backgrounds = self.render_backgrounds(features, False)
        occ = self.occlusion(features, hard=True)
        # the greedy search's runner-up (the best assignment one slot away) is the best of the layers'
        # runner-ups when each sprite is one candidate: computed once, below, not twice
        from_layers = self.cfg.selection == "greedy" and self.R == 1 and self.M <= 1
        candidate, bkg_choice, cost, second = self.choose(x, rendered, backgrounds, occ, False, second=not from_layers)
        choice, turns = self.split_candidates(candidate)
        layers, alphas, params = self.render_chosen(features, choice, turns, False, None, False)
        B = x.shape[0]
        backdrop = backgrounds[bkg_choice, torch.arange(B)] if backgrounds is not None else torch.zeros_like(x)
        recon = composite(layers, alphas, occ, backdrop if backgrounds is not None else None)
        error = ((recon - x) ** 2).flatten(1).mean(1)
        chosen_bkg = backdrop if backgrounds is not None else None
        runner_up, layer_cost = layer_runner_up(x, rendered.layers, rendered.alphas, chosen_bkg, occ,
                                                self.penalty(False, x.device), candidate, self.has_empty, self.R)
        if from_layers:
            second = layer_cost.min(dim=1).values
        margin = (second - cost).clamp(min=0) if second is not None else torch.zeros_like(cost)
        return Decomposition(choice, turns, cost, error, margin, bkg_choice, recon, layers, alphas, backdrop, occ, params,
                             runner_up, layer_cost)
