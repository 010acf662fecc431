"""The model kinds (`model.kind`): one line per kind.

A kind is its `Model` subclass ("module:Class") and, when it has settings of its own, a dataclass
of them (made with `pipeline.core.config.option`, in a torch-free module of its subpackage): they
are read from the config section named after the kind (e.g. `[ast]`), written by `sprites init`
when the kind is chosen, and enter the train and decompose fingerprints with the `[model]` keys.

Imported by the config to check `model.kind`, so it must stay free of torch: the classes are
imported only when a model is built (`model_class`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pipeline.errors import SpritesError

__all__ = ["Kind", "KINDS", "model_class", "kind_sections"]


@dataclass(frozen=True)
class Kind:
    model: str | type                   # "module:Class" of its Model subclass
    section: str | type | None = None   # "module:Class" of the dataclass of its own keys ([<kind>])


KINDS: dict[str, Kind | str | type] = {
    "sprites": Kind("pipeline.models.sprites:SpriteModel"),   # DTI-Sprites, DTI-Clustering
}


def _resolve(target: str | type) -> type:
    if isinstance(target, str):
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)
    return target


def _kind(name: str) -> Kind:
    entry = KINDS[name]
    return entry if isinstance(entry, Kind) else Kind(entry)


def model_class(kind: str) -> type:
    """The `Model` subclass of `kind`."""
    if kind not in KINDS:
        raise SpritesError(f"model.kind = {kind!r} is not a model kind: choose one of {', '.join(KINDS)}")
    return _resolve(_kind(kind).model)


def kind_sections() -> dict[str, type]:
    """kind name → the dataclass of its own keys, for the kinds that have some."""
    return {name: _resolve(_kind(name).section) for name in KINDS if _kind(name).section is not None}
