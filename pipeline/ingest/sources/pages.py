"""A page (an image file, a PDF page, or a IIIF canvas image) → its square crops with provenance.

`cut_page` runs in worker processes: it reads the page, cuts it (`pipeline.ingest.cropping`), squares
every crop (`pipeline.ingest.images.square_crop`) and maps every box back to source coordinates. It
never raises for bad input: the reason comes back in `PageResult.error` (the whole page) or
`PageResult.problems` (one box).

Coordinate frames of a page, from the pixels that are cut to what is stored in `box`:
fetched px —(× full / fetched)→ image px (full resolution) —(canvas placement)→ source coordinates.
For image files and PDF pages all three are the same (PDF pixels at `ingest.pdf_dpi`); for IIIF
the first scales a reduced download back to the full image, the second places the image on its
canvas (`target` xywh, or the canvas size when it differs from the image's).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.ingest.cropping import components, grid
from pipeline.ingest.images import decode_image, load_crop, square_crop
from pipeline.ingest.sources.boxes import Box
from pipeline.ingest.sources.iiif import region_url

__all__ = ["Page", "CutOptions", "PageCrop", "PageResult", "cut_page", "page_thumbnail", "PAGE_THUMB"]

PAGE_THUMB = 512   # px, longest side of the page thumbnails on which the report outlines crops


@dataclass
class Page:
    source: str                       # the crop's `source`: relative path, 'book.pdf#page=3', or canvas id
    kind: str                         # image | pdf | iiif
    path: str = ""                    # the local file read: the image, the PDF, or the downloaded image
    file: str = ""                    # image or PDF path relative to the images root ('' for IIIF)
    page: int = 0                     # 1-based PDF page or canvas position; 0 for a single image
    checksum: str = ""                # sha1 of the PDF file (pages share it); images are hashed when read
    manifest: str = ""                # IIIF: manifest URL (or file)
    manifest_label: str = ""
    canvas: str = ""                  # IIIF: canvas id
    canvas_label: str = ""
    service: str = ""                 # IIIF: Image API base URL
    service_version: int = 2
    level0: bool = False
    image_id: str = ""                # IIIF: the image resource's id
    url: str = ""                     # IIIF: the URL downloaded
    full_size: tuple[int, int] = (0, 0)     # IIIF: full-resolution image size (0, 0 = as downloaded)
    canvas_size: tuple[int, int] = (0, 0)   # IIIF: canvas size (0, 0 = the image's)
    target: tuple[int, int, int, int] | None = None  # IIIF: the canvas part the image paints
    boxes: tuple[Box, ...] = ()       # crop = boxes: the boxes of this page, in source coordinates


@dataclass(frozen=True)
class CutOptions:
    size: int
    channels: int
    pad: str
    crop: str
    max_pixels: int
    pdf_dpi: int
    binarize: str
    min_size: int
    max_size: int
    max_aspect: float
    merge_distance: int
    margin: int
    tile: int
    overlap: int
    page_thumb: int = 0               # longest side in px of the page thumbnail (0 = none)

    @classmethod
    def from_config(cls, cfg) -> "CutOptions":
        # a page is worth a thumbnail only when crops are cut from it (the report outlines them)
        return cls(cfg.size, cfg.channels, cfg.pad, cfg.crop, cfg.max_pixels, cfg.pdf_dpi, cfg.binarize,
                   cfg.min_size, cfg.max_size, cfg.max_aspect, cfg.merge_distance, cfg.margin,
                   cfg.tile, cfg.overlap, PAGE_THUMB if cfg.crop != "whole" else 0)


@dataclass
class PageCrop:
    crop: np.ndarray                  # (C, S, S) uint8
    box: tuple[int, int, int, int]    # x, y, w, h in source coordinates
    content_box: tuple[int, int, int, int]
    region: str = ""                  # IIIF Image API URL of the crop's region
    label: str = ""


@dataclass
class PageResult:
    crops: list[PageCrop] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)    # the source's width, height (in source coordinates)
    checksum: str = ""
    error: str | None = None          # the whole page failed
    problems: list[str] = field(default_factory=list)   # boxes that could not be cut
    thumb: bytes = b""                # JPEG of the whole page, longest side ≤ CutOptions.page_thumb
    thumb_extent: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1 it shows, in source coordinates


@dataclass(frozen=True)
class _Frame:
    """fetched px → image px (× fx, fy) → source (offset ox, oy; × cx, cy)."""
    fx: float = 1.0
    fy: float = 1.0
    ox: float = 0.0
    oy: float = 0.0
    cx: float = 1.0
    cy: float = 1.0

    def to_source(self, x0, y0, x1, y1):
        return (self.ox + x0 * self.fx * self.cx, self.oy + y0 * self.fy * self.cy,
                self.ox + x1 * self.fx * self.cx, self.oy + y1 * self.fy * self.cy)

    def to_image(self, x0, y0, x1, y1):  # source → image px
        return ((x0 - self.ox) / self.cx, (y0 - self.oy) / self.cy, (x1 - self.ox) / self.cx, (y1 - self.oy) / self.cy)


def _int_box(x0, y0, x1, y1) -> tuple[int, int, int, int]:
    x, y = int(round(x0)), int(round(y0))
    return x, y, max(1, int(round(x1)) - x), max(1, int(round(y1)) - y)


def _read(page: Page, opt: CutOptions) -> tuple[np.ndarray | None, str, str | None]:
    """(array, checksum, error) of the page at full resolution (or as downloaded)."""
    if page.kind == "pdf":
        from pipeline.ingest.sources.pdf import PdfError, render_page
        try:
            return render_page(page.path, page.page - 1, opt.pdf_dpi, opt.channels, opt.max_pixels), page.checksum, None
        except PdfError as e:
            return None, page.checksum, str(e)
    try:
        data = Path(page.path).read_bytes()
    except OSError as e:
        return None, "", f"cannot read the file ({e.strerror or e})"
    checksum = hashlib.sha1(data).hexdigest()
    image = decode_image(data, opt.channels, opt.max_pixels)
    return image.array, checksum, image.error


def _frame(page: Page, shape: tuple[int, int]) -> tuple[_Frame, tuple[int, int], tuple[int, int]]:
    """(frame, source size, full image size) of a page whose pixels have `shape` (H, W)."""
    h, w = shape
    if page.kind != "iiif":
        return _Frame(), (w, h), (w, h)
    W, H = page.full_size if page.full_size[0] and page.full_size[1] else (w, h)
    fx, fy = W / w, H / h
    if page.target is not None:
        tx, ty, tw, th = page.target
        return _Frame(fx, fy, tx, ty, tw / W, th / H), page.canvas_size if page.canvas_size[0] else (tw, th), (W, H)
    CW, CH = page.canvas_size
    if CW and CH:
        return _Frame(fx, fy, 0.0, 0.0, CW / W, CH / H), (CW, CH), (W, H)
    return _Frame(fx, fy), (W, H), (W, H)


def cut_page(page: Page, opt: CutOptions) -> PageResult:
    if page.kind == "image" and opt.crop == "whole":  # the fast path: JPEG draft decoding
        r = load_crop(page.path, opt.size, opt.channels, opt.pad, opt.max_pixels)
        if r.error:
            return PageResult(error=r.error, checksum=r.checksum, size=(r.width, r.height))
        return PageResult([PageCrop(r.crop, (0, 0, r.width, r.height), r.content_box)], (r.width, r.height), r.checksum)
    arr, checksum, error = _read(page, opt)
    if error:
        return PageResult(error=error, checksum=checksum)
    h, w = arr.shape[:2]
    frame, source_size, full = _frame(page, (h, w))
    result = PageResult(size=tuple(int(v) for v in source_size), checksum=checksum)
    cuts: list[tuple[tuple[int, int, int, int], tuple | None, str]] = []  # (px box, source box, label)
    if opt.crop == "whole":
        cuts = [((0, 0, w, h), None, "")]
    elif opt.crop == "grid":
        cuts = [(b, None, "") for b in grid(w, h, opt.tile, opt.overlap)]
    elif opt.crop == "components":
        found = components(arr, binarization=opt.binarize, min_size=opt.min_size, max_size=opt.max_size,
                           max_aspect=opt.max_aspect, merge_distance=opt.merge_distance, margin=opt.margin)
        cuts = [(b, None, "") for b in found]
    elif opt.crop == "boxes":
        SW, SH = source_size
        for b in page.boxes:
            x0, y0, bw, bh = (b.x * SW / 100, b.y * SH / 100, b.w * SW / 100, b.h * SH / 100) if b.unit == "percent" else (b.x, b.y, b.w, b.h)
            sx0, sy0, sx1, sy1 = max(0.0, x0), max(0.0, y0), min(float(SW), x0 + bw), min(float(SH), y0 + bh)
            if sx1 - sx0 < 1 or sy1 - sy0 < 1:
                result.problems.append(f"box {b.x:g},{b.y:g},{b.w:g},{b.h:g} lies outside the page ({SW}×{SH})")
                continue
            ix0, iy0, ix1, iy1 = frame.to_image(sx0, sy0, sx1, sy1)
            px0, py0 = max(0, math.floor(ix0 / frame.fx + 1e-6)), max(0, math.floor(iy0 / frame.fy + 1e-6))
            px1, py1 = min(w, math.ceil(ix1 / frame.fx - 1e-6)), min(h, math.ceil(iy1 / frame.fy - 1e-6))
            if px1 <= px0 or py1 <= py0:
                result.problems.append(f"box {b.x:g},{b.y:g},{b.w:g},{b.h:g} is smaller than a pixel of the fetched image")
                continue
            cuts.append(((px0, py0, px1 - px0, py1 - py0), (sx0, sy0, sx1, sy1), b.label))
    else:  # checked with the config; kept for callers of the library
        raise ValueError(f"unknown crop method {opt.crop!r}")
    for (x, y, bw, bh), source_box, label in cuts:
        crop, content = square_crop(arr[y:y + bh, x:x + bw], opt.size, opt.pad)
        if source_box is None:
            source_box = frame.to_source(x, y, x + bw, y + bh)
        region = ""
        if page.service:
            if opt.crop == "whole":
                region = region_url(page.service, page.service_version, None)
            else:
                ix0, iy0, ix1, iy1 = frame.to_image(*source_box)
                ix0, iy0 = max(0, round(ix0)), max(0, round(iy0))
                ix1, iy1 = min(full[0], round(ix1)), min(full[1], round(iy1))
                region = region_url(page.service, page.service_version, (ix0, iy0, max(1, ix1 - ix0), max(1, iy1 - iy0)))
        result.crops.append(PageCrop(crop, _int_box(*source_box), content, region, label))
    if opt.page_thumb and result.crops:
        result.thumb = page_thumbnail(arr, opt.page_thumb)
        result.thumb_extent = tuple(float(v) for v in frame.to_source(0, 0, w, h))
    return result


def page_thumbnail(arr: np.ndarray, side: int, quality: int = 80) -> bytes:
    """arr (H, W), (H, W, 1) or (H, W, 3) uint8 → JPEG bytes, the longest side at most `side` px."""
    img = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    img.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()
