"""The model kinds (`model.kind`): one line per kind, "module:Class" of its `Model` subclass.

Imported by the config to check `model.kind`, so it must stay free of torch: the classes are
imported only when a model is built (`model_class`).
"""

from __future__ import annotations

import importlib

from pipeline.errors import SpritesError

__all__ = ["KINDS", "model_class"]

KINDS: dict[str, str | type] = {
    "sprites": "pipeline.models.sprites:SpriteModel",   # DTI-Sprites, DTI-Clustering
}


def model_class(kind: str) -> type:
    """The `Model` subclass of `kind` (a registered "module:Class" path, or a class itself)."""
    if kind not in KINDS:
        raise SpritesError(f"model.kind = {kind!r} is not a model kind: choose one of {', '.join(KINDS)}")
    target = KINDS[kind]
    if isinstance(target, str):
        module, _, name = target.partition(":")
        target = getattr(importlib.import_module(module), name)
    return target
