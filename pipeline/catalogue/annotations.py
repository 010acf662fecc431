"""exports/annotations/: every crop as a W3C Web Annotation (IIIF Presentation 3), one
AnnotationPage per page (canvas, image or PDF page), an AnnotationCollection over them, and — for
local images — a IIIF manifest whose canvases are the images, so a IIIF viewer served from a web
server shows the pages with their annotations.

Checked with `iiif-prezi3` (the IIIF community's Presentation 3 models): every page, the collection
and the manifest are validated by its model of their type before they are written.

* Each annotation: motivation `classifying` + `tagging`; body = the entry's name (purpose
  tagging, when named) and `sprite K` (purpose classifying); target = the page's canvas with the
  crop's box as a `#xywh=x,y,w,h` fragment, in canvas coordinates (full-resolution pixels for
  IIIF, image pixels for local files, pixels at `ingest.pdf_dpi` for PDF pages).
* Targets: a IIIF crop's canvas id (the manifest's); a local image's URL under `report.iiif_base`
  (its path below the *served folder*: the common folder of the project and the images); a PDF
  page `…/book.pdf#page=3` has no image to paint, so it is annotated but left out of the manifest.
* Ids we mint live under `report.iiif_base` (default http://localhost:8000/, where
  `python -m http.server 8000 --directory SERVED` puts them).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from pipeline.catalogue.catalogue import Catalogue
from pipeline.core.store import read_strings
from pipeline.errors import SpritesError
from pipeline.report.exports import atomic_path

__all__ = ["ANNOTATIONS_DIR", "served_root", "write_annotations"]

ANNOTATIONS_DIR = "annotations"
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".tif": "image/tiff",
                ".tiff": "image/tiff", ".webp": "image/webp", ".bmp": "image/bmp"}


@dataclass
class _Page:
    target: str            # canvas id the annotations target
    label: str
    width: int
    height: int
    image: str = ""        # URL of the local image painted on the canvas ('' = none: IIIF or PDF)
    mime: str = ""


def served_root(project_root: Path, images_root: Path) -> Path:
    """The folder a web server must serve so that the project's exports and the images are both below it."""
    try:
        return Path(os.path.commonpath([Path(project_root).resolve(), Path(images_root).resolve()]))
    except ValueError:   # another drive (Windows): the images cannot be served with the project
        return Path(project_root).resolve()


def _url(base: str, path: Path, root: Path) -> str:
    rel = os.path.relpath(Path(path).resolve(), root)
    return base + "/".join(quote(part) for part in Path(rel).parts)


def _pages(ing, base: str, root: Path) -> tuple[list[_Page], np.ndarray]:
    """One _Page per distinct source, and (N,) the page of each crop."""
    n = ing["crops"].shape[0]
    source = read_strings(ing["source"])
    kind = read_strings(ing["kind"]) if "kind" in ing else ["image"] * n
    file = read_strings(ing["file"]) if "file" in ing else source
    canvas = read_strings(ing["canvas"]) if "canvas" in ing else [""] * n
    label = read_strings(ing["canvas_label"]) if "canvas_label" in ing else [""] * n
    page_no = ing["page"][()] if "page" in ing else np.zeros(n, np.int32)
    size = ing["size"][()]
    images_root = Path(str(ing.attrs.get("images_root", ".")))
    rows: dict[str, int] = {}
    pages: list[_Page] = []
    of = np.zeros(n, np.int64)
    for i in range(n):
        key = source[i]
        if key not in rows:
            rows[key] = len(pages)
            w, h = int(size[i, 0]), int(size[i, 1])
            if kind[i] == "iiif":
                pages.append(_Page(canvas[i] or key, label[i] or key, w, h))
            elif kind[i] == "pdf":
                url = _url(base, images_root / file[i], root)
                pages.append(_Page(f"{url}#page={int(page_no[i])}", f"{file[i]}, page {int(page_no[i])}", w, h))
            else:
                path = images_root / (file[i] or key)
                url = _url(base, path, root)
                pages.append(_Page(url, file[i] or key, w, h, image=url,
                                   mime=_IMAGE_TYPES.get(path.suffix.lower(), "image/png")))
        of[i] = rows[key]
    return pages, of


def _reference(uri: str, kind: str) -> dict:
    return {"id": uri, "type": kind}


_CONTEXT = "http://iiif.io/api/presentation/3/context.json"


def _validated(doc: dict, model) -> dict:
    """`doc` checked by iiif-prezi3's model of its type, with the context first; a bad id, type or
    field is a SpritesError (the ids we mint come from `report.iiif_base`)."""
    from pydantic import ValidationError
    try:
        model.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise SpritesError(f"exports/annotations: the {doc.get('type')} {doc.get('id')!r} is not valid IIIF ({where}: "
                           f"{first.get('msg')}); check report.iiif_base, a web address such as "
                           f"\"http://localhost:8000/\"") from None
    return {"@context": _CONTEXT, **doc}


