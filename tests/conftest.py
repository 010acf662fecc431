"""Shared fixtures: tiny generated image collections and projects made from them (no network,
no weights, fixed seeds)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline.core.project import Project, init_project

# Folder → (width, height) of the images of the tiny collection: nested folders, several sizes.
TINY_LAYOUT = {
    "": [(24, 24), (30, 20)],
    "book1": [(20, 30), (16, 16), (40, 24)],
    "book1/quire2": [(24, 24), (18, 28), (28, 18)],
    "book2": [(24, 24), (32, 16), (16, 32), (20, 20)],
}


def synthetic_image(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    """Light paper with a dark blob: a letter-like image, deterministic per seed."""
    rng = np.random.default_rng(seed)
    a = np.full((height, width, 3), 220, np.uint8)
    a += rng.integers(0, 20, size=a.shape, dtype=np.uint8)
    y0, x0 = rng.integers(0, max(1, height // 2)), rng.integers(0, max(1, width // 2))
    a[y0:y0 + height // 3 + 1, x0:x0 + width // 3 + 1] = rng.integers(0, 60, size=3, dtype=np.uint8)
    img = Image.fromarray(a)
    return img.convert(mode) if mode != "RGB" else img


def png_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


@pytest.fixture
def tiny_collection(tmp_path) -> Path:
    """12 small PNG images in nested folders under tmp_path/collection."""
    root = tmp_path / "collection"
    seed = 0
    for folder, sizes in TINY_LAYOUT.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, (w, h) in enumerate(sizes):
            synthetic_image(w, h, seed).save(root / folder / f"img{i:02d}.png")
            seed += 1
    return root


TINY_COUNT = sum(len(v) for v in TINY_LAYOUT.values())


@pytest.fixture
def make_project(tmp_path) -> Callable[..., Project]:
    """make_project(images, *sets, preset=None, name='proj') → a Project made by init_project."""

    def make(images: str | Path, *sets: str, preset: str | None = None, name: str = "proj") -> Project:
        return init_project(tmp_path / name, images=str(images), preset=preset, sets=list(sets))

    return make


@pytest.fixture
def project(make_project, tiny_collection) -> Project:
    """A project over the tiny collection with 16 px crops."""
    return make_project(tiny_collection, "ingest.size=16")


@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def quiet() -> dict:
    """Keyword arguments for run_stages that silence the log and the progress bars."""
    return {"log": lambda *a, **k: None, "progress": False}
