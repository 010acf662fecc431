"""The presets: the papers' settings per kind of collection, scaled for a CPU, and what the
built-in examples taught, as rules of the data's shape — so that a collection the presets have
never seen gets them from its crop size S (`ingest.size`), its layers L (`model.layers`) and its
sprites K (`model.sprites`), without a config of its own.

A preset is static values (`PRESETS`) plus rules (`derived`); a key the user sets (in
`sprites.toml`, `--set` or an example's config) is never derived. `sprites init` writes the
resolved values into `sprites.toml`.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["FOLLOWS", "PRESETS", "derived", "RULES"]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "clustering": {
        # colour + affine is what reached 100 % on the glyphs example in 1.5 CPU-minutes; the
        # reference's tps and morphological modules made short runs worse (78 %) and slower.
        # a frequent letter drawn by two sprites while two rare ones share a third (unequal frequencies, as
        # in real text) is undone by re-seeding the redundant sprite from the one worst at its crops
        "model": {
            "layers": 1, "background": False, "transparent": False,
            "transforms": ["color", "affine"], "curriculum": [0, 9], "selection": "exhaustive",
            "reassign_redundant": 0.1,
        },
        # sprites learn 10× faster than in the reference (which ran 20k+ steps on a GPU): with
        # minutes of CPU this is what lets the prototypes settle (37 % → 83 % in 3 minutes). A
        # budget longer than the 60 epochs goes to restarts from new seeds: a clustering run can
        # settle in a poor optimum (two letters in one sprite), and the lowest loss finds the good one.
        "train": {"epochs": 60, "batch_size": 64, "lr": 1e-3, "sprite_lr": 1e-2, "milestones": [50],
                  "fill_budget": "restarts"},
    },
    "objects": {
        # one motif per crop on paper or metal that varies from crop to crop (docs/experiments.md,
        # 2026-12-07): a background started at the mean crop learns the average motif and leaves
        # the sprites pale ghosts over it. So the background starts as the crops' border colour and
        # is a 2 × 2 image drawn smooth to the crop size (paper tone and light, never a motif); the
        # sprites start as crops chosen by k-means++ (a motif each, not a grey disc); and a
        # cost on the masks' mean opacity lets a mask give way wherever the background draws the
        # paper as well (masks keep to the motif, no halo)
        "model": {
            "layers": 1, "background": True, "transparent": True,
            "transforms": ["color", "projective", "tps"], "curriculum": [0, 3, 8],
            "background_transforms": ["color", "projective"], "selection": "exhaustive",
            "background_init": "border", "background_size": 2, "sprite_init": "samples", "mask_penalty": 0.01,
        },
        "train": {"epochs": 30, "batch_size": 32, "lr": 1e-3, "sprite_lr": 1e-3, "milestones": [25],
                  "fill_budget": "stretch"},
    },
    "scenes": {
        # what the tetrominoes and multi-dsprites examples learned (docs/experiments.md): sprites that
        # do not themselves transform (each layer moves and colours its sprite), masks started
        # elongated and turned evenly, blurred and duplicate sprites re-seeded, λ twice the paper's
        "model": {
            "layers": 3, "background": True, "transparent": True,
            "transforms": [], "curriculum": [], "layer_transforms": ["color", "position"],
            "background_transforms": ["color"], "selection": "greedy", "empty_penalty": 2e-4,
            "mask_init_elongation": 1.25, "reassign_blurred": 2.0, "reassign_duplicate": 0.8,
        },
        # the reference's lr 1e-4 assumes ~12 M samples (5 GPU-hours); on a CPU budget 3e-4 for the
        # heads and 3e-3 for the sprites did best among the rates tried on tetrominoes (ARI-FG 84 %
        # in 15 single-thread minutes, against 76–80 % for 1e-3/1e-3, 1e-4/3e-3, 3e-4/1e-2); the
        # examples did best with schedules that fill their budget (300 and 200 epochs in 30 and 45 min)
        "train": {"epochs": 100, "batch_size": 32, "lr": 3e-4, "sprite_lr": 3e-3, "freeze_sprites": 1,
                  "milestones": [80], "decay_sprites": False, "fill_budget": "stretch"},
    },
}

CROWDED = 4   # layers from which a scene is taken to hold a varying number of overlapping objects


def sprite_side(S: int, L: int) -> int:
    """The sprites' side for L objects sharing an S-px crop: 1.2 S / √L, to a multiple of 4 (the
    reference's 24 px for Tetrominoes' 3 objects in 35 px; 36 for Multi-dSprites' 5 in 64, where it
    used 28)."""
    return int(min(S, max(8, 4 * round(1.2 * S / math.sqrt(L) / 4))))


def selection_scale(S: int) -> int:
    """Training compares the selection's candidates at S / f px: the largest f of 4, 2 that divides S
    and keeps 16 px or more (1 otherwise)."""
    return next((f for f in (4, 2) if S % f == 0 and S // f >= 16), 1)


def _scenes(cfg) -> dict[str, dict[str, Any]]:
    S, L = cfg.ingest.size, cfg.model.layers
    crowded = L >= CROWDED
    return {"model": {
        "sprite_size": sprite_side(S, L),
        "selection_downsample": selection_scale(S),
        # few layers: every layer holds an object (Tetrominoes: always 3), in a fixed order; many:
        # the object count varies (an empty sprite), objects overlap in any order (predicted),
        # the greedy search needs more sweeps, the encoder keeps where things are (4×4 cells), and
        # a background started from the mean image would hold the average object (constant start)
        "empty_sprite": crowded,
        "occlusion": "predicted" if crowded else "fixed",
        "greedy_iterations": 3 if crowded else 1,
        "encoder_pool": 4 if crowded else 1,
        "background_init": "constant" if crowded else "mean",
    }}


def _deep_sprites(preset: str, cfg) -> dict[str, dict[str, Any]]:
    """The deep-sprites paper's recipes (../shared/reference/other-models.md §1), for the keys
    `model.generator = "mlp"` and `model.selection = "predicted"`: "Ours-C" on one layer (clustering,
    objects: L_freq 0.01 and L_bin 0.001, the reference's SVHN values, which use both; and, ours, a
    learned temperature: with τ fixed at 1 one letter took two sprites while two shared one, in 5
    minutes as in 200 epochs, docs/experiments.md 2026-12-07), "Ours-D" on
    scenes (few layers, a constant number of objects as Tetrominoes: a learned temperature,
    L_bin 1e-4, and the sprites' colours frozen for half the schedule, as its Tetrominoes config
    (600 of 1220 epochs): the layers' colour transformation colours grey sprites, so that the
    sprites differ by shape, not by a mixture of the pieces' colours; many, as its Multi-dSprites
    config: a similarity per sprite (one sprite turns and scales to every pose of its shape)
    switched on at 40 of 1020 epochs, the sprites frozen for the first 20, the empty-sprite term
    λ_empty 1e-4, no L_freq or L_bin, which the paper found useless or harmful there; both schedules
    scaled to train.epochs). No re-seeding: L_freq plays its part.
    An MLP generator learns at the heads' rate (the reference's single rate; raw pixels are ours at
    10× on clustering)."""
    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    if cfg.model.selection == "predicted":
        model.update(selection_downsample=1, greedy_iterations=1, reassign_redundant=0.0, rotations=1)
        train["reassign_every"] = 0
        if preset == "scenes" and cfg.model.layers < CROWDED:
            model.update(learn_tau=True, bin_weight=1e-4, freq_weight=0.0, empty_weight=0.0)
            train["freeze_colours"] = cfg.train.epochs / 2
        elif preset == "scenes":
            model.update(learn_tau=False, bin_weight=0.0, freq_weight=0.0, empty_weight=1e-4,
                         transforms=["similarity"], curriculum=[round(cfg.train.epochs * 40 / 1020, 1)])
            train["freeze_sprites"] = round(cfg.train.epochs * 20 / 1020, 1)
        else:   # ours: a learned temperature (the paper's for Tetrominoes) gave glyphs 100 % against 86.5 %
            model.update(learn_tau=True, bin_weight=1e-3, freq_weight=1e-2, empty_weight=0.0)
    if cfg.model.generator == "mlp":
        train["sprite_lr"] = cfg.train.lr
    return {k: v for k, v in (("model", model), ("train", train)) if v}


RULES = {"scenes": _scenes}

# derived keys that only make sense with the derived value of another: (section, key) → the key it
# follows; a derived value is dropped when the user set the key it follows (a recipe's curriculum
# is for the recipe's transformations, not for the user's)
FOLLOWS = {("model", "curriculum"): ("model", "transforms")}


def derived(preset: str, cfg) -> dict[str, dict[str, Any]]:
    """The values preset `preset` derives from `cfg`'s data shape (section → key → value)."""
    rule = RULES.get(preset)
    out = rule(cfg) if rule else {}
    for section, values in _deep_sprites(preset, cfg).items():
        out.setdefault(section, {}).update(values)
    return out
