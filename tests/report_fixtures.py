"""Tiny projects run end to end, built once per test session and shared by test_report,
test_exports and test_browser (import the builders; declare the fixtures in each file).

Tests must not change these projects: copy one (`copy_project`) before rerunning with new settings.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.core.project import Project, init_project
from pipeline.core.runner import run_stages
import stages

_BUILT: dict[str, Project] = {}

# Names scholars' files really have, and one that tries to run a script.
HOSTILE_NAMES = ["<script>alert(1)</script>.png", "a & b.png", "Évangéliaire ß.png", "ordinary.png",
                 "quote's \"double\".png", "100% #1?.png"]


def quiet_run(project: Project, *sets: str, targets=("all",), force: bool = False) -> list[str]:
    return run_stages(project, project.config(list(sets)), list(targets), stages=stages.STAGES, force=force, progress=False,
                      log=lambda s: None)


def _build(tmp_path_factory, key: str, make) -> Project:
    if key not in _BUILT:
        root = tmp_path_factory.mktemp(key)
        project = make(root)
        quiet_run(project)
        _BUILT[key] = project
    return _BUILT[key]


def glyphs_project(tmp_path_factory) -> Project:
    """64 grey letters, clustering preset, K = 3, one epoch."""
    return _build(tmp_path_factory, "glyphs", lambda root: init_project(
        root / "glyphs", example="glyphs", count=64, sets=["train.epochs=1", "model.sprites=3"]))


def coins_project(tmp_path_factory) -> Project:
    """40 colour coins, objects preset (background + one layer with masks), one epoch."""
    return _build(tmp_path_factory, "coins", lambda root: init_project(
        root / "coins", example="coins", count=40, sets=["train.epochs=1"]))


def make_hostile_images(folder: Path) -> list[str]:
    """Small PNGs whose names are hostile or unusual; returns their paths relative to `folder`
    (a name containing '/' makes a sub-folder, as it would on disk)."""
    rng = np.random.default_rng(0)
    written = []
    for i, name in enumerate(HOSTILE_NAMES * 2):
        rel = name if i < len(HOSTILE_NAMES) else f"more/{i:02d} {name}"
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        a = np.full((20, 16, 3), 225, np.uint8)
        y, x = rng.integers(0, 10), rng.integers(0, 8)
        a[y:y + 8, x:x + 6] = rng.integers(0, 80)
        Image.fromarray(a).save(path)
        written.append(rel)
    return written


def hostile_project(tmp_path_factory) -> Project:
    """Clustering over files named like `<script>alert(1)</script>.png`, 2 crops per page."""
    def make(root):
        make_hostile_images(root / "collection")
        return init_project(root / "hostile", images=str(root / "collection"), preset="clustering",
                            sets=["ingest.size=16", "model.sprites=2", "train.epochs=1", "report.per_page=2",
                                  "report.reconstructions=4"])
    return _build(tmp_path_factory, "hostile", make)


def copy_project(project: Project, dest: Path) -> Project:
    """A copy sharing nothing with `project` (file times kept, so the stages stay fresh)."""
    shutil.copytree(project.root, dest, symlinks=True)
    return Project.open(dest)


CARD = re.compile(r'<article class="crop-card" id="c(\d+)"')


def gallery_ids(report: Path, k: int | str) -> list[int]:
    """Crop ids shown in sprite k's gallery, in page order (all pages)."""
    stem = f"sprite_{k:03d}" if isinstance(k, int) else k
    pages = [report / "sprites" / f"{stem}.html"]
    n = 2
    while (report / "sprites" / f"{stem}_p{n}.html").exists():
        pages.append(report / "sprites" / f"{stem}_p{n}.html")
        n += 1
    return [int(m) for p in pages for m in CARD.findall(p.read_text(encoding="utf-8"))]
