"""The exports: stable files for other tools, written by the report stage into DIR/exports/.

* `assignments.csv` — one row per crop: crop_id, source, box_x, box_y, box_w, box_h, sprite
  (the front-most non-empty layer's sprite, −1 when every layer is empty), layers (the sprite of
  each layer joined with ';'), entry (the catalogue entry of `sprite` after curation.toml: the
  head sprite of its merge, −1 for a dropped sprite or no sprite) and name (the entry's name, ''
  when unnamed), [background], error, margin, deviation (the mean of the crop's most deviating
  5 % of pixels, `pipeline.trust.deviation`), doubt (the uncertain queue's score, 0 – 1),
  [matched (1/0, for a project matched against a bank: 0 when no sprite explains the crop well)];
  the provenance: page (1-based PDF
  page or canvas position, 0 for an image), file, manifest, canvas, iiif_region, label (of the
  box), rotation, checksum; the metadata columns as `meta_<column>`; then a few readable transformation
  values per module (and per layer when L > 1, prefixed `l0_`, `l1_`…): position → scale, tx,
  ty; color → gain, offset (means over channels); any other → the norm of its parameters
  (distance from the identity).
* `assignments.json` — {"header": {format, sprites, layers, count, columns, config…},
  "crops": [one object per crop, the same values; `layers` as a list of integers]}.
* `masks.h5` (models with transparency) — `source` (N strings), `semantic` (N×S×S uint8:
  0 background, k+1 = sprite k), `instance` (N×S×S uint8: 0 background, l+1 = layer l),
  `family` (N×S×S uint8: 0 background, f+1 = sprite family f).
* `sprites/sprite_{k:03d}.png` (RGBA; opaque without masks) and `sprites/background_{m}.png`.

Every file is written under a temporary name and renamed when complete; all reads stream in chunks.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from pipeline import __version__
from pipeline.catalogue.catalogue import Catalogue
from pipeline.core.store import read_strings, string_dataset, write_atomic_h5
from pipeline.report.thumbs import png_bytes, rgba

__all__ = ["FORMAT_VERSION", "value_order", "assignment_rows", "write_assignments", "write_masks",
           "write_sprite_pngs", "atomic_path"]

FORMAT_VERSION = 1
_CHUNK = 4096
BASE_COLUMNS = ["crop_id", "source", "box_x", "box_y", "box_w", "box_h", "sprite", "layers", "entry", "name"]
PROVENANCE_STRINGS = ["file", "manifest", "canvas", "iiif_region", "label", "checksum"]
PROVENANCE_COLUMNS = ["page", "file", "manifest", "canvas", "iiif_region", "label", "rotation", "checksum"]


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path next to `path`, renamed over it when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _number(v: float) -> float | None:
    v = float(v)
    return float(f"{v:.6g}") if math.isfinite(v) else None


def value_order(dec: h5py.File) -> list[str]:
    """The readable transformation columns decompose.h5 keeps (`values/`), in the model's order."""
    if "values" not in dec:
        return []
    order = json.loads(dec["values"].attrs.get("order", "[]"))
    return [c for c in order if c in dec["values"]] + sorted(c for c in dec["values"] if c not in order)


def assignment_rows(ingest: h5py.File, dec: h5py.File, backgrounds: int = 0, catalogue: Catalogue | None = None,
                    unmatched: np.ndarray | None = None, numbers: dict[str, np.ndarray] | None = None,
                    family: np.ndarray | None = None) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """(columns, rows): one dict per crop, streamed from the open ingest.h5 and decompose.h5;
    `backgrounds` is M, the model's background prototypes (0 = none); `catalogue` the curation
    applied (entry and name; none = every sprite its own entry); `unmatched` (N,) bool adds the
    column `matched` (a project matched against a bank); `numbers` adds number columns after
    `margin` (the report's `deviation` and `doubt`); `family` (K,) adds the column `family` (the
    family of `sprite`, −1 for no sprite)."""
    n, L = dec["sprite"].shape
    if catalogue is None:
        catalogue = Catalogue("", np.arange(int(dec.attrs["sprites"])))
    values = value_order(dec)
    has_bkg = backgrounds > 0
    tcols = [(f"l{layer}_" if L > 1 else "") + c for layer in range(L) for c in values]
    meta = {name: read_strings(ds) for name, ds in ingest["metadata"].items()} if "metadata" in ingest else {}
    mcols = [f"meta_{name}" for name in meta]
    columns = (BASE_COLUMNS + (["background"] if has_bkg else []) + ["error", "margin"]
               + (["family"] if family is not None else []) + list(numbers or {}) + (["matched"] if unmatched is not None else []) + PROVENANCE_COLUMNS + mcols + tcols)
    sources = read_strings(ingest["source"])
    strings = {key: read_strings(ingest[key]) if key in ingest else [""] * n for key in PROVENANCE_STRINGS}
    page = ingest["page"][()] if "page" in ingest else np.zeros(n, np.int32)
    rotation = ingest["rotation"][()] if "rotation" in ingest else np.zeros(n, np.float32)

    def rows() -> Iterator[dict[str, Any]]:
        for lo in range(0, n, _CHUNK):
            hi = min(n, lo + _CHUNK)
            box, sprite, front = ingest["box"][lo:hi], dec["sprite"][lo:hi], dec["front"][lo:hi]
            error, margin = dec["error"][lo:hi], dec["margin"][lo:hi]
            bkg = dec["background"][lo:hi] if has_bkg else None
            extra = [dec["values"][c][lo:hi, layer] for layer in range(L) for c in values]
            for i in range(hi - lo):
                row = {"crop_id": lo + i, "source": sources[lo + i], "box_x": int(box[i, 0]), "box_y": int(box[i, 1]),
                       "box_w": int(box[i, 2]), "box_h": int(box[i, 3]), "sprite": int(front[i]),
                       "layers": [int(s) for s in sprite[i]]}
                entry = int(catalogue.entry_of_sprite[front[i]]) if front[i] >= 0 else -1
                row["entry"], row["name"] = entry, catalogue.names.get(entry, "") if entry >= 0 else ""
                if bkg is not None:
                    row["background"] = int(bkg[i])
                row["error"], row["margin"] = _number(error[i]), _number(margin[i])
                if family is not None:
                    row["family"] = int(family[front[i]]) if front[i] >= 0 else -1
                for column, per_crop in (numbers or {}).items():
                    row[column] = _number(per_crop[lo + i])
                if unmatched is not None:
                    row["matched"] = int(not unmatched[lo + i])
                j = lo + i
                row["page"] = int(page[j])
                row.update({key: strings[key][j] for key in PROVENANCE_STRINGS if key != "checksum"})
                row["rotation"], row["checksum"] = _number(rotation[j]), strings["checksum"][j]
                row.update({col: meta[name][j] for col, name in zip(mcols, meta)})
                for col, column in zip(tcols, extra):
                    row[col] = _number(column[i])
                yield row
    return columns, rows()