def _annotation_page(page: _Page, page_id: str, crops: list[int], box: np.ndarray, front: np.ndarray,
                     catalogue: Catalogue, collection_id: str, prev_id: str | None, next_id: str | None) -> dict:
    from iiif_prezi3 import AnnotationPage

    items = []
    for i in crops:
        k = int(front[i])
        x, y, w, h = (int(v) for v in box[i])
        entry = int(catalogue.entry_of_sprite[k])
        body = [{"type": "TextualBody", "value": f"sprite {k}", "format": "text/plain", "purpose": "classifying"}]
        if entry >= 0 and catalogue.names.get(entry):
            body.insert(0, {"type": "TextualBody", "value": catalogue.names[entry], "format": "text/plain",
                            "purpose": "tagging"})
        items.append({"id": f"{page_id}#crop-{i}", "type": "Annotation", "motivation": ["classifying", "tagging"],
                      "body": body, "target": f"{page.target}{'&' if '#' in page.target else '#'}xywh={x},{y},{w},{h}"})
    doc = {"id": page_id, "type": "AnnotationPage", "label": {"none": [page.label]}, "items": items,
           "partOf": [_reference(collection_id, "AnnotationCollection")]}
    if prev_id:
        doc["prev"] = _reference(prev_id, "AnnotationPage")
    if next_id:
        doc["next"] = _reference(next_id, "AnnotationPage")
    return _validated(doc, AnnotationPage)


def _manifest(pages: list[_Page], page_ids: list[str], manifest_id: str, title: str) -> dict | None:
    """A manifest of the local images (one canvas each, its image painted on it, its annotation page
    referenced), or None."""
    from iiif_prezi3 import Manifest

    canvases = []
    for n, (page, pid) in enumerate((p, pid) for p, pid in zip(pages, page_ids) if p.image):
        size = {"height": page.height, "width": page.width}
        painting = {"id": f"{manifest_id}/canvas/{n}/image", "type": "Annotation", "motivation": "painting",
                    "body": {"id": page.image, "type": "Image", **size, "format": page.mime}, "target": page.target}
        canvases.append({"id": page.target, "type": "Canvas", "label": {"none": [page.label]}, **size,
                         "items": [{"id": f"{manifest_id}/canvas/{n}/page", "type": "AnnotationPage", "items": [painting]}],
                         "annotations": [_reference(pid, "AnnotationPage")]})
    if not canvases:
        return None
    return _validated({"id": manifest_id, "type": "Manifest", "label": {"none": [title]}, "items": canvases}, Manifest)


def write_annotations(folder: Path, ing, front: np.ndarray, catalogue: Catalogue, *, base: str, project_root: Path,
                      title: str, skip: np.ndarray | None = None) -> list[str]:
    """Write `folder` (= exports/annotations, swapped whole). `skip` (N,) bool: crops left out
    (no sprite, or unmatched). → the files written, relative to exports/."""
    base = base if base.endswith("/") else base + "/"
    root = served_root(project_root, Path(str(ing.attrs.get("images_root", "."))))
    pages, of = _pages(ing, base, root)
    box = ing["box"][()]
    front = np.asarray(front)
    keep = front >= 0
    if skip is not None:
        keep &= ~np.asarray(skip, bool)
    by_page: dict[int, list[int]] = {}
    for i in np.flatnonzero(keep).tolist():
        by_page.setdefault(int(of[i]), []).append(i)
    rows = sorted(by_page)
    prefix = _url(base, Path(folder), root) + "/"
    page_ids = [f"{prefix}page_{r:06d}.json" for r in range(len(pages))]
    collection_id = f"{prefix}collection.json"
    written = []
    with atomic_path(Path(folder)) as tmp:
        tmp.mkdir(parents=True)
        for pos, r in enumerate(rows):
            doc = _annotation_page(pages[r], page_ids[r], by_page[r], box, front, catalogue, collection_id,
                                   page_ids[rows[pos - 1]] if pos else None,
                                   page_ids[rows[pos + 1]] if pos + 1 < len(rows) else None)
            (tmp / f"page_{r:06d}.json").write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
            written.append(f"{ANNOTATIONS_DIR}/page_{r:06d}.json")
        from iiif_prezi3 import AnnotationCollection
        collection = {"id": collection_id, "type": "AnnotationCollection", "label": {"none": [f"{title}: sprites"]},
                      "total": int(sum(len(v) for v in by_page.values()))}
        if rows:
            collection["first"] = _reference(page_ids[rows[0]], "AnnotationPage")
            collection["last"] = _reference(page_ids[rows[-1]], "AnnotationPage")
        collection = _validated(collection, AnnotationCollection)
        (tmp / "collection.json").write_text(json.dumps(collection, ensure_ascii=False, indent=1), encoding="utf-8")
        written.append(f"{ANNOTATIONS_DIR}/collection.json")
        manifest = _manifest([pages[r] for r in rows], [page_ids[r] for r in rows], f"{prefix}manifest.json", title)
        if manifest is not None:
            (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
            written.append(f"{ANNOTATIONS_DIR}/manifest.json")
        if Path(folder).exists():
            shutil.rmtree(folder)
    return written
