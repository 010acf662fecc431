"""Content fingerprints: sha256 over sorted-key JSON, so key order never matters."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["stable_json", "stable_hash", "diff_values"]


def stable_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(stable_json(obj).encode("utf-8")).hexdigest()


def diff_values(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two nested dicts: 'ingest.size 64 → 32'."""
    changes = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if key not in old:
            changes.append(f"{name} added ({new[key]!r})")
        elif key not in new:
            changes.append(f"{name} removed")
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            changes += diff_values(old[key], new[key], name + ".")
        elif old[key] != new[key]:
            changes.append(f"{name} {old[key]!r} → {new[key]!r}")
    return changes
