"""The ingest stage's work: images, PDFs and IIIF manifests → square crops with provenance, in
cache/ingest.h5. No torch here: the page-cutting workers are forked from this process.

Datasets (first axis = crop id, never reordered):
* `crops` (N, C, S, S) uint8;
* `source` (N,) the page: an image's path relative to the images root (attribute `images_root`),
  `book.pdf#page=3` for a PDF page (1-based), the canvas id (a URL) for a IIIF canvas;
* `box` (N, 4) x, y, w, h of the crop in source coordinates: image pixels; PDF pixels at
  `ingest.pdf_dpi`; full-resolution canvas coordinates for IIIF (scaled back from the fetched size);
* `size` (N, 2) the source's width, height in the same coordinates; `content_box` (N, 4) where the
  cut lies inside the padded crop; `checksum` (N,) sha1 of the image file, the PDF, or the
  downloaded IIIF image; `rotation` (N,) float32 degrees (0: crops are upright boxes);
* `kind` (N,) image | pdf | iiif; `file` (N,) the local image or PDF relative to the images root
  ('' for IIIF); `page` (N,) int32 1-based PDF page or canvas position in its manifest (0 for a
  single image); `canvas`, `canvas_label`, `manifest`, `manifest_label` (N,) ('' when not IIIF);
  `iiif_region` (N,) the Image API URL of the crop's region at full resolution ('' when not IIIF);
  `label` (N,) the box's label (crop = boxes);
* `page_row` (N,) int32 the row of the crop's page in `pages/*` (−1: no thumbnail); `pages/thumb`
  (P,) JPEG bytes of each page cut into crops (ingest.crop ≠ whole; longest side 512 px),
  `pages/source` (P,), `pages/extent` (P, 4) x0, y0, x1, y1 the thumbnail shows in source
  coordinates (so `box` can be outlined on it), `pages/size` (P, 2);
* `metadata/<column>` (N,) strings from `ingest.metadata` (and IIIF manifest metadata);
  `metadata_unmatched/rows`, `metadata_unmatched/sources`;
* `skipped/source`, `skipped/reason`: what could not be read, and why;
  `files/source`, `files/bytes`: the local files listed; `manifests/{source,label,canvases,error}`;
  `boxes_unmatched`: box sources that match no page.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, ContextManager

import h5py
import numpy as np
from tqdm import tqdm

from pipeline.errors import SpritesError
from pipeline.core.fingerprint import stable_hash
from pipeline.ingest.metadata import join_metadata, manifest_columns, read_metadata
from pipeline.ingest.sources import (CutOptions, Fetcher, check_options, cut_page, download_pages, local_inputs,
                              plan_pages)
from pipeline.ingest.sources.collect import project_path
from pipeline.core.store import read_strings, string_dataset


@dataclass
class _Run:
    project: object
    log: Callable[[str], None]
    progress: bool

_BATCH = 256
_PER_CROP_STRINGS = ("source", "checksum", "kind", "file", "canvas", "canvas_label", "manifest",
                     "manifest_label", "iiif_region", "label")


def _side_files(project, cfg) -> list:
    """(key, size, mtime) of the boxes and metadata files: they are inputs too."""
    out = []
    for key in ("boxes", "metadata"):
        value = getattr(cfg.ingest, key)
        if value:
            st = os.stat(project_path(value, project.root))
            out.append((key, value, st.st_size, st.st_mtime_ns))
    return out


_LISTED: dict = {}   # the listing behind the last fingerprint, reused by the run that follows it


def _listing_key(project, cfg) -> str:
    return stable_hash([str(project.root), cfg.ingest.images, cfg.ingest.sources])


def inputs(project, cfg) -> dict:
    """A cheap digest of the collection, with no network access: (path, size, mtime) of every
    image, PDF, boxes and metadata file; a manifest URL as itself (it is fetched once and cached);
    a local manifest file by its content hash. The listing is kept for the run that follows, so
    the files are listed once and the run cuts exactly the files its fingerprint saw."""
    check_options(cfg.ingest, project.root)
    local = local_inputs(project.root, cfg.ingest)
    _LISTED.clear()
    _LISTED[_listing_key(project, cfg)] = local
    return {"count": len(local.files) + len(local.manifests),
            "digest": stable_hash(local.keys() + _side_files(project, cfg))}


def explain_inputs(project, cfg, old: dict, new: dict) -> str:
    """Why the images count as changed, for `sprites status`."""
    try:
        with h5py.File(project.stage_path("ingest"), "r") as f:
            before = set(read_strings(f["files/source"]))
            manifests = set(read_strings(f["manifests/source"])) if "manifests/source" in f else set()
    except (OSError, KeyError):
        return f"images changed ({old.get('count')} → {new.get('count')} files)"
    local = local_inputs(project.root, cfg.ingest)
    now = {rel for rel, _ in local.files}
    added, removed = len(now - before), len(before - now)
    modified = "" if added or removed else ", files modified"
    text = f"images changed ({added} added, {removed} removed{modified})"
    now_manifests = {key for key, _ in local.manifests}
    if now_manifests != manifests and (now_manifests or manifests):
        text += f"; manifests changed ({len(now_manifests - manifests)} added, {len(manifests - now_manifests)} removed)"
    return text


def _workers(n: int, heavy: bool) -> int:
    if n < (8 if heavy else 200):
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, 8, n))


def ingest(project, config, open_output: Callable[[], ContextManager[h5py.File]],
           log: Callable[[str], None] = print, progress: bool = True) -> None:
    """Cut the collection of `project` into crops; `open_output()` gives the HDF5 file to write
    (the stage's atomic ingest.h5)."""
    ctx = _Run(project, log, progress)
    cfg, root = config.ingest, project.root
    check_options(cfg, root)
    fetcher = Fetcher(project.cache_dir / "downloads", cfg.iiif_delay, cfg.iiif_retries, cfg.iiif_timeout, log=ctx.log)
    listed = _LISTED.pop(_listing_key(project, config), None)
    plan = plan_pages(root, cfg, fetcher, ctx.log, ctx.progress, inputs=listed)
    for note in plan.notes:
        ctx.log(f"ingest: {note}")
    if plan.unused_boxes:
        ctx.log(f"ingest: {len(plan.unused_boxes)} box sources match no page, e.g. {plan.unused_boxes[0]}")
    pages, failures = download_pages(plan.pages, fetcher, cfg.iiif_size, cfg.max_pixels, ctx.progress)
    skipped = list(plan.skipped) + failures
    pages = [p for p in pages if p is not None]
    only_images = all(p.kind == "image" for p in plan.pages) and not plan.manifests
    noun = "images" if only_images else "pages"
    if not plan.pages and not failures and len(skipped) == len(plan.inputs.ignored):
        raise SpritesError(f"no images found in {plan.root} (looked for .jpg .png .tif .bmp .webp .pdf and IIIF manifests); "
                           "check ingest.images / ingest.sources in sprites.toml")
    n, size, c = len(plan.pages), cfg.size, cfg.channels
    heavy = cfg.crop != "whole" or not only_images
    work = partial(cut_page, opt=CutOptions.from_config(cfg))
    per: dict[str, list] = {k: [] for k in _PER_CROP_STRINGS}
    boxes, sizes, contents, numbers = [], [], [], []
    page_of_crop: list[int] = []                      # row in pages/* of each crop's page thumbnail, −1 = none
    page_rows: dict[str, list] = {"source": [], "extent": [], "size": []}
    manifest_meta = {m.key: m.metadata for m in plan.manifests}
    with open_output() as f:
        chunk = max(1, min(_BATCH, (4 << 20) // (c * size * size)))
        crops = f.create_dataset("crops", shape=(0, c, size, size), maxshape=(None, c, size, size),
                                 dtype=np.uint8, chunks=(chunk, c, size, size))
        buffer: list = []
        thumbs = f.create_dataset("pages/thumb", shape=(0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.uint8), chunks=(64,))

        def add_thumb(page, result) -> int:
            if not result.thumb:
                return -1
            thumbs.resize(len(page_rows["source"]) + 1, axis=0)
            thumbs[-1] = np.frombuffer(result.thumb, dtype=np.uint8)
            page_rows["source"].append(page.source)
            page_rows["extent"].append(result.thumb_extent)
            page_rows["size"].append(result.size)
            return len(page_rows["source"]) - 1

        def flush():
            if buffer:
                m = crops.shape[0]
                crops.resize(m + len(buffer), axis=0)
                crops[m:] = np.stack(buffer)
                buffer.clear()

        workers = _workers(len(pages), heavy)
        pool = multiprocessing.get_context("fork").Pool(workers) if workers else None
        try:
            chunksize = 32 if not heavy else 1
            results = pool.imap(work, pages, chunksize=chunksize) if pool else map(work, pages)
            for page, result in tqdm(zip(pages, results), total=len(pages), desc="ingest",
                                     unit="img" if only_images else "page", disable=not ctx.progress or not pages, mininterval=0.5):
                if result.error:
                    skipped.append((page.source, result.error))
                    if page.kind == "iiif":  # an unusable download is not kept: a rerun fetches it again
                        Path(page.path).unlink(missing_ok=True)
                    continue
                skipped += [(page.source, problem) for problem in result.problems]
                row = add_thumb(page, result)
                for crop in result.crops:
                    buffer.append(crop.crop)
                    for key, value in (("source", page.source), ("checksum", result.checksum), ("kind", page.kind),
                                       ("file", page.file), ("canvas", page.canvas), ("canvas_label", page.canvas_label),
                                       ("manifest", page.manifest), ("manifest_label", page.manifest_label),
                                       ("iiif_region", crop.region), ("label", crop.label)):
                        per[key].append(value)
                    boxes.append(crop.box)
                    sizes.append(result.size)
                    contents.append(crop.content_box)
                    numbers.append(page.page)
                    page_of_crop.append(row)
                if len(buffer) >= _BATCH:
                    flush()
            flush()
        finally:
            if pool:
                pool.terminate()
        kept = crops.shape[0]
        if kept == 0:
            if not skipped:
                raise SpritesError(f"no crops were cut from the {n} {noun} of {plan.root}: with ingest.crop = {cfg.crop!r}, "
                                   "check its settings (min_size, max_size, boxes)")
            what = f"none of the {n} {noun} in {plan.root} could be read" if n else "none of the sources could be read"
            raise SpritesError(f"{what} (first problem: {skipped[0][0]}: {skipped[0][1]})")
        for key in _PER_CROP_STRINGS:
            string_dataset(f, key, per[key], chunks=True)
        f.create_dataset("box", data=np.array(boxes, dtype=np.int32).reshape(-1, 4), chunks=True)
        f.create_dataset("size", data=np.array(sizes, dtype=np.int32).reshape(-1, 2), chunks=True)
        f.create_dataset("content_box", data=np.array(contents, dtype=np.int32).reshape(-1, 4), chunks=True)
        f.create_dataset("page", data=np.array(numbers, dtype=np.int32), chunks=True)
        f.create_dataset("rotation", data=np.zeros(kept, dtype=np.float32), chunks=True)
        f.create_dataset("page_row", data=np.array(page_of_crop, dtype=np.int32), chunks=True)
        string_dataset(f, "pages/source", page_rows["source"])
        f.create_dataset("pages/extent", data=np.array(page_rows["extent"], dtype=np.float64).reshape(-1, 4))
        f.create_dataset("pages/size", data=np.array(page_rows["size"], dtype=np.int64).reshape(-1, 2))
        _write_metadata(ctx, f, cfg, per, manifest_meta)
        string_dataset(f, "skipped/source", [s for s, _ in skipped])
        string_dataset(f, "skipped/reason", [r for _, r in skipped])
        keys = plan.inputs.files
        string_dataset(f, "files/source", [rel for rel, _ in keys])
        f.create_dataset("files/bytes", data=np.array([os.stat(p).st_size for _, p in keys], dtype=np.int64))
        string_dataset(f, "manifests/source", [m.key for m in plan.manifests])
        string_dataset(f, "manifests/label", [m.label for m in plan.manifests])
        string_dataset(f, "manifests/error", [m.error for m in plan.manifests])
        f.create_dataset("manifests/canvases", data=np.array([m.canvases for m in plan.manifests], dtype=np.int32))
        string_dataset(f, "boxes_unmatched", plan.unused_boxes)
        f.attrs["images_root"] = str(plan.root)
        f.attrs["count"] = kept
        f.attrs["downloads"] = fetcher.requests
    ctx.log(f"ingest: {kept} crops of {size}×{size} px from {n} {noun}"
            + (f"; {len(skipped)} {'files' if only_images else 'sources'} skipped:" if skipped else ""))
    for rel, reason in skipped[:20]:
        ctx.log(f"  skipped {rel}: {reason}")
    if len(skipped) > 20:
        ctx.log(f"  … and {len(skipped) - 20} more (listed in the report)")
    if plan.manifests:
        ctx.log(f"ingest: IIIF: {fetcher.requests} requests, {fetcher.cache_hits} answers from cache/downloads")


def _write_metadata(ctx, f, cfg, per: dict[str, list], manifest_meta: dict) -> None:
    """metadata/<column> from the CSV (joined) and from IIIF manifests; unmatched rows and sources."""
    n = len(per["source"])
    columns: dict[str, list[str]] = {}
    taken: set[str] = set()
    if cfg.metadata:
        meta = read_metadata(project_path(cfg.metadata, ctx.project.root))
        joined = join_metadata(meta, list(zip(per["source"], per["canvas"], per["file"], per["manifest"])))
        columns.update(joined.columns)
        taken.update(joined.columns)
        string_dataset(f, "metadata_unmatched/rows", joined.unmatched_rows)
        string_dataset(f, "metadata_unmatched/sources", joined.unmatched_sources)
        f.attrs["metadata_key"] = meta.key
        ctx.log(f"ingest: metadata: {joined.matched} of {n} crops matched a row of {meta.path.name}")
        if joined.unmatched_rows:
            ctx.log(f"  {len(joined.unmatched_rows)} rows match no crop, e.g. {', '.join(joined.unmatched_rows[:3])}")
        if joined.unmatched_sources:
            ctx.log(f"  {len(joined.unmatched_sources)} sources have no row, e.g. {', '.join(joined.unmatched_sources[:3])}")
        if meta.duplicates:
            ctx.log(f"  {len(meta.duplicates)} keys appear twice (first row kept), e.g. {meta.duplicates[0]}")
        if joined.ambiguous_ids:
            ctx.log(f"  ids naming several files were not used (give the path instead), e.g. {joined.ambiguous_ids[0]}")
    columns.update(manifest_columns(manifest_meta, per["manifest"], taken))
    if columns:  # the spreadsheet's column order, not h5py's alphabetical one
        f.create_group("metadata", track_order=True)
    for name, values in columns.items():
        string_dataset(f, f"metadata/{name}", values, chunks=True)
