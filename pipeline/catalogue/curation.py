"""The scholar's curation file, `P/curation.toml`: names, merges, drops and notes for the sprites of
one trained model. sprites writes a commented template once (when the file is missing) and never
rewrites it; the report stage applies it to the exports and the galleries without retraining.

    model = "3f2a9c1e0b7d"     # the trained model the sprite numbers refer to (cache/train.h5)

    [sprite.3]
    name = "long s"
    merge = [17]               # sprite 17 joins this entry: its crops are listed under "long s"
    note = "both widths"

    [sprite.9]
    drop = true                # noise: its crops go to the unassigned list

An *entry* is what the catalogue lists: a sprite that is neither dropped nor merged into another,
together with the sprites merged into it. Its id is the id of that head sprite, so an entry keeps
its number while the curation grows; `entry = -1` marks the crops of a dropped sprite.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import SpritesError

__all__ = ["CURATION_NAME", "Curation", "parse_curation", "read_curation", "template_text", "DROPPED"]

CURATION_NAME = "curation.toml"
DROPPED = -1                     # the entry of a dropped sprite's crops
_SPRITE_KEYS = ("name", "merge", "drop", "note")
_HEADER = re.compile(r'^\s*\[\s*sprite\s*\.\s*["\']?\s*(-?\w+)\s*["\']?\s*\]')


@dataclass(frozen=True)
class Curation:
    """A parsed curation file (checked for form; `check(K)` checks the sprite numbers)."""
    model: str = ""                                          # model id ('' when the file does not say)
    names: dict[int, str] = field(default_factory=dict)      # head sprite → name
    merges: dict[int, tuple[int, ...]] = field(default_factory=dict)   # head → the sprites merged into it
    drops: frozenset[int] = frozenset()
    notes: dict[int, str] = field(default_factory=dict)
    text: str = ""                                           # the file, for line numbers in errors
    path: Path | None = None

    @property
    def empty(self) -> bool:
        return not (self.names or self.merges or self.drops or self.notes)

    def digest(self) -> dict:
        """What the report's fingerprint sees: the content, not the bytes (comments do not count)."""
        return {"model": self.model, "names": sorted(self.names.items()), "notes": sorted(self.notes.items()),
                "merges": sorted((h, list(m)) for h, m in self.merges.items()), "drops": sorted(self.drops)}

    def sprites_named(self) -> set[int]:
        return {*self.names, *self.notes, *self.merges, *self.drops, *(s for m in self.merges.values() for s in m)}

    def check(self, K: int) -> None:
        """Every sprite number must exist in a model of K sprites."""
        for k in sorted(self.sprites_named()):
            if not 0 <= k < K:
                raise self.error(f"sprite {k} does not exist: this model has sprites 0 to {K - 1}", k)

    def entries(self, K: int) -> np.ndarray:
        """(K,) int: the entry of each sprite — itself, the head it is merged into, or DROPPED."""
        self.check(K)
        entry = np.arange(K, dtype=np.int64)
        for head, members in self.merges.items():
            entry[list(members)] = head
        entry[sorted(self.drops)] = DROPPED
        return entry

    def name(self, entry: int) -> str:
        return self.names.get(int(entry), "") if entry >= 0 else ""

    def error(self, message: str, sprite: int | None = None, key: str | None = None) -> SpritesError:
        line = _line_of(self.text, sprite, key)
        where = f"{self.path or CURATION_NAME}" + (f", line {line}" if line else "")
        return SpritesError(f"{where}: {message}. Fix that line (sprites never rewrites this file) and run the report again")


def _line_of(text: str, sprite: int | None, key: str | None) -> int | None:
    """The 1-based line of `[sprite.N]` (or of its `key = …` line) in the file."""
    if sprite is None or not text:
        return None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m and m.group(1) == str(sprite):
            if key is None:
                return i + 1
            for j in range(i + 1, len(lines)):
                if lines[j].lstrip().startswith("["):
                    break
                if re.match(rf"^\s*{re.escape(key)}\s*=", lines[j]):
                    return j + 1
            return i + 1
    # the sprite may appear only inside another sprite's merge list
    for i, line in enumerate(lines):
        if re.match(r"^\s*merge\s*=", line) and re.search(rf"(?<![\w-]){sprite}(?!\w)", line.split("=", 1)[1]):
            return i + 1
    return None


def _as_sprite(key: str, partial: Curation) -> int:
    try:
        k = int(key)
    except ValueError:
        line = next((i + 1 for i, l in enumerate(partial.text.splitlines()) if (m := _HEADER.match(l)) and m.group(1) == key), None)
        where = f"{partial.path or CURATION_NAME}" + (f", line {line}" if line else "")
        raise SpritesError(f"{where}: [sprite.{key}] is not a sprite number; write the number shown in the report, "
                           f"e.g. [sprite.3]") from None
    if k < 0:
        raise partial.error(f"sprite {k} does not exist: sprite numbers start at 0", k)
    return k


