"""The project configuration: typed dataclasses with defaults in code, one per stage section.

`sprites.toml` and `--set section.key=value` override the defaults; unknown keys and values of the
wrong type are rejected with a message naming the key and the closest valid one. The resolved
config travels with every artifact (`to_dict`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.presets import FOLLOWS, PRESETS, derived
from pipeline.errors import SpritesError

__all__ = [
    "Config",
    "IngestConfig",
    "ModelConfig",
    "TrainConfig",
    "DecomposeConfig",
    "ReportConfig",
    "PRESETS",
    "SECTIONS",
    "option",
    "sections",
    "load_config",
    "apply_overrides",
    "parse_override",
    "config_from_dict",
]


def option(default, help: str, choices: tuple | None = None, run_only: bool = False, low: float | None = None,
         high: float | None = None, above: bool = False, added: bool = False):
    """A config field. A number (or each number of a list) must lie in [low, high] (`above`: strictly
    above low). `run_only` marks execution settings that never change results (so they stay out of
    stage fingerprints); `added` marks a key added after projects existed, which stays out of the
    fingerprints while it has its default value (so the new key leaves existing caches fresh)."""
    meta = {"help": help, "choices": choices, "run_only": run_only, "low": low, "high": high, "above": above,
            "added": added}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class IngestConfig:
    images: str = option("images", "the images: a folder (searched recursively), a glob, a PDF, a IIIF manifest (URL or .json file) or a .txt list of these, relative to the project folder")
    sources: list[str] = option([], "more sources of the same kinds as images, ingested after it (several may be combined)")
    size: int = option(64, "side in px of the square crops; each image is resized keeping its aspect ratio, then padded (28–64 is typical)", low=8)
    channels: int = option(3, "1 = grey crops, 3 = colour crops", choices=(1, 3))
    pad: str = option("border", "padding colour: border = the image's own border colour (median), or white / black", choices=("border", "white", "black"))
    crop: str = option("whole", "how crops are cut from the pages: whole = one crop per page, components = one per connected ink shape (letters), grid = tiles, boxes = the boxes of ingest.boxes", choices=("whole", "components", "grid", "boxes"))
    max_pixels: int = option(250_000_000, "images larger than this many pixels are skipped (decompression-bomb guard)", low=1)
    pdf_dpi: int = option(200, "resolution at which PDF pages are rendered (boxes of PDF crops are in pixels at this resolution)", low=10, high=2400)
    iiif_size: int = option(2000, "longer side in px of the page images fetched from IIIF servers (within the server's maxWidth/maxHeight/maxArea); 0 = full size", low=0)
    iiif_delay: float = option(1.0, "seconds between two requests to the same IIIF host (politeness; hosts are fetched in parallel)", low=0)
    iiif_retries: int = option(5, "retries of a failed download (timeouts, 429 with Retry-After, 5xx), with exponential backoff", low=0)
    iiif_timeout: float = option(60.0, "seconds without an answer before a download is retried", low=0, above=True)
    binarize: str = option("otsu", "components: how ink is told from paper: otsu (one threshold per page) or adaptive (uneven lighting)", choices=("otsu", "adaptive"))
    min_size: int = option(8, "components: shapes whose longer side is below this many px are dropped (specks)", low=0)
    max_size: int = option(0, "components: shapes whose longer side is above this many px are dropped (0 = no limit)", low=0)
    max_aspect: float = option(10.0, "components: shapes longer than this many times their width are dropped (rules, frame lines)", low=1)
    merge_distance: int = option(8, "components: a small part at most this many px above or below a larger one is merged into it (the dot of an i, accents)", low=0)
    margin: int = option(2, "components: px added around each shape", low=0)
    tile: int = option(256, "grid: side in px of the tiles", low=8)
    overlap: int = option(0, "grid: px shared by neighbouring tiles", low=0)
    boxes: str = option("", "boxes: a CSV (source,x,y,w,h[,label]) or a W3C / IIIF annotation JSON (xywh targets), in source pixels")
    metadata: str = option("", "a CSV joined to the crops by its first column, source (path, book.pdf#page=3, canvas id) or id; other columns are kept with the crops")


@dataclass
class ModelConfig:
    kind: str = option("sprites", "the model family: sprites (DTI-Sprites, and DTI-Clustering with one opaque layer)", added=True)
    sprites: int = option(10, "K, the number of learned sprites (empty sprite and backgrounds not counted)", low=1)
    layers: int = option(1, "L, the number of object layers (background not counted)", low=1)
    background: bool = option(True, "learn background prototypes behind the layers")
    backgrounds: int = option(1, "M, the number of background prototypes (when background = true)", low=1)
    transparent: bool = option(True, "sprites have a learned mask; false = opaque prototypes (DTI-Clustering)")
    sprite_size: int = option(0, "side in px of the sprites; 0 = the crop size", low=0)
    empty_sprite: bool = option(False, "add a frozen empty sprite so a layer may hold nothing")
    empty_penalty: float = option(1e-4, "lambda: cost added per non-empty sprite when choosing sprites", low=0)
    transforms: list[str] = option(["color", "affine", "tps"], "sprite transformations, applied in order (color, position, similarity, affine, projective, tps, morphological)")
    curriculum: list[float] = option([], "epoch at which each sprite transformation switches on, in order; those without an epoch start at once", low=0)
    curriculum_patience: float = option(0.0, "0 = the curriculum goes by epoch only; else the next transformation also switches on early once the training loss has improved by less than 1 % over this many epochs", low=0)
    layer_transforms: list[str] = option([], "transformations shared by the sprites of a layer (e.g. color, position)")
    background_transforms: list[str] = option(["color"], "background transformations")
    position_scale: float = option(0.5, "initial sprite scale in the image frame for the position transformation", low=0, above=True)
    tps_grid: int = option(4, "thin-plate-spline control grid side", low=2, high=16)
    morpho_kernel: int = option(3, "morphological kernel side", low=1, high=15)
    occlusion: str = option("fixed", "layer order: fixed (later layers in front) or predicted per image", choices=("fixed", "predicted"))
    generator: str = option("pixels", "how sprites and backgrounds are drawn: pixels (learned directly, DTI-Sprites) or mlp (decoded from a learned latent per sprite by networks shared by all sprites, the deep-sprites paper)", choices=("pixels", "mlp"), added=True)
    selection: str = option("auto", "sprite choice per layer: exhaustive (every combination), greedy (layer by layer), auto (exhaustive when K^L is small), or predicted (a linear head on the encoder's features gives each layer's sprite probabilities, the deep-sprites paper: its cost grows linearly with L)", choices=("auto", "exhaustive", "greedy", "predicted"))
    greedy_iterations: int = option(1, "sweeps of the greedy selection", low=1)
    selection_downsample: int = option(1, "training only: candidates are rendered and compared at the crop size divided by this (1 = full size, as the paper; 2 = half, several times faster with many candidates); the chosen sprites are always rendered at full size for the loss, and decompose always selects at full size", choices=(1, 2, 4))
    rotations: int = option(1, "turns of each sprite tried by the selection, evenly spaced: 1 = none, 2 = a half-turn, 4 = every quarter-turn, 8 = every 45° (the odd ones resampled); the predicted transformations refine the best (ours: shapes seen at every orientation then keep their outline instead of turning round)", choices=(1, 2, 4, 8))
    encoder_width: int = option(16, "channels of the first encoder stage (doubled at each of the 3 stages)", low=1, high=512)
    encoder_blocks: int = option(1, "residual blocks per encoder stage", low=1, high=16)
    encoder_pool: int = option(1, "the encoder's features are pooled to pool × pool cells (more than 1 keeps where things are)", low=1, high=16)
    sprite_init: str = option("constant", "initial sprites: constant (0.9 grey, as the paper) or samples (random crops)", choices=("constant", "samples"))
    mask_init_std: float = option(0.0, "std in px of the Gaussian initial mask; 0 = a fifth of the sprite size", low=0)
    mask_init_elongation: float = option(1.0, "1 = round initial masks (the paper); above 1 each starts this many times longer than wide (std ratio along / across), mask k turned k · 180°/K, so that sprites can take the shapes of a collection seen at every orientation (e.g. 1.25)", low=1)
    background_init: str = option("mean", "background initialisation: mean image, constant 0.5, or border = the crops' border colour (the median of their outer ring: the paper or ground without the motif)", choices=("mean", "constant", "border"))
    background_size: int = option(0, "side in px of the background prototypes, drawn smooth up to the crop size (0 = the crop size): a small side keeps the background to what varies slowly (paper tone, stains, light), so that it cannot learn the motif", low=0, added=True)
    mask_penalty: float = option(0.0, "cost added to the training loss per unit of the chosen sprites' mean opacity (0 = none): where a sprite and the background draw the paper equally well the mask then gives way to the background, so that masks keep to the motif's silhouette", low=0, added=True)
    mask_noise: float = option(0.4, "uniform noise amplitude added to masks during training", low=0)
    reassign_threshold: float = option(0.2, "re-seed a sprite used by fewer than threshold / K of the images", low=0)
    reassign_blurred: float = option(0.0, "also re-seed the blurriest sprite when its mask is this many times blurrier than the median sprite's (0 = never): a blob that explains no shape of its own", low=0)
    reassign_duplicate: float = option(0.0, "also re-seed the less used of two sharp sprites whose masks overlap this much (intersection over union, best over shifts; 0 = never; 0.8 catches one shape drawn twice, different shapes overlap less): for collections told apart by shape, not texture", low=0, high=1)
    reassign_redundant: float = option(0.0, "also re-seed a sprite whose crops would be explained almost as well by their runner-up (mean margin below this fraction of the median sprite's; 0 = never), restarting it from the sprite worst at its crops: one shape drawn by two sprites while two others share one (clustering; costs a runner-up per crop in training)", low=0, high=1, added=True)
    tau: float = option(1.0, "predicted selection: Gumbel-softmax temperature (the start of the learned one with learn_tau)", low=0, above=True, added=True)
    learn_tau: bool = option(False, "predicted selection: learn the temperature (τ = softplus(θ))", added=True)
    straight_through: bool = option(False, "predicted selection: train on one-hot choices (the Gumbel sample's argmax) with the soft sample's gradient (straight-through Gumbel-softmax), so that each layer draws one sprite, not a mixture", added=True)
    selection_warmup: float = option(0.0, "predicted selection: epochs at the start during which the sprites are chosen by the min-loss greedy search, as DTI-Sprites, while the selection head learns to predict those choices (cross-entropy); 0 = Gumbel from the start (the paper). Ours: it breaks the symmetry of sprites that start alike", low=0, added=True)
    predicted_loss: str = option("composite", "predicted selection: composite = the error of the image composed of each layer's probability-weighted sprites (the paper's default); expected = the probability-weighted sum of each sprite's error (one layer only)", choices=("composite", "expected"), added=True)
    freq_weight: float = option(0.0, "predicted selection: weight of L_freq, which penalises sprites used less than freq_threshold / K of the time (plays the part of re-seeding)", low=0, added=True)
    freq_threshold: float = option(0.2, "predicted selection: L_freq's minimum share, as a fraction of 1 / K (the reference's 0.2 / K)", low=0, high=1, added=True)
    bin_weight: float = option(0.0, "predicted selection: weight of L_bin = mean 6 p (1 − p), which pushes the probabilities to 0 or 1 (0 while sprites are frozen)", low=0, added=True)
    empty_weight: float = option(0.0, "predicted selection with an empty sprite: λ_empty, weight of the mean probability of the non-empty sprites over layers, sprites (empty included) and crops; the min-loss selection's model.empty_penalty λ per non-empty sprite corresponds to λ_empty = λ · L · (K + 1)", low=0, added=True)
    padding: str = option("auto", "warp padding: zeros, border, or auto (border for opaque prototypes)", choices=("auto", "zeros", "border"))


@dataclass
class TrainConfig:
    epochs: int = option(30, "number of passes over the crops", low=1)
    minutes: float = option(0.0, "wall-clock budget in minutes (0 = no limit); training stops at whichever comes first", low=0)
    fill_budget: str = option("no", "with train.minutes set, what a schedule that would end before the budget does: no = stop early, stretch = stretch the schedule over the whole budget, restarts = as many complete runs from new seeds as fit, keeping the one with the lowest reconstruction loss", choices=("no", "stretch", "restarts"), added=True)
    batch_size: int = option(32, "crops per step", low=1)
    lr: float = option(1e-3, "learning rate of the encoder and transformation heads", low=0, above=True)
    sprite_lr: float = option(1e-3, "learning rate of sprites, masks and backgrounds", low=0)
    weight_decay: float = option(1e-6, "weight decay of the encoder and heads", low=0)
    milestones: list[float] = option([], "epochs at which the head learning rate is multiplied by gamma", low=0)
    gamma: float = option(0.1, "learning-rate factor at each milestone", low=0, high=1, above=True)
    decay_sprites: bool = option(True, "apply the milestones to the sprites' learning rate too (false: only the heads')")
    freeze_sprites: float = option(0.0, "epochs during which sprites stay fixed while the heads learn", low=0)
    freeze_colours: float = option(0.0, "epochs during which the sprites' colours stay as they started while their masks learn (the layers' colour transformation colours them), so that sprites differ by shape alone (the deep-sprites recipe for scenes of few objects: half the schedule)", low=0, added=True)
    reassign_every: int = option(50, "steps between re-seedings of under-used sprites (0 = never); none after the last milestone, when a copy has too little learning left to become a sprite of its own", low=0)
    seed: int = option(0, "random seed", low=0)
    device: str = option("auto", "auto (CUDA when present), cpu or cuda", choices=("auto", "cpu", "cuda"), run_only=True)
    threads: int = option(0, "CPU threads (0 = all cores)", run_only=True, low=0)
    checkpoint_minutes: float = option(2.0, "minutes between checkpoints (an interrupted run resumes from the last)", run_only=True, low=0)
    seeds: int = option(1, "runs from different seeds (train.seed + 100·r); the lowest-loss run is kept for the exports and the report, the others measure how stable each sprite is (agreement); N seeds cost N runs", low=1, high=20, added=True)
    init: str = option("data", "how the sprites start: data = from the crops (model.sprite_init); curated = the entries of curation.toml (merged sprites as one, dropped ones left out, names kept), any further sprites from the crops", choices=("data", "curated"), added=True)
    bank: str = option("", "another project (folder, relative to this one) whose trained model and curation explain these crops instead of training; set by `sprites match --bank`", added=True)


@dataclass
class DecomposeConfig:
    batch_size: int = option(64, "crops per inference batch (64 keeps the candidates in the CPU cache)", run_only=True, low=1)


@dataclass
class ReportConfig:
    per_page: int = option(200, "crops per page in a sprite's gallery", low=1)
    reconstructions: int = option(48, "number of images shown layer by layer", low=0, high=256)
    family_threshold: float = option(0.2, "sprite families: sprites whose shapes, once turned, mirrored, scaled and centred to match, differ by at most this (1 − soft IoU) on average form one family (0 = no families)", low=0, high=1, added=True)
    iiif_base: str = option("http://localhost:8000/", "web address where the folder holding the project and its images is served; the ids of exports/annotations (IIIF) are minted under it", added=True)


SECTIONS: dict[str, type] = {
    "ingest": IngestConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "decompose": DecomposeConfig,
    "report": ReportConfig,
}


def sections() -> dict[str, type]:
    """Every config section: the stages' (SECTIONS), then each model kind's own (`[<kind>]`)."""
    from pipeline.models.registry import kind_sections
    return {**SECTIONS, **kind_sections()}


def _kind_defaults() -> dict[str, Any]:
    from pipeline.models.registry import kind_sections
    return {name: cls() for name, cls in kind_sections().items()}


@dataclass
class Config:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decompose: DecomposeConfig = field(default_factory=DecomposeConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    preset: str = "objects"
    kinds: dict[str, Any] = field(default_factory=_kind_defaults)   # the model kinds' own sections

    def __getattr__(self, name: str) -> Any:   # cfg.<kind> for a kind's own section
        kinds = self.__dict__.get("kinds") or {}
        if name in kinds:
            return kinds[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        out = {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}
        out.update({k: dataclasses.asdict(v) for k, v in self.kinds.items()})
        out["preset"] = self.preset
        return out

    def model_sections(self) -> list[str]:
        """`model`, and the chosen kind's own section when it has one."""
        return ["model"] + ([self.model.kind] if self.model.kind in self.kinds else [])

    def section(self, name: str, results_only: bool = False) -> dict[str, Any]:
        """The values of a section; `results_only` leaves out what cannot change a result (run-only
        keys, and keys added later while they keep their default): what fingerprints see."""
        values = dataclasses.asdict(getattr(self, name))
        if results_only:
            fields = dataclasses.fields(sections()[name])
            left_out = {f.name for f in fields if f.metadata.get("run_only")}
            left_out |= {f.name for f in fields if f.metadata.get("added") and values[f.name] == _default(f)}
            values = {k: v for k, v in values.items() if k not in left_out}
        return values


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(section: str, key: str, value: Any, f: dataclasses.Field) -> Any:
    """Check `value` against the field's declared type; return it converted (int → float)."""
    tp = typing.get_type_hints(sections()[section])[key]
    where = f"{section}.{key}"
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise SpritesError(f"{where} must be a list of {_type_name(item_tp)}, e.g. {where} = {_toml_value(f.default_factory())}; got {value!r}")
        return [_in_range(where, _coerce_scalar(where, v, item_tp), f, item=True) for v in value]
    value = _in_range(where, _coerce_scalar(where, value, tp), f)
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SpritesError(f"{where} = {value!r} is not allowed: choose one of {', '.join(map(str, choices))}.{hint}")
    return value


