"""A bank: another project's trained (and curated) model applied to this project's crops, without
training (`sprites match --bank OTHER --project P`, saved in P's config as `train.bank`).

P's train stage adopts the bank's model: cache/train.h5 holds a copy of the bank's weights, the
bank's config (`model_config_json`, so decompose rebuilds the bank's model), the bank's model id
(so the bank's curation.toml applies to the copy) and `match_threshold`: crops whose reconstruction
error lies above it are *unmatched* — no sprite of the bank explains them as well as it explains
its own collection. The threshold is Tukey's far-out fence of the bank's own errors taken on a log
scale, Q3·(Q3/Q1)³: errors are positive and skewed, and new scans of the same kind fit a model
somewhat worse than the crops it was trained on (twice the error on a second glyphs collection,
where noise and hatching score 10× more), so the fence scales with the spread instead of adding it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from pipeline.core.project import Project
from pipeline.core.store import stage_attrs, write_stage
from pipeline.errors import SpritesError

__all__ = ["FENCE", "open_bank", "unmatched_threshold", "bank_inputs", "adopt_bank", "match_overrides", "match_project"]

FENCE = 3.0                                   # Tukey's far-out fence, in interquartile ranges
CROP_KEYS = ("size", "channels", "pad")       # ingest keys that must equal the bank's: they shape the crops


def open_bank(root: Path, project: Project | None = None) -> Project:
    """The bank project at `root`, checked: a project, trained and decomposed, not `project` itself."""
    try:
        bank = Project.open(root)
    except SpritesError:
        raise SpritesError(f"train.bank = {root}: not a sprites project (no sprites.toml there); "
                           f"give the folder of a project that has been run") from None
    if project is not None and bank.root == project.root:
        raise SpritesError(f"train.bank names this project itself ({root}); give another project's folder")
    for stage in ("train", "decompose"):
        if stage_attrs(bank.stage_path(stage)) is None:
            raise SpritesError(f"the bank {bank.root} has no {stage} result: run `sprites run all --project {bank.root}` first")
    return bank


def unmatched_threshold(errors: np.ndarray) -> float:
    """Tukey's far-out fence of the bank's own errors on a log scale: Q3·(Q3/Q1)^FENCE."""
    q1, q3 = np.quantile(np.maximum(np.asarray(errors, np.float64), 1e-12), [0.25, 0.75])
    return float(np.exp(np.log(q3) + FENCE * (np.log(q3) - np.log(q1))))


def bank_inputs(project: Project, cfg) -> dict:
    """What the train stage's fingerprint sees of the bank: its model's run (retraining it makes P stale)."""
    bank = project.bank_root(cfg)
    train, dec = stage_attrs(bank / "cache" / "train.h5"), stage_attrs(bank / "cache" / "decompose.h5")
    return {"bank": str(bank), "bank_train": (train or {}).get("run_id"), "bank_decompose": (dec or {}).get("run_id")}


def _copy(src: h5py.Group, dst: h5py.Group) -> None:
    for name in src:
        src.copy(src[name], dst, name=name)


def adopt_bank(ctx) -> str:
    """The train stage of a matched project: copy the bank's model into cache/train.h5. → a log line."""
    from pipeline.catalogue.catalogue import model_id

    project, cfg = ctx.project, ctx.config
    bank = open_bank(project.bank_root(cfg), project)
    with h5py.File(ctx.upstream("ingest"), "r") as ing:
        C, S = int(ing["crops"].shape[1]), int(ing["crops"].shape[-1])
    with h5py.File(bank.stage_path("train"), "r") as tr, h5py.File(bank.stage_path("decompose"), "r") as dec, \
            write_stage(ctx.output, ctx.meta) as f:
        if (int(tr.attrs["channels"]), int(tr.attrs["size"])) != (C, S):
            raise SpritesError(f"the bank's crops are {tr.attrs['size']} px with {tr.attrs['channels']} channel(s), these are "
                               f"{S} px with {C}: set ingest.size and ingest.channels to the bank's "
                               f"(`sprites match` does) and run again")
        errors = dec["error"][()]
        bank_model, threshold = model_id(dict(tr.attrs)), unmatched_threshold(errors)
        _copy(tr, f)
        attrs = {k: v for k, v in tr.attrs.items() if k not in ("fingerprint", "params_json", "deps_json", "inputs_json",
                                                                 "config_json", "run_id", "complete", "created_utc",
                                                                 "stage", "stage_version", "sprites_version")}
        f.attrs.update(attrs)
        f.attrs.update({"bank": str(bank.root), "model_id": bank_model,
                        "model_config_json": tr.attrs.get("model_config_json", tr.attrs["config_json"]),
                        "match_threshold": threshold, "bank_crops": len(errors),
                        "bank_created_utc": str(tr.attrs.get("created_utc", ""))})
    return (f"train: adopted the trained model of the bank {bank.root} (model {bank_model}); "
            f"crops with error above {threshold:.5f} will be listed as unmatched")


def match_overrides(project: Project, bank: Project) -> list[str]:
    """The `section.key=value` settings that make `project` a matched project of `bank`."""
    bank_cfg, cfg = bank.config(), project.config()
    rel = os.path.relpath(bank.root, project.root)
    sets = [f"train.bank={json.dumps(rel)}"] if cfg.train.bank != rel else []
    for key in CROP_KEYS:
        theirs = getattr(bank_cfg.ingest, key)
        if getattr(cfg.ingest, key) != theirs:
            sets.append(f"ingest.{key}={json.dumps(theirs)}")
    return sets


def match_project(project: Project, bank_root: str | Path, *, stages, log=print, progress: bool = True) -> dict:
    """`sprites match`: save `train.bank` (and the bank's crop settings) in the project's config,
    run every stage (the train stage adopts the bank's model) → the catalogue summary."""
    from pipeline.core.config import apply_overrides, render_toml
    from pipeline.core.runner import run_stages

    bank = open_bank(Path(bank_root).expanduser().resolve(), project)
    sets = match_overrides(project, bank)
    if sets:
        cfg = apply_overrides(project.config(), sets)
        tmp = project.config_path.with_name(project.config_path.name + ".tmp")
        tmp.write_text(render_toml(cfg), encoding="utf-8")
        tmp.replace(project.config_path)
        log(f"match: saved in {project.config_path}: {', '.join(sets)}")
    run_stages(project, project.config(), ["all"], stages=stages, log=log, progress=progress)
    summary = json.loads((project.exports_dir / "catalogue.json").read_text(encoding="utf-8"))
    log(f"match: {sum(e['crops'] for e in summary['entries']):,} crops explained by the bank's sprites, "
        f"{summary.get('unmatched', 0):,} unmatched; open {project.report_dir / 'index.html'}")
    return summary