def _csv_value(v: Any) -> Any:
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    return "" if v is None else v


def write_assignments(folder: Path, columns: list[str], rows: Iterator[dict[str, Any]],
                      header: dict[str, Any]) -> int:
    """Write assignments.csv and assignments.json together (one pass over `rows`); → row count."""
    folder = Path(folder)
    count = 0
    with atomic_path(folder / "assignments.csv") as csv_tmp, atomic_path(folder / "assignments.json") as json_tmp:
        with open(csv_tmp, "w", newline="", encoding="utf-8") as fc, open(json_tmp, "w", encoding="utf-8") as fj:
            writer = csv.writer(fc)
            writer.writerow(columns)
            head = {"format": "sprites-assignments", "format_version": FORMAT_VERSION, "columns": columns,
                    "sprites_version": __version__, **header}
            fj.write('{"header": ' + json.dumps(head, ensure_ascii=False, sort_keys=True) + ',\n"crops": [')
            for row in rows:
                writer.writerow([_csv_value(row[c]) for c in columns])
                fj.write(("\n" if count == 0 else ",\n") + json.dumps(row, ensure_ascii=False))
                count += 1
            fj.write("\n]}\n")
    return count


def write_masks(path: Path, ingest: h5py.File, dec: h5py.File, attrs: dict[str, Any],
                family: np.ndarray | None = None) -> None:
    """exports/masks.h5: source, semantic, instance (copied in chunks, gzip level 1) and, with
    `family` (K,), `family`: the semantic mask with each sprite replaced by its family."""
    n, S = dec["semantic"].shape[0], dec["semantic"].shape[-1]
    with write_atomic_h5(path) as f:
        string_dataset(f, "source", read_strings(ingest["source"]))
        chunk = (max(1, min(n, 256)), S, S)
        names = ("semantic", "instance") + (("family",) if family is not None else ())
        out = {k: f.create_dataset(k, shape=(n, S, S), dtype=np.uint8, chunks=chunk, compression="gzip",
                                    compression_opts=1) for k in names}
        table = None if family is None else np.concatenate([[0], np.asarray(family) + 1]).astype(np.uint8)
        step = chunk[0] * 16
        for lo in range(0, n, step):
            for k, ds in out.items():
                ds[lo:lo + step] = table[dec["semantic"][lo:lo + step]] if k == "family" else dec[k][lo:lo + step]
        if family is not None:
            f["family"].attrs["labels"] = "0 background, f+1 = family f (f = the smallest sprite id of the family)"
        f["semantic"].attrs["labels"] = "0 background, k+1 = sprite k"
        f["instance"].attrs["labels"] = "0 background, l+1 = object layer l"
        for key, value in attrs.items():
            f.attrs[key] = value if not isinstance(value, (dict, list)) else json.dumps(value, sort_keys=True)
        f.attrs["sprites_version"] = __version__


def write_sprite_pngs(folder: Path, colours: np.ndarray, masks: np.ndarray | None,
                      backgrounds: np.ndarray | None) -> list[str]:
    """exports/sprites/: sprite_{k:03d}.png (RGBA) and background_{m}.png; the folder is swapped whole."""
    folder = Path(folder)
    names = []
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for k in range(len(colours)):
            names.append(f"sprite_{k:03d}.png")
            (tmp / names[-1]).write_bytes(png_bytes(rgba(colours[k], None if masks is None else masks[k])))
        for m in range(0 if backgrounds is None else len(backgrounds)):
            names.append(f"background_{m}.png")
            (tmp / names[-1]).write_bytes(png_bytes(rgba(backgrounds[m], None)))
        if folder.exists():
            shutil.rmtree(folder)
    return names
