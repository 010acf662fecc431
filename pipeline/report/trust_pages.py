"""The report's pages about trust: each entry's variants (its crops that deviate most from it,
grouped by where) and the uncertain queue (`pipeline.trust`). Helpers come from `render`, imported
as a module: render imports this one to call it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.report import render
from pipeline.report.numbers import fmt_number
from pipeline.report.thumbs import display_size
from pipeline.trust.deviation import variant_groups
from pipeline.trust.uncertain import QUEUE

__all__ = ["variants_name", "write_variants", "write_uncertain", "VARIANTS_SHOWN"]


def variants_name(g: int) -> str:
    return f"sprite_{g:03d}_variants.html"


VARIANTS_SHOWN = 200   # most deviating crops of an entry grouped on its variants page


def write_variants(env, out: Path, d: "render.ReportData", g: int, ids: np.ndarray, page_dir: Path, thumb: int) -> str:
    """sprites/sprite_KKK_variants.html: the entry's crops that deviate more than usual, grouped."""
    n = len(d.front)
    scores = d.deviation[ids]
    med = float(np.median(scores))
    mad = float(np.median(np.abs(scores - med)))
    strong = ids[scores > med + 3 * 1.4826 * mad]
    strong = strong[np.argsort(-d.deviation[strong], kind="stable")][:VARIANTS_SHOWN]
    groups = []
    for rows in variant_groups(d.deviation_coarse[strong], d.deviation[strong]) if len(strong) else []:
        members = strong[rows]
        cards = [{"id": int(i), **render.source_info(d.provenance, int(i), page_dir, "../", thumb),
                  "crop": f"../img/crops/{render._crop(i, n)}", "recon": f"../img/recon/{render._crop(i, n)}",
                  "aligned": f"../img/aligned/{render._crop(i, n)}",
                  "sprite": int(d.front[i]), "dev": float(d.deviation[i]), "error": float(d.error[i]),
                  "margin": float(d.margin[i])} for i in members]
        places = sorted({d.provenance.place(int(i)) for i in members})
        groups.append({"cards": cards, "places": ", ".join(places[:4]) + (f" and {len(places) - 4} more" if len(places) > 4 else "")})
    summary = (f"{len(strong):,} of {len(ids):,} crops deviate more than usual from the sprite "
               f"(deviation above {fmt_number(med + 3 * 1.4826 * mad, 2)}; median {fmt_number(med, 2)}), in {len(groups)} group"
               f"{'' if len(groups) == 1 else 's'}")
    render.write_page(env, out / "sprites" / variants_name(g), "variants.html", **render._common(d, "../", "sprite", False),
               heading=d.label(g), summary=summary, groups=groups, thumb=thumb,
               card_width=4 * thumb + 34, gallery=render.page_name(g, 1))
    return f"sprites/{variants_name(g)}"


def write_uncertain(env, out: Path, final: Path, d: "render.ReportData", rank: np.ndarray) -> None:
    """uncertain.html: the QUEUE most doubtful crops, with the chosen and the runner-up sprite."""
    n = len(d.front)
    size = display_size(d.size, 64)
    ids = np.argsort(-d.doubt, kind="stable")[:QUEUE]

    def sprite(k: int) -> dict | None:
        if k < 0:
            return None
        return {"img": f"img/sprites/sprite_{k:03d}.png", "label": render.sprite_caption(d, k), "href": f"sprites/{render.sprite_page(d, k)}"}

    rows = [{"id": int(i), **render.source_info(d.provenance, int(i), final, "", size),
             "crop": f"img/crops/{render._crop(i, n)}", "recon": f"img/recon/{render._crop(i, n)}",
             "chosen": sprite(int(d.front[i])), "runner": sprite(int(d.runner_up[i])),
             "doubt": float(d.doubt[i]), "margin": float(d.margin[i]), "error": float(d.error[i]),
             "gallery": render.gallery_href(d, rank, int(i))} for i in ids]
    for row, i in zip(rows, ids):
        row["agreement"] = None if d.agreement is None else float(d.agreement[i])
    render.write_page(env, out / "uncertain.html", "uncertain.html", **render._common(d, "", "uncertain", False), rows=rows, size=size,
               seed_runs=d.seed_runs if d.agreement is not None else 0)
