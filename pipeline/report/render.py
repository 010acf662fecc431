"""HTML rendering of the report: the Jinja2 environment, links, inline SVG charts.

Templates are looked up in a project's own `templates/` (to override any page), then the
installed package data (`pipeline/templates` in the wheel), then the checkout's `templates/`.
Autoescape is on and undefined variables are errors, so a file named
`<script>alert(1)</script>.png` is always shown as text. Links are relative and URL-quoted per
path segment, so the report folder opens from the file system and can be zipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import numpy as np
from tqdm import tqdm

import pipeline
from pipeline.catalogue.catalogue import NO_SPRITE, UNASSIGNED, UNMATCHED, Catalogue
from pipeline.report import page_views, trust_pages
from pipeline.trust.deviation import SIGMA as DEVIATION_SIGMA, heat_tables
from pipeline.trust.uncertain import doubt_scores
from pipeline.report.charts import loss_chart, usage_chart
from pipeline.report.numbers import fmt_duration, fmt_number
from pipeline.report.provenance import CARD_METADATA, Provenance
from pipeline.report.thumbs import BACKGROUND_COLOUR, LAYER_COLOURS, display_size, palette

__all__ = ["template_dirs", "environment", "write_page", "quote_path", "file_href", "fmt_number", "pager",
           "ReportData", "render_report", "gallery_order", "page_name"]


def template_dirs(project_root: Path | None = None) -> list[Path]:
    """Where templates are searched, first match wins."""
    package = Path(pipeline.__file__).resolve().parent
    dirs = [package / "templates", package.parent / "templates"]
    if project_root is not None:
        dirs.insert(0, Path(project_root) / "templates")
    return [d for d in dirs if d.is_dir()]


def quote_path(rel: str) -> str:
    """A relative path (either separator) → a URL path, each segment percent-quoted."""
    return "/".join(quote(part, safe="") for part in rel.replace(os.sep, "/").split("/"))


def file_href(target: Path, page_dir: Path) -> str:
    """A link from a page in `page_dir` to the file `target`: relative when possible (file://)."""
    try:
        return quote_path(os.path.relpath(target, page_dir))
    except ValueError:  # another drive (Windows): an absolute file URI
        return Path(target).resolve().as_uri()


def environment(project_root: Path | None = None) -> jinja2.Environment:
    dirs = template_dirs(project_root)
    if not dirs:
        raise FileNotFoundError("the report templates are missing (pipeline/templates or templates/): reinstall sprites-dh")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(d) for d in dirs]), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt_number
    env.filters["duration"] = fmt_duration
    env.filters["qpath"] = quote_path
    return env


