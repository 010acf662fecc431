"""A project folder: its config, cache, exports and report, and how a new one is made."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.config import Config, PRESETS, apply_overrides, config_from_dict, load_config, parse_override, render_toml
from pipeline.errors import SpritesError
from pipeline.ingest.sources.http import is_url

__all__ = ["Project", "init_project", "CONFIG_NAME"]

CONFIG_NAME = "sprites.toml"


@dataclass(frozen=True)
class Project:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def ground_truth_dir(self) -> Path:
        return self.root / "ground_truth"

    def stage_path(self, stage: str) -> Path:
        return self.cache_dir / f"{stage}.h5"

    def config(self, overrides: list[str] | tuple[str, ...] = ()) -> Config:
        cfg = load_config(self.config_path)
        return apply_overrides(cfg, list(overrides)) if overrides else cfg

    def images_spec(self, cfg: Config) -> str:
        """The images folder or glob, resolved against the project folder."""
        spec = os.path.expanduser(cfg.ingest.images)
        return spec if os.path.isabs(spec) else str(self.root / spec)

    def bank_root(self, cfg: Config) -> Path:
        """The project named by `train.bank`, resolved against this project's folder."""
        spec = os.path.expanduser(cfg.train.bank)
        return Path(spec if os.path.isabs(spec) else self.root / spec).resolve()

    @classmethod
    def open(cls, root: str | Path) -> "Project":
        project = cls(Path(root).resolve())
        if not project.config_path.exists():
            raise SpritesError(f"{root} is not a sprites project (no {CONFIG_NAME}): run `sprites init {root}` first, or pass --project DIR")
        return project


def _relative_spec(spec: str, root: Path) -> str:
    """Store an images path relative to the project when possible, so the folder can be moved."""
    absolute = Path(os.path.abspath(os.path.expanduser(spec)))
    try:
        return os.path.relpath(absolute, root)
    except ValueError:  # another drive on Windows
        return str(absolute)


def init_project(root: str | Path, images: str | None = None, preset: str | None = None,
                 example: str | None = None, sets: tuple[str, ...] | list[str] = (),
                 count: int | None = None, seed: int = 0, force: bool = False) -> Project:
    """Create `root/sprites.toml` (and, for `example`, a generated collection with its ground truth)."""
    root = Path(root).resolve()
    project = Project(root)
    if images and example:
        raise SpritesError("give either --images or --example, not both")
    if project.config_path.exists() and not force:
        raise SpritesError(f"{project.config_path} already exists: pass --force to overwrite it (the cache is kept)")
    if preset is not None and preset not in PRESETS:
        raise SpritesError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    overrides: dict = {}
    info = None
    if example is not None:
        from pipeline.examples import EXAMPLES
        if example not in EXAMPLES:
            raise SpritesError(f"unknown example {example!r}: choose one of {', '.join(EXAMPLES)}")
        info = EXAMPLES[example]
        preset = preset or info.preset
        overrides = {s: dict(v) for s, v in info.config.items()}
        overrides.setdefault("ingest", {}).update({"images": "images", "size": info.size, "channels": info.channels})
    for text in sets:   # given values are never derived by the preset's rules
        section, key, value = parse_override(text)
        overrides.setdefault(section, {})[key] = value
    cfg = config_from_dict(overrides, preset=preset or "objects")
    if images is not None and is_url(images):  # a IIIF manifest or collection
        cfg.ingest.images = images
    elif images is not None:
        if not any(ch in images for ch in "*?[") and not Path(images).expanduser().exists():
            raise SpritesError(f"--images {images}: no such folder or file; give a folder of images or a glob like 'scans/**/*.jpg'")
        cfg.ingest.images = _relative_spec(images, root)
    cfg = apply_overrides(cfg, list(sets))
    root.mkdir(parents=True, exist_ok=True)
    if info is not None:
        if force and (root / "images").exists():
            shutil.rmtree(root / "images")
            shutil.rmtree(project.ground_truth_dir, ignore_errors=True)
        from pipeline.examples import generate_example
        generate_example(example, root, count=count, seed=seed)
    tmp = project.config_path.with_name(CONFIG_NAME + ".tmp")
    tmp.write_text(render_toml(cfg), encoding="utf-8")
    os.replace(tmp, project.config_path)
    return project
