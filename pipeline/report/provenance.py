"""Where each crop comes from, as the report shows it: a link to the source, a readable place,
its box outlined on a thumbnail of its page, and the scholar's metadata.

Read once from ingest.h5 (strings and small arrays only: about 1 KB per crop). Older ingest.h5
files without page thumbnails or provenance columns still work: what is missing is not shown.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from pipeline.core.store import read_strings

__all__ = ["PageThumb", "Provenance", "read_provenance", "write_page_thumbs", "PAGES_DIR", "CARD_METADATA"]

PAGES_DIR = "img/pages"     # page thumbnails inside the report folder
CARD_METADATA = 4           # metadata columns shown on a crop card (all are on the page view)


@dataclass
class PageThumb:
    row: int                                   # row in ingest.h5 pages/*
    source: str
    extent: tuple[float, float, float, float]  # x0, y0, x1, y1 shown, in source coordinates
    width: int = 0                             # thumbnail px
    height: int = 0

    @property
    def image(self) -> str:
        return f"{PAGES_DIR}/page_{self.row:06d}.jpg"

    @property
    def view(self) -> str:
        return f"pages/page_{self.row:06d}.html"


@dataclass
class Provenance:
    images_root: Path
    source: list[str]
    kind: list[str]
    file: list[str]
    page: np.ndarray                    # (N,) 1-based PDF page or canvas position, 0 for an image
    canvas_label: list[str]
    manifest_label: list[str]
    iiif_region: list[str]
    label: list[str]
    box: np.ndarray                     # (N, 4) x, y, w, h in source coordinates
    page_row: np.ndarray                # (N,) row of the page thumbnail, −1 = none
    pages: list[PageThumb] = field(default_factory=list)
    metadata: dict[str, list[str]] = field(default_factory=dict)

    def target(self, i: int) -> tuple[Path | None, str]:
        """Crop i's source: (local file, URL fragment) — its image or its PDF with '#page=3' — or
        (None, URL) for its IIIF image region."""
        if self.iiif_region[i]:
            return None, self.iiif_region[i]
        if self.kind[i] == "pdf" and self.file[i]:
            return self.images_root / self.file[i], f"#page={int(self.page[i])}"
        return self.images_root / (self.file[i] or self.source[i]), ""

    def place(self, i: int) -> str:
        """'book.pdf, page 3'; 'Manifest label, canvas label'; or the image's path."""
        if self.kind[i] == "iiif":
            parts = [p for p in (self.manifest_label[i], self.canvas_label[i] or f"canvas {int(self.page[i])}") if p]
            return ", ".join(parts) or self.source[i]
        if self.kind[i] == "pdf":
            return f"{self.file[i]}, page {int(self.page[i])}"
        return self.source[i]

    def page_of(self, i: int) -> PageThumb | None:
        r = int(self.page_row[i])
        return self.pages[r] if 0 <= r < len(self.pages) else None

    def outline(self, i: int) -> dict[str, float] | None:
        """Crop i's box on its page thumbnail, in % of the thumbnail (CSS left/top/width/height)."""
        page = self.page_of(i)
        if page is None:
            return None
        x0, y0, x1, y1 = page.extent
        if x1 <= x0 or y1 <= y0:
            return None
        x, y, w, h = (float(v) for v in self.box[i])
        sx, sy = 100.0 / (x1 - x0), 100.0 / (y1 - y0)
        return {"left": round((x - x0) * sx, 3), "top": round((y - y0) * sy, 3),
                "width": round(max(w * sx, 0.4), 3), "height": round(max(h * sy, 0.4), 3)}

    def metadata_of(self, i: int) -> list[tuple[str, str]]:
        """(column, value) of crop i, empty values left out."""
        return [(name, values[i]) for name, values in self.metadata.items() if values[i]]


def _strings(ing: h5py.File, key: str, n: int) -> list[str]:
    return read_strings(ing[key]) if key in ing else [""] * n


def read_provenance(ing: h5py.File) -> Provenance:
    n = int(ing["crops"].shape[0])
    source = read_strings(ing["source"])
    kind = read_strings(ing["kind"]) if "kind" in ing else ["image"] * n
    pages = []
    if "pages/source" in ing:
        pages = [PageThumb(r, s, tuple(float(v) for v in e))
                 for r, (s, e) in enumerate(zip(read_strings(ing["pages/source"]), ing["pages/extent"][()]))]
    metadata = {name: read_strings(ds) for name, ds in ing["metadata"].items()} if "metadata" in ing else {}
    return Provenance(
        images_root=Path(str(ing.attrs.get("images_root", ""))), source=source, kind=kind,
        file=_strings(ing, "file", n), page=ing["page"][()] if "page" in ing else np.zeros(n, np.int32),
        canvas_label=_strings(ing, "canvas_label", n), manifest_label=_strings(ing, "manifest_label", n),
        iiif_region=_strings(ing, "iiif_region", n), label=_strings(ing, "label", n),
        box=ing["box"][()] if "box" in ing else np.zeros((n, 4), np.int32),
        page_row=ing["page_row"][()] if "page_row" in ing else np.full(n, -1, np.int32),
        pages=pages, metadata=metadata)


def write_page_thumbs(ing: h5py.File, report_dir: Path, provenance: Provenance) -> None:
    """Copy every page thumbnail to report_dir/img/pages/ and record its size in `provenance`."""
    if not provenance.pages:
        return
    (report_dir / PAGES_DIR).mkdir(parents=True, exist_ok=True)
    thumbs = ing["pages/thumb"]
    for page in provenance.pages:
        data = thumbs[page.row].tobytes()
        page.width, page.height = Image.open(io.BytesIO(data)).size
        (report_dir / page.image).write_bytes(data)
