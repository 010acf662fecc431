"""The report's page views: one page per source page (an image, a PDF page, a IIIF canvas) with
its crops outlined in their sprite's colour, and the pages' index (`pages.html`). Helpers come
from `render`, imported as a module: render imports this one to call it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.report import render
from pipeline.report.thumbs import palette

__all__ = ["write_page_views"]


def write_page_views(env, out: Path, final: Path, d: "render.ReportData", rank: np.ndarray) -> list[str]:
    """pages.html (every page cut into crops) and pages/page_NNNNNN.html (one page, its crops outlined)."""
    p = d.provenance
    if not p.pages:
        return []
    colours = palette(d.K)
    order = np.argsort(p.page_row, kind="stable")
    rows = p.page_row[order]
    starts = np.searchsorted(rows, np.arange(len(p.pages)))
    ends = np.searchsorted(rows, np.arange(len(p.pages)), side="right")
    written, tiles = [], []
    for r, page in enumerate(p.pages):
        ids = order[starts[r]:ends[r]].tolist()
        if not ids:
            continue
        first = ids[0]
        prev_r = next((q for q in range(r - 1, -1, -1) if ends[q] > starts[q]), None)
        next_r = next((q for q in range(r + 1, len(p.pages)) if ends[q] > starts[q]), None)
        w, h = render._fit(page.width, page.height, 900) if max(page.width, page.height) > 900 else (page.width, page.height)
        crops = []
        for i in ids:
            k = int(d.front[i])
            x, y, bw, bh = (int(v) for v in p.box[i])
            crops.append({"id": i, "box": p.outline(i), "colour": colours[k] if k >= 0 else "#888888",
                          "sprite": render.sprite_caption(d, k), "gallery": render.gallery_href(d, rank, i, "../"),
                          "xywh": f"{x}, {y}, {bw}, {bh}", "label": p.label[i], "error": float(d.error[i]),
                          "region": p.iiif_region[i]})
        info = render.source_info(p, first, final / "pages", "../", 0)
        render.write_page(env, out / page.view, "page.html", **render._common(d, "../", "page", True),
                   place=info["place"], source=info["source"], href=info["href"], iiif=info["iiif"],
                   metadata=p.metadata_of(first), image=f"../{page.image}", w=w, h=h, crops=crops,
                   prev_page=None if prev_r is None else f"page_{prev_r:06d}.html",
                   next_page=None if next_r is None else f"page_{next_r:06d}.html",
                   nav_prev=None if prev_r is None else f"page_{prev_r:06d}.html",
                   nav_next=None if next_r is None else f"page_{next_r:06d}.html")
        written.append(page.view)
        tw, th = render._fit(page.width, page.height, 180)
        tiles.append({"href": page.view, "img": page.image, "w": tw, "h": th, "place": info["place"], "count": len(ids)})
    render.write_page(env, out / "pages.html", "pages.html", **render._common(d, "", "pages", False), tiles=tiles,
               crops=int((p.page_row >= 0).sum()))
    return ["pages.html"] + written
