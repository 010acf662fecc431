"""The house: imports go one way, and a model kind enters through one door.

* No library module imports a stage (the CLI hands the stages to the runner), and the report never
  imports a model (it reads artifacts); the core, ingest and report import no torch.
* A toy model kind registered here, with one constant prototype, runs train → decompose → report
  through the stages without any edit outside this file.
"""

from __future__ import annotations

import ast
import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import stages
from pipeline.core.config import option
from pipeline.core.runner import run_stages, stage_status
from pipeline.models import registry
from pipeline.models.base import DataShape, Model, Prototypes, Record

ROOT = Path(__file__).resolve().parent.parent

# The library's rooms, lowest first: a module may import its own room, a lower one, or `errors` and
# `examples` (leaves that import nothing of ours); the exceptions below are named with their reason.
ROOMS = ["core", "ingest", "models", "report", "evaluation"]
SIBLINGS_APART = {("ingest", "models"), ("ingest", "report"), ("models", "ingest"), ("models", "report"),
                  ("report", "models"), ("report", "ingest")}
EXCEPTIONS = {
    ("pipeline.core.config", "pipeline.models.registry"): "model.kind is checked when the config is read; "
                                                          "the registry imports only errors",
    ("pipeline.core.project", "pipeline.ingest.sources.http"): "is_url, to tell a manifest URL from a folder in init",
}
NO_TORCH = ("core", "ingest", "report")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "stages").glob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every module imported anywhere in the file (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "pipeline" and len(parts) > 1 and parts[1] in ROOMS else None


def _problems(modules: dict[str, Path]) -> list[str]:
    problems = []
    for name, path in modules.items():
        here = _room(name)
        for target in _imports(path):
            if any(name == a and (target == b or target.startswith(b + ".")) for a, b in EXCEPTIONS):
                continue
            if target.split(".")[0] == "stages" and name.startswith("pipeline") and name != "pipeline.cli":
                problems.append(f"{name} imports the stage {target} (only the CLI hands stages out)")
            there = _room(target)
            if here and there and there != here:
                if ROOMS.index(there) > ROOMS.index(here) or (here, there) in SIBLINGS_APART:
                    problems.append(f"{name} ({here}) imports {target} ({there})")
            if here in NO_TORCH and target.split(".")[0] == "torch":
                problems.append(f"{name} ({here}) imports torch")
    return sorted(set(problems))


def test_no_module_imports_upward():
    problems = _problems(_modules())
    assert not problems, "\n".join(problems)


def test_the_rule_catches_what_it_forbids(tmp_path):
    report = tmp_path / "report.py"
    report.write_text("import numpy\n\ndef f():\n    from pipeline.models.sprites.model import SpriteModel\n    import torch\n")
    runner = tmp_path / "runner.py"
    runner.write_text("from stages import STAGES\n")
    problems = _problems({"pipeline.report.bad": report, "pipeline.core.runner": runner})
    assert problems == ["pipeline.core.runner imports the stage stages (only the CLI hands stages out)",
                        "pipeline.core.runner imports the stage stages.STAGES (only the CLI hands stages out)",
                        "pipeline.report.bad (report) imports pipeline.models.sprites.model (models)",
                        "pipeline.report.bad (report) imports pipeline.models.sprites.model.SpriteModel (models)",
                        "pipeline.report.bad (report) imports torch"]


def test_ingest_runs_without_torch(tmp_path, tiny_collection):
    # the CLI's path up to the end of ingest (its workers are forked from this process) loads no torch
    code = f"""
import sys
import stages
from pipeline.core.project import init_project
from pipeline.core.runner import run_stages
project = init_project({str(tmp_path / 'p')!r}, images={str(tiny_collection)!r}, sets=["ingest.size=16"])
run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, log=lambda m: None, progress=False)
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------- a toy model kind

@dataclass
class ConstantConfig:
    """The toy kind's own keys: the [constant] section."""
    start: float = option(0.5, "the prototype's grey at the start", low=0, high=1)


class ConstantModel(Model):
    """One constant prototype (the mean crop, learned): the smallest model kind there is."""

    kind = "constant"

    @classmethod
    def build(cls, cfg, shape: DataShape, crops=None) -> "ConstantModel":
        return cls(shape, cfg.constant.start)

    def __init__(self, shape: DataShape, start: float):
        super().__init__()
        self.S = shape.size
        self.prototype = nn.Parameter(torch.full((1, shape.channels, shape.size, shape.size), start))

    def param_groups(self, cfg):
        return [{"params": [self.prototype], "lr": 0.05, "weight_decay": 0.0, "name": "prototype", "decay": True}]

    def training_step(self, x, clock):
        return ((self.prototype - x) ** 2).mean()

    @torch.no_grad()
    def decompose_batch(self, x) -> Record:
        B, S = x.shape[0], self.S
        recon = self.prototype.clamp(0, 1).expand_as(x)
        error = ((recon - x) ** 2).flatten(1).mean(1)
        ones = torch.ones(B, S, S, dtype=torch.long)
        return Record(sprite=torch.zeros(B, 1, dtype=torch.long), runner_up=torch.full((B, 1), -1),
                      layer_margin=torch.full((B, 1), float("inf")), background=torch.full((B,), -1),
                      occlusion=torch.zeros(B, 1, 1), recon=recon, error=error, cost=error,
                      margin=torch.zeros(B), semantic=ones, instance=ones, instance_fg=ones,
                      layers=torch.cat([recon, torch.ones(B, 1, S, S)], 1)[:, None])

    def prototype_bank(self) -> Prototypes:
        return Prototypes(colours=(self.prototype.detach().clamp(0, 1) * 255).round().byte().numpy())

    def summary(self) -> dict:
        return {"kind": self.kind, "sprites": 1, "layers": 1, "backgrounds": 0, "transparent": False,
                "sprite_size": self.S, "facts": [["Prototype", "one constant image"]], "describe": "one constant prototype"}


def test_a_new_model_kind_passes_through_the_stages(make_project, tiny_collection, monkeypatch, quiet):
    monkeypatch.setitem(registry.KINDS, "constant", registry.Kind(ConstantModel, ConstantConfig))
    project = make_project(tiny_collection, "ingest.size=16", "model.kind=constant", "train.epochs=3",
                           "train.batch_size=4", "report.reconstructions=4", "constant.start=0.25")
    toml = project.config_path.read_text(encoding="utf-8")
    assert "[constant]" in toml and "start = 0.25" in toml   # the kind's own keys, written by init
    ran = run_stages(project, project.config(), ["all"], stages=stages.STAGES, **quiet)
    assert ran == ["ingest", "train", "decompose", "report"]
    with h5py.File(project.stage_path("ingest"), "r") as f:
        mean = f["crops"][()].astype(np.float64).mean(0) / 255
    with h5py.File(project.stage_path("train"), "r") as f:
        assert f.attrs["kind"] == "constant" and list(f["history/loss"])[-1] < list(f["history/loss"])[0]
    with h5py.File(project.stage_path("decompose"), "r") as f:
        assert json.loads(f.attrs["model_json"])["kind"] == "constant"
        assert (f["sprite"][()] == 0).all() and (f["front"][()] == 0).all()
        learned = f["prototypes/colours"][0].astype(np.float64) / 255
        assert np.abs(learned - mean).mean() < np.abs(0.5 - mean).mean()   # it moved towards the mean crop
    with open(project.exports_dir / "assignments.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["sprite"] for r in rows} == {"0"}
    index = (project.report_dir / "index.html").read_text(encoding="utf-8")
    assert "constant" in index and "one constant image" in index
    assert not (project.exports_dir / "masks.h5").exists()   # opaque: no masks export
    assert run_stages(project, project.config(), ["all"], stages=stages.STAGES, **quiet) == []
    status = stage_status(project, project.config(["constant.start=0.3"]), "train", stages.STAGES)
    assert status.state == "stale" and status.reasons == ["config constant.start 0.25 → 0.3"]


def test_a_kinds_own_keys_are_checked_and_absent_for_other_kinds(make_project, tiny_collection, monkeypatch):
    from pipeline.errors import SpritesError
    monkeypatch.setitem(registry.KINDS, "constant", registry.Kind(ConstantModel, ConstantConfig))
    with pytest.raises(SpritesError, match=r"constant\.start must be between 0 and 1; got 2"):
        make_project(tiny_collection, "model.kind=constant", "constant.start=2")
    with pytest.raises(SpritesError, match=r"unknown key 'constant\.stat'.*'constant\.start'"):
        make_project(tiny_collection, "model.kind=constant", "constant.stat=0.3", name="p2")
    project = make_project(tiny_collection, name="p3")     # the sprites kind: no [constant] written
    assert "[constant]" not in project.config_path.read_text(encoding="utf-8")


def test_an_unknown_kind_is_refused_with_the_choices(make_project, tiny_collection):
    from pipeline.errors import SpritesError
    with pytest.raises(SpritesError, match="model.kind = 'constnt' is not a model kind: choose one of sprites"):
        make_project(tiny_collection, "model.kind=constnt")
