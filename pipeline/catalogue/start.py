"""Retraining from a curation (`train.init = "curated"`): the new model's first sprites start as
the curated entries of the model the curation names — merged sprites as one (the head's picture),
dropped sprites left out — and keep their names; any further sprites (model.sprites larger than
the entries) start from the data as usual.

The curated model's prototypes are kept in `cache/curated_start.h5` the first time (before the
retrain replaces cache/train.h5), so the retrain can be rerun — after a config change, or a new
seed — from the same start. The train stage's fingerprint sees the curation's content, so a plain
`sprites run` stays fresh until the curation changes.

After the retrain, the curation still names the old model: the report carries the names over to
the new sprite numbers (train.h5 records them) and appends a comment block to curation.toml that
says which new sprite is which entry — appended, never rewriting the user's lines.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np

from pipeline.catalogue.catalogue import model_id
from pipeline.catalogue.curation import CURATION_NAME, Curation, read_curation
from pipeline.core.fingerprint import stable_hash
from pipeline.core.store import stage_attrs, write_atomic_h5
from pipeline.errors import SpritesError

__all__ = ["START_NAME", "start_inputs", "curated_start", "note_retrain"]

START_NAME = "curated_start.h5"


def _curation(project) -> Curation:
    curation = read_curation(project.root / CURATION_NAME)
    if curation is None or curation.empty:
        raise SpritesError(f"train.init = curated, but {project.root / CURATION_NAME} names, merges or drops nothing: "
                           f"curate the report first, or set train.init = data")
    if not curation.model:
        raise SpritesError(f"train.init = curated needs the `model = \"…\"` line of {project.root / CURATION_NAME} "
                           f"(the model its sprite numbers refer to)")
    return curation


def start_inputs(project) -> dict:
    """What the train stage's fingerprint sees with train.init = curated (the curation's content)."""
    curation = read_curation(project.root / CURATION_NAME)
    return {"curation": stable_hash(curation.digest()) if curation is not None and not curation.empty else None}


def _keep_prototypes(project, path: Path, wanted: str) -> None:
    """cache/curated_start.h5 ← the prototypes of the model trained now, which must be `wanted`."""
    train, dec = stage_attrs(project.stage_path("train")), stage_attrs(project.stage_path("decompose"))
    current = model_id(train) if train else ""
    if current != wanted:
        raise SpritesError(f"curation.toml refers to model {wanted}, but the trained model is {current or 'none'} and "
                           f"the sprites of {wanted} were not kept: curate the report of the model trained now "
                           f"(model = \"{current}\"), or set train.init = data")
    if dec is None or json.loads(dec.get("deps_json", "{}")).get("train") != train.get("run_id"):
        raise SpritesError("train.init = curated starts from the decomposed model's sprites: "
                           "run `sprites run decompose` once with train.init = data, then set it again")
    with h5py.File(project.stage_path("decompose"), "r") as f, write_atomic_h5(path) as out:
        for name in ("colours", "masks", "backgrounds"):
            if f"prototypes/{name}" in f:
                out.create_dataset(name, data=f[f"prototypes/{name}"][()])
        out.attrs["model"] = wanted


def curated_start(project) -> tuple["StartBank", dict]:
    """The bank a curated retrain starts from, and the attributes train.h5 records about it."""
    from pipeline.models.base import StartBank   # torch: not at import (the report stage imports this module)

    curation = _curation(project)
    path = project.cache_dir / START_NAME
    saved = None
    if path.exists():
        with h5py.File(path, "r") as f:
            saved = str(f.attrs.get("model", ""))
    if saved != curation.model:
        _keep_prototypes(project, path, curation.model)
    with h5py.File(path, "r") as f:
        colours = f["colours"][()].astype(np.float32) / 255
        masks = f["masks"][()].astype(np.float32) / 255 if "masks" in f else None
        backgrounds = f["backgrounds"][()].astype(np.float32) / 255 if "backgrounds" in f else None
    entry = curation.entries(len(colours))
    heads = sorted({int(e) for e in entry if e >= 0})
    names = tuple(curation.names.get(e, "") for e in heads)
    start = StartBank(colours[heads], None if masks is None else masks[heads], backgrounds, names)
    members = {str(j): [k for k in range(len(entry)) if entry[k] == e] for j, e in enumerate(heads)}
    attrs = {"curated_from": curation.model, "curated_names_json": json.dumps(dict(enumerate(names))),
             "curated_members_json": json.dumps(members)}
    return start, attrs


def note_retrain(project, train_attrs, new_model: str) -> bool:
    """Append to curation.toml, once per retrained model, which new sprite is which entry. → appended?"""
    path = project.root / CURATION_NAME
    if "curated_from" not in train_attrs or "bank" in train_attrs or not path.exists():
        return False   # a matched project's model was retrained in its bank: the note belongs there
    text = path.read_text(encoding="utf-8")
    marker = f"as model {new_model}"
    if marker in text:
        return False
    names = json.loads(train_attrs["curated_names_json"])
    members = json.loads(train_attrs.get("curated_members_json", "{}"))
    old = train_attrs["curated_from"]
    lines = [f"# ── sprites, {time.strftime('%Y-%m-%d')}: retrained from this curation (train.init = \"curated\") {marker}.",
             "# Its first sprites started from your entries; the report gives them these names:"]
    for j, name in names.items():
        was = " + ".join(str(k) for k in members.get(j, []))
        lines.append(f"#   sprite {j} = {json.dumps(name) if name else '(unnamed)'} (sprite{'s' if '+' in was else ''} {was} of model {old})")
    lines += [f"# To curate model {new_model} itself, set model = \"{new_model}\" above and number the sections as in",
              "# the new report (with train.init = \"curated\" a changed curation retrains again)."]
    with open(path, "a", encoding="utf-8") as f:
        f.write(("" if text.endswith("\n") else "\n") + "\n" + "\n".join(lines) + "\n")
    return True
