"""ingest: images → square crops with provenance, in cache/ingest.h5.

Datasets (first axis = crop id, never reordered): `crops` (N, C, S, S) uint8; `source` (N,) path
relative to the images root; `box` (N, 4) x, y, w, h of the crop in source pixels; `size` (N, 2)
original width, height; `content_box` (N, 4) where the image lies inside the padded crop;
`checksum` (N,) sha1 of the file; `skipped/source`, `skipped/reason`; `files/*` the listing.
"""

from __future__ import annotations

import multiprocessing
import os
from functools import partial

import numpy as np
from tqdm import tqdm

from pipeline.errors import SpritesError
from pipeline.fingerprint import stable_hash
from pipeline.images import list_images, load_crop
from pipeline.store import read_strings, string_dataset, write_stage

NAME = "ingest"
DEPS: tuple[str, ...] = ()
PARAMS = ("ingest",)
VERSION = 1

_BATCH = 256


def _file_keys(listing) -> list[tuple[str, int, int]]:
    keys = []
    for rel in listing.files:
        st = os.stat(listing.root / rel)
        keys.append((rel, st.st_size, st.st_mtime_ns))
    return keys


def inputs(project, cfg) -> dict:
    """A cheap digest of the collection: (path, size, mtime) of every image file."""
    listing = list_images(project.images_spec(cfg))
    return {"count": len(listing.files), "digest": stable_hash(_file_keys(listing))}


def explain_inputs(project, cfg, old: dict, new: dict) -> str:
    import h5py

    try:
        with h5py.File(project.stage_path(NAME), "r") as f:
            before = set(read_strings(f["files/source"]))
    except (OSError, KeyError):
        return f"images changed ({old.get('count')} → {new.get('count')} files)"
    now = set(list_images(project.images_spec(cfg)).files)
    added, removed = len(now - before), len(before - now)
    modified = "" if added or removed else ", files modified"
    return f"images changed ({added} added, {removed} removed{modified})"


def _workers(n: int) -> int:
    if n < 200:
        return 0
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


def run(ctx) -> None:
    cfg = ctx.config.ingest
    listing = list_images(ctx.project.images_spec(ctx.config))
    if not listing.files:
        raise SpritesError(f"no images found in {listing.root} (looked for .jpg .png .tif .bmp .webp); check ingest.images in sprites.toml")
    n, size, c = len(listing.files), cfg.size, cfg.channels
    load = partial(_load, root=str(listing.root), size=size, channels=c, pad=cfg.pad, max_pixels=cfg.max_pixels)
    skipped = list(listing.ignored)
    with write_stage(ctx.output, ctx.meta) as f:
        chunk = max(1, min(_BATCH, (4 << 20) // (c * size * size)))
        crops = f.create_dataset("crops", shape=(0, c, size, size), maxshape=(None, c, size, size),
                                 dtype=np.uint8, chunks=(chunk, c, size, size))
        source = string_dataset(f, "source")
        checksum = string_dataset(f, "checksum")
        box = f.create_dataset("box", shape=(0, 4), maxshape=(None, 4), dtype=np.int32, chunks=(4096, 4))
        orig = f.create_dataset("size", shape=(0, 2), maxshape=(None, 2), dtype=np.int32, chunks=(4096, 2))
        content = f.create_dataset("content_box", shape=(0, 4), maxshape=(None, 4), dtype=np.int32, chunks=(4096, 4))
        buffer: list = []

        def flush():
            if not buffer:
                return
            m, k = crops.shape[0], len(buffer)
            for ds in (crops, source, checksum, box, orig, content):
                ds.resize(m + k, axis=0)
            crops[m:] = np.stack([r.crop for _, r in buffer])
            source[m:] = np.array([rel for rel, _ in buffer], dtype=object)
            checksum[m:] = np.array([r.checksum for _, r in buffer], dtype=object)
            box[m:] = np.array([(0, 0, r.width, r.height) for _, r in buffer], dtype=np.int32)
            orig[m:] = np.array([(r.width, r.height) for _, r in buffer], dtype=np.int32)
            content[m:] = np.array([r.content_box for _, r in buffer], dtype=np.int32)
            buffer.clear()

        workers = _workers(n)
        pool = multiprocessing.get_context("fork").Pool(workers) if workers else None
        try:
            results = pool.imap(load, listing.files, chunksize=32) if pool else map(load, listing.files)
            for rel, result in tqdm(zip(listing.files, results), total=n, desc="ingest", unit="img",
                                    disable=not ctx.progress, mininterval=0.5):
                if result.error:
                    skipped.append((rel, result.error))
                    continue
                buffer.append((rel, result))
                if len(buffer) >= _BATCH:
                    flush()
            flush()
        finally:
            if pool:
                pool.terminate()
        kept = crops.shape[0]
        if kept == 0:
            raise SpritesError(f"none of the {n} images in {listing.root} could be read (first problem: {skipped[0][0]}: {skipped[0][1]})")
        string_dataset(f, "skipped/source", [s for s, _ in skipped])
        string_dataset(f, "skipped/reason", [r for _, r in skipped])
        keys = _file_keys(listing)
        string_dataset(f, "files/source", [k[0] for k in keys])
        f.create_dataset("files/bytes", data=np.array([k[1] for k in keys], dtype=np.int64))
        f.attrs["images_root"] = str(listing.root)
        f.attrs["count"] = kept
    ctx.log(f"ingest: {kept} crops of {size}×{size} px from {n} images" + (f"; {len(skipped)} files skipped:" if skipped else ""))
    for rel, reason in skipped[:20]:
        ctx.log(f"  skipped {rel}: {reason}")
    if len(skipped) > 20:
        ctx.log(f"  … and {len(skipped) - 20} more (listed in the report)")


def _load(rel: str, root: str, size: int, channels: int, pad: str, max_pixels: int):
    return load_crop(os.path.join(root, rel), size, channels, pad, max_pixels)
