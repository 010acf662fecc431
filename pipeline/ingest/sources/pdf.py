"""PDF files: every page rendered to pixels at `ingest.pdf_dpi`, with pypdfium2.

pypdfium2 wraps PDFium (the PDF engine of Chromium): Apache-2.0 / BSD-3-Clause, wheels for
Linux, macOS and Windows with the binary inside (no system library, no Poppler, no Ghostscript),
maintained and released regularly. Boxes and page sizes of PDF crops are in pixels at the DPI used.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["PdfError", "page_count", "render_page", "page_pixels"]


class PdfError(Exception):
    """The PDF (or one page of it) cannot be read; the message is the reason shown to the user."""


def _pdfium():
    try:
        import pypdfium2
    except ImportError:  # pragma: no cover - a declared dependency
        raise PdfError("reading PDFs needs pypdfium2: pip install pypdfium2") from None
    return pypdfium2


def _open(path: str):
    pdfium = _pdfium()
    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as e:
        msg = str(e)
        # PDFium refuses an empty page tree without setting an error (so the code is 0, or stale
        # from an earlier failure): look at the file for an empty page tree to say so.
        if getattr(e, "err_code", None) == 0 or _empty_page_tree(path):
            raise PdfError("the PDF has no pages") from None
        if "password" in msg.lower():
            raise PdfError("the PDF is encrypted (password protected)") from None
        raise PdfError(f"not a readable PDF ({msg})") from None
    except OSError as e:
        raise PdfError(f"cannot read the file ({e.strerror or e})") from None


def _empty_page_tree(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return False
    return (head.startswith(b"%PDF") and re.search(rb"/Count\s+0\b", head) is not None
            and re.search(rb"/Type\s*/Page(?![s\w])", head) is None)


def page_count(path: str) -> int:
    pdf = _open(path)
    try:
        return len(pdf)
    finally:
        pdf.close()


def page_pixels(width_pt: float, height_pt: float, dpi: int) -> tuple[int, int]:
    """The pixel size of a page of `width_pt` × `height_pt` points (1/72 in) rendered at `dpi`."""
    return max(1, round(width_pt * dpi / 72)), max(1, round(height_pt * dpi / 72))


def render_page(path: str, index: int, dpi: int, channels: int, max_pixels: int) -> np.ndarray:
    """Page `index` (0-based) as (H, W, channels) uint8; PdfError for a bad page or a huge one."""
    pdf = _open(path)
    try:
        if not 0 <= index < len(pdf):
            raise PdfError(f"the PDF has no page {index + 1} (it has {len(pdf)})")
        page = pdf[index]
        try:
            w, h = page_pixels(*page.get_size(), dpi)
            if w * h > max_pixels:
                raise PdfError(f"too large ({w}×{h} px at {dpi} dpi > ingest.max_pixels = {max_pixels}); lower ingest.pdf_dpi")
            bitmap = page.render(scale=dpi / 72, grayscale=channels == 1, rev_byteorder=True,
                                 fill_color=(255, 255, 255, 255))
            arr = bitmap.to_numpy()
        except PdfError:
            raise
        except Exception as e:  # PDFium errors on damaged content streams
            raise PdfError(f"page {index + 1} cannot be rendered ({type(e).__name__}: {e})") from None
        finally:
            page.close()
    finally:
        pdf.close()
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[:2] != (h, w):  # PDFium rounds the bitmap size up; keep the page's nominal size
        arr = arr[:h, :w]
        arr = np.pad(arr, ((0, h - arr.shape[0]), (0, w - arr.shape[1]), (0, 0)), mode="edge")
    if channels == 1:
        return np.ascontiguousarray(arr[..., :1])
    return np.ascontiguousarray(arr[..., :3])