def write_page(env: jinja2.Environment, path: Path, template: str, **context: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(env.get_template(template).render(**context), encoding="utf-8")


def pager(number: int, count: int, href, window: int = 2) -> dict[str, Any]:
    """Pager data for `_macros.pager`: page `number` (1-based) of `count`; `href(n)` names page n."""
    shown = sorted({1, count, *range(max(1, number - window), min(count, number + window) + 1)})
    items, last = [], 0
    for n in shown:
        if n > last + 1:
            items.append({"gap": True})
        items.append({"gap": False, "number": n, "current": n == number, "href": href(n)})
        last = n
    return {"number": number, "count": count, "links": items,
            "prev": href(number - 1) if number > 1 else None, "next": href(number + 1) if number < count else None}


# ---------------------------------------------------------------------------------------- pages
@dataclass
class ReportData:
    """Everything the pages show, small enough to hold for 50,000 crops (no pixels)."""
    project_name: str
    provenance: Provenance          # sources, boxes, page thumbnails, metadata
    front: np.ndarray               # (N,) sprite of the front-most layer, −1 = none
    error: np.ndarray               # (N,)
    margin: np.ndarray              # (N,)
    background: np.ndarray          # (N,) chosen background prototype
    size: int                       # crop side S
    sprite_size: int
    K: int
    L: int
    M: int
    transparent: bool
    per_page: int
    steps: list[float]
    losses: list[float]
    facts: list[tuple[str, str]]
    lede: str
    config_text: str
    created: str
    version: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sample: list[dict] = field(default_factory=list)   # {"id", "sprites": [k per layer]}
    exports: list[dict] = field(default_factory=list)  # {"path" (under exports/), "description"}
    reseeds: list[dict] = field(default_factory=list)  # {"epoch", "sprite", "source", "reason"} in order
    restarts: list[dict] = field(default_factory=list)  # train.fill_budget = restarts: every run (runs.Restart)
    snapshots: list[dict] = field(default_factory=list)  # the prototypes as they formed: {"epoch", "sprites", "backgrounds"}
    deviation: np.ndarray | None = None                # (N,) deviation score (pipeline.trust.deviation)
    deviation_coarse: np.ndarray | None = None         # (N, GRID²) where each crop deviates, coarse
    doubt: np.ndarray | None = None                    # (N,) the uncertain queue's score
    runner_up: np.ndarray | None = None                # (N,) the front layer's runner-up sprite (−1 none)
    families: list[list[int]] = field(default_factory=list)   # sprite families (pipeline.trust.families)
    family_threshold: float = 0.0
    agreement: np.ndarray | None = None                # (N,) across seed runs (pipeline.trust.stability), or None
    stability: np.ndarray | None = None                # (K,) per sprite
    seed_runs: int = 1
    catalogue: Catalogue | None = None                 # the curation applied (names, merges, drops)
    unmatched: np.ndarray | None = None                # (N,) bool: `sprites match` found no sprite that fits

    group: np.ndarray = field(init=False)              # (N,) gallery: catalogue entry, NO_SPRITE, UNASSIGNED, UNMATCHED

    def __post_init__(self):
        if self.catalogue is None:
            self.catalogue = Catalogue("", np.arange(self.K, dtype=np.int64))
        n = len(self.front)
        if self.deviation is None:
            self.deviation = np.zeros(n, np.float32)
        if self.deviation_coarse is None:
            self.deviation_coarse = np.zeros((n, 1), np.float32)
        if self.doubt is None:
            self.doubt = doubt_scores(self.margin, self.error)
        if self.runner_up is None:
            self.runner_up = np.full(n, -1, np.int64)
        self.group = self.catalogue.groups(self.front, self.unmatched)

    def label(self, g: int) -> str:
        return _SPECIAL_LABELS[g] if g < 0 else self.catalogue.label(g)


_SPECIAL_LABELS = {NO_SPRITE: "No sprite", UNASSIGNED: "Unassigned", UNMATCHED: "Unmatched"}
_SPECIAL_PAGES = {NO_SPRITE: "empty", UNASSIGNED: "unassigned", UNMATCHED: "unmatched"}


def gallery_order(group: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Crop ids grouped by gallery (the special groups first), by error ascending within a group, then id."""
    return np.lexsort((np.arange(len(group)), error, group))


def page_name(group: int, number: int) -> str:
    stem = _SPECIAL_PAGES[group] if group < 0 else f"sprite_{group:03d}"
    return f"{stem}.html" if number <= 1 else f"{stem}_p{number}.html"


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "0%"


def _galleries(env, out: Path, final: Path, d: ReportData, order: np.ndarray, progress: bool) -> list[str]:
    n = len(d.front)
    cat = d.catalogue
    groups = d.group[order]
    members = {int(g): order[a:b] for g, a, b in _runs(groups)}
    shown = cat.entries() + [g for g in (UNMATCHED, UNASSIGNED, NO_SPRITE) if g in members]
    colours = palette(d.K)
    thumb = display_size(d.size, 96)
    big = display_size(d.sprite_size, 128)
    page_dir = final / "sprites"
    pages = []
    total_pages = sum(max(1, -(-len(members.get(g, ())) // d.per_page)) for g in shown)
    bar = tqdm(total=total_pages, desc="report pages", unit="page", disable=not progress, mininterval=0.5)
    for pos, g in enumerate(shown):
        ids = members.get(g, np.zeros(0, np.int64))
        count = max(1, -(-len(ids) // d.per_page))
        prev_g, next_g = (shown[pos - 1] if pos > 0 else None), (shown[pos + 1] if pos + 1 < len(shown) else None)
        med = float(np.median(d.error[ids])) if len(ids) else float("nan")
        head = [] if g < 0 else [{"k": k, "img": f"../img/sprites/sprite_{k:03d}.png", "size": big, "colour": colours[k]}
                                 for k in cat.members(g)]
        curate = None if g < 0 else {"k": g, "name": cat.names.get(g, ""), "note": cat.notes.get(g, ""),
                                     "merged": [k for k in cat.members(g) if k != g], "model": cat.model}
        for number in range(1, count + 1):
            chunk = ids[(number - 1) * d.per_page: number * d.per_page]
            cards = [{"id": int(i), **source_info(d.provenance, int(i), page_dir, "../", thumb),
                      "crop": f"../img/crops/{_crop(i, n)}", "recon": f"../img/recon/{_crop(i, n)}",
                      "aligned": f"../img/aligned/{_crop(i, n)}", "sprite": int(d.front[i]),
                      "dev": float(d.deviation[i]),
                      "error": float(d.error[i]), "margin": float(d.margin[i])} for i in chunk]
            p = pager(number, count, lambda m: page_name(g, m))
            summary = (f"{len(ids):,} crop{'' if len(ids) == 1 else 's'} ({_share(len(ids), n)} of {n:,})"
                       + (f" · median error {fmt_number(med, 3)}" if len(ids) else "")
                       + (f" · {cat.notes[g]}" if g in cat.notes else ""))
            write_page(env, out / "sprites" / page_name(g, number), "sprite.html", **_common(d, "../", "sprite", True),
                       heading=d.label(g), summary=summary, cards=cards, thumb=thumb,
                       card_width=(4 if d.provenance.pages else 3) * thumb + 30,
                       pager=p, sprites=head, curate=curate, special=_SPECIAL_NOTES.get(g, ""),
                       variants=trust_pages.variants_name(g) if g >= 0 and len(ids) else None,
                       prev_sprite=None if prev_g is None else {"href": page_name(prev_g, 1), "label": d.label(prev_g)},
                       next_sprite=None if next_g is None else {"href": page_name(next_g, 1), "label": d.label(next_g)},
                       nav_prev=p["prev"] or (page_name(prev_g, 1) if prev_g is not None else "../index.html"),
                       nav_next=p["next"] or (page_name(next_g, 1) if next_g is not None else None))
            pages.append(f"sprites/{page_name(g, number)}")
            bar.update()
        if g >= 0 and len(ids):
            pages.append(trust_pages.write_variants(env, out, d, g, ids, page_dir, thumb))
    bar.close()
    return pages


_SPECIAL_NOTES = {
    NO_SPRITE: "Every layer of these crops is empty.",
    UNASSIGNED: "Crops explained by the sprites your curation drops (curation.toml).",
    UNMATCHED: "No sprite of the bank explains these crops as well as it explains its own collection.",
}


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _runs(sorted_values: np.ndarray):
    """(value, start, end) of each run of equal values in a sorted array."""
    if not len(sorted_values):
        return []
    cuts = np.flatnonzero(np.diff(sorted_values)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(sorted_values)]
    return [(sorted_values[a], a, b) for a, b in zip(starts, ends)]


def _crop(i: int, n: int) -> str:
    return f"{int(i):0{max(6, len(str(max(n - 1, 0))))}d}.png"


def _common(d: ReportData, root: str, page: str, keys: bool) -> dict[str, Any]:
    return {"project_name": d.project_name, "version": d.version, "created": d.created, "root": root,
            "page": page, "keys": keys, "has_pages": bool(d.provenance.pages),
            "deviation_blur": DEVIATION_SIGMA / max(1, d.size), "deviation_tables": heat_tables()}


def gallery_href(d: ReportData, rank: np.ndarray, i: int, root: str = "") -> str:
    """Crop i's card in its sprite gallery, from a page at depth `root` ('' or '../')."""
    return f"{root}sprites/{page_name(int(d.group[i]), int(rank[i]) // d.per_page + 1)}#c{i}"


def sprite_page(d: ReportData, k: int) -> str:
    """The gallery page that shows sprite k: its entry's, or the unassigned crops' when it is dropped."""
    entry = int(d.catalogue.entry_of_sprite[k])
    return page_name(entry if entry >= 0 else UNASSIGNED, 1)


def sprite_caption(d: ReportData, k: int) -> str:
    """'sprite 3', 'sprite 3 · long s' (the name of its entry)."""
    entry = int(d.catalogue.entry_of_sprite[k]) if k >= 0 else -1
    name = d.catalogue.names.get(entry, "") if entry >= 0 else ""
    return ("no sprite" if k < 0 else f"sprite {k}") + (f" · {name}" if name else "")


def _fit(width: int, height: int, side: int) -> tuple[int, int]:
    scale = side / max(width, height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))


def source_info(p: Provenance, i: int, page_dir: Path, root: str, side: int) -> dict[str, Any]:
    """What a card shows of crop i's origin: source, readable place, link (IIIF region, PDF page or
    file), metadata, and its page thumbnail (fitted in side × side px) with the crop outlined."""
    path, extra = p.target(i)
    meta = p.metadata_of(i)
    info = {"source": p.source[i], "place": p.place(i), "href": extra if path is None else file_href(path, page_dir) + extra,
            "iiif": path is None, "meta": meta[:CARD_METADATA], "meta_more": len(meta) - CARD_METADATA, "page": None}
    page, outline = p.page_of(i), p.outline(i)
    if page is not None and outline is not None and page.width:
        w, h = _fit(page.width, page.height, side)
        info["page"] = {"img": root + page.image, "view": f"{root}{page.view}#c{i}", "w": w, "h": h, "box": outline}
    return info


def _index(env, out: Path, final: Path, d: ReportData) -> None:
    n = len(d.front)
    counts = np.bincount(d.front[d.front >= 0].astype(np.int64), minlength=d.K)[:d.K].tolist()
    colours = palette(d.K)
    big = display_size(d.sprite_size, 128)
    cat = d.catalogue
    entry = cat.entry_of_sprite
    sprites = [{"k": k, "img": f"img/sprites/sprite_{k:03d}.png", "size": big, "colour": colours[k],
                "count": counts[k], "share": _share(counts[k], n), "href": f"sprites/{sprite_page(d, k)}",
                "name": cat.names.get(int(entry[k]), "") if entry[k] >= 0 else "",
                "status": "dropped" if entry[k] < 0 else (f"merged into {int(entry[k])}" if entry[k] != k else ""),
                "stability": None if d.stability is None or d.stability[k] != d.stability[k] else float(d.stability[k])}
               for k in range(d.K)]
    special = [{"label": d.label(g), "count": int((d.group == g).sum()), "href": f"sprites/{page_name(g, 1)}"}
               for g in (UNMATCHED, UNASSIGNED) if (d.group == g).any()]
    bcounts = np.bincount(d.background.astype(np.int64).clip(0), minlength=d.M)[:d.M].tolist() if d.M else []
    backgrounds = [{"m": m, "img": f"img/sprites/background_{m}.png", "size": display_size(d.size, 128),
                    "count": bcounts[m]} for m in range(d.M)]
    empty = int((d.front < 0).sum())
    exports = [{"name": e["path"], "href": file_href(final.parent / "exports" / e["path"], final),
                "description": e["description"]} for e in d.exports]
    write_page(env, out / "index.html", "index.html", **_common(d, "", "index", False),
               lede=d.lede, sprites=sprites, backgrounds=backgrounds,
               empty={"count": empty, "href": f"sprites/{page_name(NO_SPRITE, 1)}"} if empty else None,
               families=[{"sprites": [sprites[k] for k in g]} for g in d.families if len(g) > 1],
               family_threshold=d.family_threshold, family_count=len(d.families),
               special=special, curation={"source": cat.source, "warning": cat.warning, "notice": cat.notice, "model": cat.model,
                                          "entries": len(cat.entries())},
               loss=loss_chart(d.steps, d.losses),
               usage=usage_chart(counts, colours, [s["href"] for s in sprites]),
               facts=[{"label": a, "value": b} for a, b in d.facts], config_text=d.config_text,
               reseeds=[{**r, "href": f"sprites/{sprite_page(d, r['sprite'])}",
                         "source_href": f"sprites/{sprite_page(d, r['source'])}"} for r in d.reseeds],
               restarts=d.restarts, snapshots=d.snapshots, snap_size=display_size(d.sprite_size, 40),
               skipped=[{"source": s, "reason": r} for s, r in d.skipped], exports=exports)


def _cell(img: str, alt: str, caption: str, colour: str | None = None, checker: bool = False) -> dict:
    return {"img": img, "alt": alt, "caption": caption, "colour": colour, "checker": checker}


def _reconstructions(env, out: Path, final: Path, d: ReportData, rank: np.ndarray) -> None:
    n = len(d.front)
    colours = palette(d.K)
    n_cells = 2 + 2 * d.transparent + (d.M > 0) + (d.L if d.transparent else 1)
    size = display_size(d.size, 96)
    while size > d.size and n_cells * (size + 6) + 18 > 1290:   # one row per crop when it fits
        size -= d.size
    rows = []
    for s in d.sample:
        i = s["id"]
        name, stem = _crop(i, n), f"img/sample/{_crop(i, n)[:-4]}"
        cells = [_cell(f"img/crops/{name}", f"crop {i}", "input"),
                 _cell(f"img/recon/{name}", f"reconstruction of crop {i}", "reconstruction")]
        if d.transparent:
            cells += [_cell(f"{stem}_semantic.png", f"semantic mask of crop {i}", "semantic mask"),
                      _cell(f"{stem}_instance.png", f"instance mask of crop {i}", "instance mask")]
        if d.M:
            cells.append(_cell(f"{stem}_background.png", f"background of crop {i}", f"background {int(d.background[i])}"))
        for l, k in enumerate(s["sprites"]):
            what = f"sprite {k}" if k >= 0 else "empty"
            caption = f"layer {l + 1} · {what}" if d.L > 1 else what
            cells.append(_cell(f"{stem}_layer{l}.png", f"layer {l + 1} of crop {i}: {what}", caption,
                               colours[k] if k >= 0 else None, True))
        group = int(d.group[i])
        gallery = gallery_href(d, rank, i)
        rows.append({"id": i, **source_info(d.provenance, i, final, "", size),
                     "error": float(d.error[i]), "gallery": gallery, "cells": cells,
                     "group": _lower_first(d.label(group))})
    write_page(env, out / "reconstructions.html", "reconstructions.html", **_common(d, "", "reconstructions", False),
               rows=rows, size=size, masks=d.transparent, card_width=min(n_cells * (size + 6) + 18, 1290),
               legend_sprites=[{"k": k, "colour": c} for k, c in enumerate(colours)],
               legend_layers=[{"label": "background", "colour": BACKGROUND_COLOUR}]
               + [{"label": f"layer {l + 1}", "colour": LAYER_COLOURS[l % len(LAYER_COLOURS)]} for l in range(d.L)])


def render_report(env, out: Path, final: Path, d: ReportData, progress: bool = False) -> list[str]:
    """Write every page into `out`; links to source images are computed from `final` (where
    the folder will live). Returns the pages written, relative to the report folder."""
    order = gallery_order(d.group, d.error)
    rank = np.empty(len(order), dtype=np.int64)
    starts = np.searchsorted(d.group[order], d.group[order], side="left")
    rank[order] = np.arange(len(order)) - starts
    pages = _galleries(env, out, final, d, order, progress)
    _index(env, out, final, d)
    _reconstructions(env, out, final, d, rank)
    trust_pages.write_uncertain(env, out, final, d, rank)
    return ["index.html", "reconstructions.html", "uncertain.html"] + pages + page_views.write_page_views(env, out, final, d, rank)