def _in_range(where: str, value: Any, f: dataclasses.Field, item: bool = False) -> Any:
    """Refuse a number outside the field's range (and NaN or infinity) with a one-line message."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    what = f"each value of {where}" if item else where
    if not math.isfinite(value):
        raise SpritesError(f"{what} must be a finite number; got {value!r}")
    low, high, above = f.metadata.get("low"), f.metadata.get("high"), f.metadata.get("above")
    fmt = lambda v: f"{v:g}"  # noqa: E731
    if low is not None and (value <= low if above else value < low) or high is not None and value > high:
        if low is not None and high is not None:
            rule = f"in ({fmt(low)}, {fmt(high)}]" if above else f"between {fmt(low)} and {fmt(high)}"
        elif above:
            rule = f"above {fmt(low)}"
        else:
            rule = "0 or more" if low == 0 else f"at least {fmt(low)}"
        raise SpritesError(f"{what} must be {rule}; got {value!r}")
    return value


def _coerce_scalar(where: str, value: Any, tp: type) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise SpritesError(f"{where} must be true or false; got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SpritesError(f"{where} must be a whole number; got {value!r}")
    if not isinstance(value, tp):
        raise SpritesError(f"{where} must be a {_type_name(tp)}; got {value!r}")
    return value


def _fields(section: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(sections()[section])}


def _unknown(kind: str, name: str, valid: list[str]) -> SpritesError:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else f" Valid {kind}s: {', '.join(valid)}."
    return SpritesError(f"unknown {kind} {name!r}.{hint}")


def set_value(cfg: Config, section: str, key: str, value: Any) -> None:
    if section not in sections():
        raise _unknown("section", section, list(sections()))
    fields = _fields(section)
    if key not in fields:
        raise _unknown("key", f"{section}.{key}", [f"{section}.{k}" for k in fields])
    setattr(getattr(cfg, section), key, _coerce(section, key, value, fields[key]))


def config_from_dict(data: dict[str, Any], preset: str | None = None) -> Config:
    """Defaults, then the preset, then `data` (a parsed sprites.toml or what `init` was given), then
    the preset's rules for the keys `data` does not set: values derived from the data's shape (crop
    size, L, K; `pipeline.core.presets`)."""
    data = dict(data)
    preset = data.pop("preset", preset) or "objects"
    if preset not in PRESETS:
        raise _unknown("preset", str(preset), list(PRESETS))
    cfg = Config(preset=preset)
    for layer in (PRESETS[preset], data):
        for section, values in layer.items():
            if section not in sections():
                raise _unknown("section", section, list(sections()) + ["preset"])
            if not isinstance(values, dict):
                raise SpritesError(f"[{section}] must be a table of keys, got {values!r}")
            for key, value in values.items():
                set_value(cfg, section, key, value)
    def given(section: str, key: str) -> bool:
        return key in (data.get(section) or {})

    for section, values in derived(preset, cfg).items():
        for key, value in values.items():
            follows = FOLLOWS.get((section, key))
            if not given(section, key) and not (follows and given(*follows)):
                set_value(cfg, section, key, value)
    validate(cfg)
    return cfg


def load_config(path: Path) -> Config:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpritesError(f"no config at {path}: create a project with `sprites init DIR` first") from None
    except tomllib.TOMLDecodeError as e:
        raise SpritesError(f"{path} is not valid TOML ({e}); fix the line or rerun `sprites init --force`") from None
    return config_from_dict(data)


def parse_override(text: str) -> tuple[str, str, Any]:
    """'model.sprites=12' → ('model', 'sprites', 12). Values are TOML literals; a bare word is a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise SpritesError(f"--set {text!r}: write section.key=value, e.g. --set model.sprites=12")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    cfg = dataclasses.replace(cfg, **{s: dataclasses.replace(getattr(cfg, s)) for s in SECTIONS},
                              kinds={k: dataclasses.replace(v) for k, v in cfg.kinds.items()})
    for text in overrides:
        section, key, value = parse_override(text)
        set_value(cfg, section, key, value)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Checks across keys (each key's own range is checked when it is set), made before any work starts."""
    m = cfg.model
    from pipeline.models.registry import KINDS
    if m.kind not in KINDS:
        close = difflib.get_close_matches(m.kind, list(KINDS), n=1)
        raise SpritesError(f"model.kind = {m.kind!r} is not a model kind: choose one of {', '.join(KINDS)}"
                           + (f". Did you mean {close[0]!r}?" if close else ""))
    if m.sprite_size > cfg.ingest.size:
        raise SpritesError(f"model.sprite_size = {m.sprite_size} is larger than the crops (ingest.size = {cfg.ingest.size}): lower it or set 0 (= crop size)")
    if len(m.curriculum) > len(m.transforms):
        raise SpritesError(f"model.curriculum has {len(m.curriculum)} entries but model.transforms has only {len(m.transforms)}: give at most one epoch per transformation")
    if m.morpho_kernel % 2 == 0:
        raise SpritesError(f"model.morpho_kernel must be odd; got {m.morpho_kernel}")
    if not m.transparent and (m.layers > 1 or m.background):
        raise SpritesError("model.transparent = false (opaque prototypes) needs model.layers = 1 and model.background = false")
    if cfg.train.bank and cfg.train.init == "curated":
        raise SpritesError("train.bank (a matched project: nothing is trained) and train.init = curated exclude each other: "
                           "set train.init = data, or remove train.bank to train here")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def render_toml(cfg: Config) -> str:
    """The whole config as commented TOML: every key, its value and one line on what it does."""
    lines = [
        "# sprites project configuration. Every key is listed with its value; edit and rerun",
        "# `sprites run all`: only the stages whose keys changed are rerun (`sprites status` says why).",
        f"preset = {_toml_value(cfg.preset)}  # clustering | objects | scenes (the defaults below came from it)",
    ]
    shown = {**SECTIONS, **({cfg.model.kind: sections()[cfg.model.kind]} if cfg.model.kind in cfg.kinds else {})}
    for section, cls in shown.items():
        lines += ["", f"[{section}]"]
        values = getattr(cfg, section)
        for f in dataclasses.fields(cls):
            lines.append(f"# {f.metadata['help']}")
            lines.append(f"{f.name} = {_toml_value(getattr(values, f.name))}")
    return "\n".join(lines) + "\n"


def allowed(f: dataclasses.Field) -> str:
    """The values a key accepts, in words: its choices or its range ('' when any)."""
    m = f.metadata
    if m.get("choices"):
        return " / ".join(str(c) for c in m["choices"])
    low, high = m.get("low"), m.get("high")
    if low is None:
        return ""
    if high is not None:
        return f"{low:g} < x ≤ {high:g}" if m.get("above") else f"{low:g} – {high:g}"
    return f"> {low:g}" if m.get("above") else f"≥ {low:g}"


def config_reference() -> str:
    """The Markdown tables of every key (docs/configuration.md; a test keeps them in sync)."""
    cfg, out = Config(), []
    for section, cls in sections().items():
        title = f"**[{section}]**" + (f" (when `model.kind = \"{section}\"`)" if section not in SECTIONS else "")
        out.append(f"\n{title}\n\n| key | default | allowed | what it does |\n|---|---|---|---|")
        for f in dataclasses.fields(cls):
            out.append(f"| `{section}.{f.name}` | `{_toml_value(getattr(getattr(cfg, section), f.name))}` | {allowed(f)} | {f.metadata['help']} |")
    return "\n".join(out).strip()


CONFIGURATION_PAGE_INTRO = """# Configuration reference

Every key, its default (before the preset), the values it accepts, and what it does. Presets change
some defaults: `sprites init` writes the resolved values into `sprites.toml`. A value outside its
range is refused with a one-line message naming the key.

This page is generated from the code (`pipeline.core.config.write_config_reference()`); a test keeps
it current.
"""


def write_config_reference(path: str | Path = "docs/configuration.md") -> None:
    """Regenerate the configuration page from the keys' metadata."""
    Path(path).write_text(CONFIGURATION_PAGE_INTRO + "\n" + config_reference() + "\n", encoding="utf-8")