def parse_curation(text: str, path: Path | None = None) -> Curation:
    """Parse and check the form of a curation file's text; a bad file raises SpritesError with its line."""
    where = str(path or CURATION_NAME)
    bare = Curation(text=text, path=path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpritesError(f"{where}: not valid TOML: {e}. Fix that line (sprites never rewrites this file)") from None
    unknown = sorted(set(data) - {"model", "sprite"})
    if unknown:
        line = next((i + 1 for i, l in enumerate(text.splitlines()) if re.match(rf"^\s*\[?\s*{re.escape(unknown[0])}\b", l)), None)
        raise SpritesError(f"{where}{f', line {line}' if line else ''}: unknown key or section {unknown[0]!r}; "
                           f"a curation file holds `model = \"…\"` and [sprite.N] sections (name, merge, drop, note)")
    model = data.get("model", "")
    if not isinstance(model, str):
        raise SpritesError(f"{where}: model must be a quoted model id, e.g. model = \"3f2a9c1e0b7d\"")
    sections = data.get("sprite", {})
    if not isinstance(sections, dict):
        raise SpritesError(f"{where}: `sprite` must be sections like [sprite.3], not a value")
    names, notes, merges, drops, owner = {}, {}, {}, set(), {}
    for key, body in sections.items():
        k = _as_sprite(key, bare)
        if not isinstance(body, dict):
            raise bare.error(f"[sprite.{k}] must be a section with name, merge, drop or note", k)
        for field_name in body:
            if field_name not in _SPRITE_KEYS:
                raise bare.error(f"unknown key {field_name!r} in [sprite.{k}]; allowed: {', '.join(_SPRITE_KEYS)}", k, field_name)
        for text_key, store in (("name", names), ("note", notes)):
            if text_key in body:
                if not isinstance(body[text_key], str):
                    raise bare.error(f"{text_key} of sprite {k} must be quoted text", k, text_key)
                if body[text_key].strip():
                    store[k] = body[text_key].strip()
        if "drop" in body:
            if not isinstance(body["drop"], bool):
                raise bare.error(f"drop of sprite {k} must be true or false", k, "drop")
            if body["drop"]:
                drops.add(k)
        if "merge" in body:
            members = body["merge"]
            if isinstance(members, int) and not isinstance(members, bool):
                members = [members]
            if not isinstance(members, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in members):
                raise bare.error(f"merge of sprite {k} must be a list of sprite numbers, e.g. merge = [17, 21]", k, "merge")
            for m in members:
                if m == k:
                    raise bare.error(f"sprite {k} cannot be merged into itself", k, "merge")
                if m < 0:
                    raise bare.error(f"sprite {m} does not exist: sprite numbers start at 0", k, "merge")
                if m in owner and owner[m] != k:
                    raise bare.error(f"sprite {m} is in two merges (into {owner[m]} and into {k}); keep it in one", k, "merge")
                owner[m] = k
            if members:
                merges[k] = tuple(sorted(set(members)))
    for head in merges:
        if head in owner:
            raise bare.error(f"sprite {head} heads a merge and is merged into sprite {owner[head]}; "
                             f"list all of them in one merge", head, "merge")
    for k in sorted(drops):
        if k in merges or k in owner:
            raise bare.error(f"sprite {k} is both dropped and merged; keep one", k, "drop")
        if k in names:
            raise bare.error(f"sprite {k} is dropped and also named; a dropped sprite's crops are unassigned", k, "name")
    return Curation(model=model, names=names, merges=merges, drops=frozenset(drops), notes=notes, text=text, path=path)


def read_curation(path: Path) -> Curation | None:
    """The curation at `path`, or None when there is no file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpritesError(f"cannot read {path}: {e}; save it as UTF-8 text") from None
    return parse_curation(text, path)


def template_text(model: str) -> str:
    """The commented file sprites writes once, when a project has none."""
    return f'''# Your curation of the sprites: names, merges, drops and notes.
#
# sprites reads this file and never rewrites it. `sprites run` applies it to the report and the
# exports (assignments.csv gains `entry` and `name`; exports/catalogue.json lists the entries),
# without retraining. The sprite numbers are those of the report.
#
# The trained model these numbers refer to (cache/train.h5); keep it as written. After a retrain
# the numbers mean other sprites, and the report says so instead of applying this file.
model = "{model}"

# One section per sprite you curate. On each sprite page of the report, "Curate" writes these
# lines for you to copy here. For example:
#
# [sprite.3]
# name = "long s"          # shown in the report and the exports
# merge = [17]             # sprite 17 shows the same thing: its crops join this entry
# note = "both widths"     # free text, kept in exports/catalogue.json
#
# [sprite.9]
# drop = true              # noise: its crops are listed as unassigned
'''
