"""The catalogue: a curation applied to one trained model's sprites and to the crops they explain.

Which curation applies: the project's own `curation.toml` when it says something, else the bank's
(for a project matched against a bank, `train.bank`). A curation that names another model than the
one trained is reported, not applied (its sprite numbers would point at other sprites).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.catalogue.curation import CURATION_NAME, DROPPED, Curation, read_curation, template_text

__all__ = ["NO_SPRITE", "UNASSIGNED", "UNMATCHED", "Catalogue", "build_catalogue", "choose_curation",
           "ensure_template", "model_id", "renamed_names"]

# Gallery groups below zero (entries are ≥ 0).
NO_SPRITE = -1      # every layer empty
UNASSIGNED = -2     # explained by a dropped sprite
UNMATCHED = -3      # `sprites match`: no sprite of the bank explains the crop well


def renamed_names(train_attrs, curation: Curation | None) -> dict[int, str] | None:
    """For a model retrained (`train.init = "curated"`) from `curation`: its sprites' names, carried
    over from the entries they started from; None for any other model or curation."""
    if "curated_names_json" not in train_attrs or curation is None or curation.model != train_attrs.get("curated_from"):
        return None
    return {int(k): v for k, v in json.loads(train_attrs["curated_names_json"]).items() if v}


def model_id(train_attrs) -> str:
    """The id of a trained model: the train run's id (12 hex digits), or the bank's for a matched project."""
    if "model_id" in train_attrs:
        return str(train_attrs["model_id"])
    return str(train_attrs.get("run_id", ""))[:12]


@dataclass
class Catalogue:
    """Entries of the catalogue and, per sprite, the entry it belongs to."""
    model: str
    entry_of_sprite: np.ndarray                      # (K,) head sprite, or DROPPED
    names: dict[int, str] = field(default_factory=dict)
    notes: dict[int, str] = field(default_factory=dict)
    source: str = ""                                 # the curation file applied ('' = none)
    warning: str = ""                                # why a curation was not applied
    notice: str = ""                                 # how it was applied, when that needs saying

    @property
    def K(self) -> int:
        return len(self.entry_of_sprite)

    @property
    def curated(self) -> bool:
        return bool(self.source)

    def entries(self) -> list[int]:
        return sorted({int(e) for e in self.entry_of_sprite if e >= 0})

    def members(self, entry: int) -> list[int]:
        return [k for k in range(self.K) if self.entry_of_sprite[k] == entry]

    def dropped(self) -> list[int]:
        return [k for k in range(self.K) if self.entry_of_sprite[k] == DROPPED]

    def label(self, entry: int) -> str:
        """'Sprite 3 · long s', 'Sprites 3 + 17 · long s', 'Sprite 4'."""
        members = self.members(entry)
        head = f"Sprite {entry}" if len(members) <= 1 else "Sprites " + " + ".join(str(k) for k in members)
        return head + (f" · {self.names[entry]}" if entry in self.names else "")

    def crop_entries(self, front: np.ndarray) -> np.ndarray:
        """(N,) the entry of each crop (front sprite's entry; −1 for no sprite or a dropped sprite)."""
        front = np.asarray(front, dtype=np.int64)
        out = np.full(front.shape, DROPPED, np.int64)
        ok = front >= 0
        out[ok] = self.entry_of_sprite[front[ok]]
        return out

    def groups(self, front: np.ndarray, unmatched: np.ndarray | None = None) -> np.ndarray:
        """(N,) the gallery of each crop: its entry, NO_SPRITE, UNASSIGNED or UNMATCHED."""
        front = np.asarray(front, dtype=np.int64)
        group = self.crop_entries(front)
        group[(front >= 0) & (group < 0)] = UNASSIGNED
        group[front < 0] = NO_SPRITE
        if unmatched is not None:
            group[np.asarray(unmatched, bool) & (front >= 0)] = UNMATCHED
        return group

    def summary(self, front: np.ndarray) -> dict:
        """exports/catalogue.json."""
        entry = self.crop_entries(front)
        counts = np.bincount(entry[entry >= 0], minlength=self.K) if self.K else np.zeros(0, np.int64)
        return {"format": "sprites-catalogue", "format_version": 1, "model": self.model, "curation": self.source,
                "warning": self.warning, "notice": self.notice,
                "entries": [{"entry": e, "name": self.names.get(e, ""), "sprites": self.members(e),
                             "note": self.notes.get(e, ""), "crops": int(counts[e])} for e in self.entries()],
                "dropped": [{"sprite": k, "note": self.notes.get(k, ""),
                             "crops": int(((np.asarray(front) == k)).sum())} for k in self.dropped()]}


def choose_curation(project_root: Path, bank_root: Path | None = None) -> Curation | None:
    """The project's curation if it says anything, else the bank's (if any), else None."""
    own = read_curation(Path(project_root) / CURATION_NAME)
    if own is not None and not own.empty:
        return own
    if bank_root is not None:
        bank = read_curation(Path(bank_root) / CURATION_NAME)
        if bank is not None and not bank.empty:
            return bank
    return own


def build_catalogue(curation: Curation | None, K: int, model: str, renamed: dict[int, str] | None = None) -> Catalogue:
    """Apply `curation` to a model of K sprites with id `model`. `renamed`: names a retrained model
    carried over from the curation it started from (used when the curation names that older model)."""
    identity = np.arange(K, dtype=np.int64)
    if curation is None or curation.empty:
        return Catalogue(model, identity, dict(renamed or {}))
    where = str(curation.path or CURATION_NAME)
    if curation.model and curation.model != model:
        if renamed is not None:
            return Catalogue(model, identity, dict(renamed), source=where,
                             notice=f"{where} refers to model {curation.model}; this model was retrained from it, "
                                     f"so its names carry over (numbers are the new model's)")
        return Catalogue(model, identity, {}, warning=f"{where} refers to model {curation.model}, not to the "
                                                      f"model trained now ({model}): it was not applied. Its sprite "
                                                      f"numbers point at other sprites now; curate the new report")
    entry = curation.entries(K)
    return Catalogue(model, entry, dict(curation.names), dict(curation.notes), source=where)


def ensure_template(project_root: Path, model: str) -> bool:
    """Write the commented curation.toml when the project has none; True when written."""
    path = Path(project_root) / CURATION_NAME
    if path.exists():
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(template_text(model), encoding="utf-8")
    tmp.replace(path)
    return True
