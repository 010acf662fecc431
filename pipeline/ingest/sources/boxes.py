"""Boxes drawn by hand or by another tool (`ingest.crop = "boxes"`, `ingest.boxes = FILE`).

Two formats, chosen by the file's extension:

* **CSV** (`.csv`, `.tsv`): `source,x,y,w,h[,label]`, one box per row, a header row optional. The
  source is written as in `ingest.h5`'s `source` (a path relative to the images root;
  `book.pdf#page=3` for page 3 of a PDF, 1-based) or, for IIIF, the canvas id. The box is in
  source pixels: pixels of the image file, pixels at `ingest.pdf_dpi` for a PDF page,
  full-resolution canvas coordinates for a canvas.
* **W3C Web Annotations / IIIF annotations** (`.json`, `.jsonld`): an AnnotationPage,
  AnnotationCollection, a IIIF v2 AnnotationList (`resources`), a list of annotations or one
  annotation. The target (v3 `target`, v2 `on`) is either `SOURCE#xywh=x,y,w,h` or a
  SpecificResource whose `source` (v2 `full`) is the canvas/image and whose `selector` is a
  FragmentSelector with `value = "xywh=x,y,w,h"` (`pixel:` or `percent:` allowed). The label is
  the body's text (TextualBody `value`, v2 `chars`) or the annotation's `label`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import SpritesError
from pipeline.ingest.sources.iiif import parse_xywh, text_value

__all__ = ["Box", "read_boxes"]


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    label: str = ""
    unit: str = "pixel"   # or "percent" (of the source's width and height)


def read_boxes(path: Path) -> dict[str, list[Box]]:
    """source key → its boxes, in file order."""
    path = Path(path)
    if not path.is_file():
        raise SpritesError(f"ingest.boxes: no such file {path}; give a CSV (source,x,y,w,h[,label]) or a W3C annotation JSON")
    if path.suffix.lower() in (".json", ".jsonld"):
        return _read_annotations(path)
    return _read_csv(path)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _read_csv(path: Path) -> dict[str, list[Box]]:
    text = path.read_text(encoding="utf-8-sig")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    out: dict[str, list[Box]] = {}
    for line, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        values = [_number(v) for v in row[1:5]]
        if len(row) < 5 or None in values:
            if line == 1:  # a header
                continue
            raise SpritesError(f"{path}, line {line}: expected source,x,y,w,h[,label] with numbers; got {','.join(row)!r}")
        x, y, w, h = values
        if w <= 0 or h <= 0:
            raise SpritesError(f"{path}, line {line}: the box has no area (w = {w:g}, h = {h:g})")
        label = row[5].strip() if len(row) > 5 else ""
        out.setdefault(row[0].strip(), []).append(Box(x, y, w, h, label))
    return out


def _annotations(doc: Any) -> list[dict]:
    if isinstance(doc, list):
        return [a for item in doc for a in _annotations(item)]
    if not isinstance(doc, dict):
        return []
    kind = str(doc.get("type") or doc.get("@type") or "").split(":")[-1]
    if kind in ("AnnotationPage", "AnnotationList", "AnnotationCollection") or "items" in doc or "resources" in doc:
        items = doc.get("items") or doc.get("resources") or []
        first = doc.get("first")
        if not items and isinstance(first, dict):
            items = first.get("items") or []
        return _annotations(items)
    return [doc]


def _label(anno: dict) -> str:
    for body in (anno.get("body"), anno.get("resource")):
        for b in body if isinstance(body, list) else [body]:
            if isinstance(b, str):
                return b
            if isinstance(b, dict):
                for key in ("value", "chars", "label"):
                    if b.get(key):
                        return text_value(b[key])
    return text_value(anno.get("label"))


def _split(text: str) -> tuple[str, str | None]:
    """'SOURCE#xywh=…' or 'book.pdf#page=2&xywh=…' → (source, 'xywh=…'); the source keeps any
    other fragment (a PDF page)."""
    i = text.find("xywh=")
    if i < 0:
        return text, None
    return text[:i].rstrip("#&"), text[i:]


def _targets(anno: dict) -> list[tuple[str, str | None]]:
    """(source, 'xywh=…' text) pairs of an annotation's targets (v3 `target`, v2 `on`)."""
    out = []
    raw = anno.get("target", anno.get("on"))
    for t in raw if isinstance(raw, list) else [raw]:
        if isinstance(t, str):
            out.append(_split(t))
        elif isinstance(t, dict):
            src = t.get("source", t.get("full", t.get("id", t.get("@id"))))
            if isinstance(src, dict):
                src = src.get("id") or src.get("@id")
            source, frag = _split(str(src or ""))
            selectors = t.get("selector")
            for sel in selectors if isinstance(selectors, list) else [selectors]:
                value = str(sel.get("value", "")) if isinstance(sel, dict) else ""
                if "xywh=" in value:
                    frag = value
                elif value.startswith("page=") and "#page=" not in source:
                    source = f"{source}#{value}"  # a PDF page given as its own fragment selector
            out.append((source, frag))
    return out


def _read_annotations(path: Path) -> dict[str, list[Box]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as e:
        raise SpritesError(f"ingest.boxes: {path} is not valid JSON ({e})") from None
    out: dict[str, list[Box]] = {}
    for anno in _annotations(doc):
        label = _label(anno)
        for source, frag in _targets(anno):
            parsed = parse_xywh(frag or "")
            if not source or parsed is None:
                continue
            unit, (x, y, w, h) = parsed
            if w > 0 and h > 0:
                out.setdefault(source, []).append(Box(x, y, w, h, label, unit))
    if not out:
        raise SpritesError(f"ingest.boxes: {path} has no annotation with an xywh target (SOURCE#xywh=x,y,w,h or a FragmentSelector)")
    return out
