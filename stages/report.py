"""report: the HTML galleries (DIR/report/) and the exports (DIR/exports/) → cache/report.h5.

Reads ingest.h5, train.h5 and decompose.h5 in chunks (never every crop at once). Thumbnails are
written once per crop as small PNGs (img/crops, img/recon, img/aligned) and kept across reruns
while the upstream artifacts are unchanged (a new `report.per_page` only re-renders pages). The
report is rendered into a temporary folder and swapped in whole, so a crash never leaves half a
report; every export is written under a temporary name and renamed. report.h5 holds only the
stage attributes and the list of pages, so the runner knows the report is fresh.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from pipeline import __version__
from pipeline.report.exports import assignment_rows, write_assignments, write_masks, write_sprite_pngs
from pipeline.core.fingerprint import stable_hash
from pipeline.report.provenance import read_provenance, write_page_thumbs
from pipeline.report.render import ReportData, environment, fmt_duration, fmt_number, render_report
from pipeline.core.store import pid_alive, read_strings, string_dataset, write_stage
from pipeline.report.thumbs import front_layer, render_aligned, rgba, sample_images, sprite_bank, to_hwc, write_png
from pipeline.models.fit import set_threads

NAME = "report"
DEPS = ("ingest", "train", "decompose")
PARAMS = ("report",)
VERSION = 1

THUMBS_VERSION = 1   # bump when the thumbnails' pixels change
_CHUNK = 512         # crops per streaming step


def inputs(project, cfg) -> dict:
    """A project's own templates/ (overriding the shipped ones) enter the fingerprint."""
    folder = project.root / "templates"
    if not folder.is_dir():
        return {}
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {"templates": stable_hash([(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])}


def crop_name(i: int, n: int) -> str:
    return f"{i:0{max(6, len(str(max(n - 1, 0))))}d}.png"


def _threads(configured: int = 0) -> int:
    """PNG-writing threads: train.threads when set, else the cores we may use (at most 4)."""
    if configured > 0:
        return configured
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _clean_leftovers(project) -> None:
    """Temporary report folders and export files of killed runs (their process is gone)."""
    candidates = [*project.root.glob("report.tmp-*"), *project.root.glob("report.old-*"),
                  *project.exports_dir.glob("*.tmp-*")]
    for tmp in candidates:
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not pid_alive(int(pid))):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _thumbs_key(ctx, n: int) -> dict:
    return {"version": THUMBS_VERSION, "deps": ctx.meta.get("deps_json"), "count": n}


def _reusable_thumbs(report_dir: Path, key: dict) -> bool:
    try:
        return json.loads((report_dir / "img" / "thumbs.json").read_text()) == json.loads(json.dumps(key))
    except (OSError, ValueError):
        return False


def write_thumbs(img: Path, ing: h5py.File, dec: h5py.File, model, progress: bool = False, threads: int = 0) -> None:
    """img/crops, img/recon (as stored) and img/aligned (the front sprite as placed, RGBA)."""
    n = ing["crops"].shape[0]
    folders = [img / "crops", img / "recon", img / "aligned"]
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    names = list(dec["params"]) if "params" in dec else []
    pool = ThreadPoolExecutor(_threads(threads))

    def save(args):
        folder, arrays, lo = args
        for j, a in enumerate(arrays):
            write_png(folder / crop_name(lo + j, n), a)

    try:
        with tqdm(total=n, desc="report thumbnails", unit="crop", disable=not progress, mininterval=0.5) as bar:
            pending = []
            for lo in range(0, n, _CHUNK):
                hi = min(n, lo + _CHUNK)
                crops, recon = ing["crops"][lo:hi], dec["recon"][lo:hi]
                sprite, occ = dec["sprite"][lo:hi], dec["occlusion"][lo:hi]
                layer = front_layer(sprite, occ)
                rows = np.arange(hi - lo)
                betas = {k: dec["params"][k][lo:hi][rows, layer] for k in names}
                colour, alpha = render_aligned(model, sprite[rows, layer], betas)
                for f in pending:
                    f.result()
                half = max(1, (hi - lo) // 2)
                jobs = []
                for folder, arrays in ((folders[0], [to_hwc(a) for a in crops]), (folders[1], [to_hwc(a) for a in recon]),
                                       (folders[2], [rgba(c, a) for c, a in zip(colour, alpha)])):
                    jobs += [(folder, arrays[:half], lo), (folder, arrays[half:], lo + half)]
                pending = [pool.submit(save, job) for job in jobs]
                bar.update(hi - lo)
            for f in pending:
                f.result()
    finally:
        pool.shutdown(wait=True)


def _swap(tmp: Path, final: Path) -> None:
    old = final.with_name(f"{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _export_attrs(ctx) -> dict:
    keep = ("stage", "fingerprint", "config_json", "stage_version", "run_id")
    return {k: ctx.meta[k] for k in keep if k in ctx.meta}


def _write_exports(ctx, ing, dec, model) -> list[str]:
    """exports/: assignments.csv/.json, masks.h5 (transparent models), sprites/*.png."""
    cfg, exports, n = ctx.config, ctx.project.exports_dir, ing["crops"].shape[0]
    order = list(model.sprite_seq) + [f"layer_{x}" for x in model.layer_seq]
    columns, rows = assignment_rows(ing, dec, backgrounds=model.M, init_scale=cfg.model.position_scale, order=order)
    header = {"sprites": model.K, "layers": model.L, "backgrounds": model.M, "count": n,
              "size": int(ing["crops"].shape[-1]), "images_root": str(ing.attrs.get("images_root", "")),
              "config": cfg.to_dict()}
    write_assignments(exports, columns, rows, header)
    written = ["assignments.csv", "assignments.json"]
    if model.masks is not None:
        write_masks(exports / "masks.h5", ing, dec, {**_export_attrs(ctx), "sprites": model.K, "layers": model.L})
        written.append("masks.h5")
    else:
        (exports / "masks.h5").unlink(missing_ok=True)
    colours, masks, backgrounds = sprite_bank(model)
    return written + [f"sprites/{s}" for s in write_sprite_pngs(exports / "sprites", colours, masks, backgrounds)]


def _write_bank_and_sample(img: Path, ing, dec, model, count: int) -> list[dict]:
    """img/sprites/*.png (the sprite bank) and img/sample/* (the reconstructions page's pictures)."""
    (img / "sprites").mkdir(parents=True, exist_ok=True)
    colours, masks, backgrounds = sprite_bank(model)
    for k in range(model.K):
        write_png(img / "sprites" / f"sprite_{k:03d}.png", rgba(colours[k], None if masks is None else masks[k]))
    for m in range(0 if backgrounds is None else len(backgrounds)):
        write_png(img / "sprites" / f"background_{m}.png", rgba(backgrounds[m], None))
    n = ing["crops"].shape[0]
    ids = np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(np.int64)) if count > 0 else np.zeros(0, np.int64)
    (img / "sample").mkdir(exist_ok=True)
    sample = []
    for lo in range(0, len(ids), 64):
        chunk = ids[lo:lo + 64]
        pics = sample_images(model, ing["crops"][chunk], dec["semantic"][chunk], dec["instance"][chunk])
        for i, pic in zip(chunk.tolist(), pics):
            stem = img / "sample" / crop_name(i, n)[:-4]
            write_png(f"{stem}_semantic.png", pic["semantic"])
            write_png(f"{stem}_instance.png", pic["instance"])
            if pic["background"] is not None:
                write_png(f"{stem}_background.png", pic["background"])
            for l, layer in enumerate(pic["layers"]):
                write_png(f"{stem}_layer{l}.png", layer)
            sample.append({"id": i, "sprites": pic["sprites"]})
    return sample


_EXPORT_NOTES = {
    "assignments.csv": "one row per crop: source, box, sprite, layers, error, margin, provenance (page, file, IIIF canvas and region, checksum), metadata columns, transformation values",
    "assignments.json": "the same as a list of objects, with a header (config, sprite count)",
    "masks.h5": "per crop: semantic mask (0 background, k+1 = sprite k) and instance mask (l+1 = layer l)",
}


def _collection_facts(ing, provenance, n: int) -> list[tuple[str, str]]:
    """Pages cut into crops and the metadata columns, for the run table."""
    facts = []
    if provenance.pages:
        facts.append(("Pages cut into crops", f"{len(provenance.pages):,} (see Pages: every crop outlined on its page)"))
    if provenance.metadata:
        with_row = sum(1 for i in range(n) if any(v[i] for v in provenance.metadata.values()))
        unmatched = int(ing["metadata_unmatched/rows"].shape[0]) if "metadata_unmatched/rows" in ing else 0
        facts.append(("Metadata", f"{len(provenance.metadata)} column{'s' if len(provenance.metadata) != 1 else ''} "
                                  f"({', '.join(list(provenance.metadata)[:8])}{', …' if len(provenance.metadata) > 8 else ''}); "
                                  f"{with_row:,} of {n:,} crops have values"
                                  + (f"; {unmatched:,} rows of the spreadsheet match no crop" if unmatched else "")))
    return facts


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _report_data(ctx, ing, dec, tr, model, train_attrs, sample, exports, provenance) -> ReportData:
    from pipeline.core.config import render_toml
    cfg, n = ctx.config, ing["crops"].shape[0]
    front = dec["front"][()]
    error = dec["error"][()]
    S, C = int(ing["crops"].shape[-1]), int(ing["crops"].shape[1])
    skipped = list(zip(read_strings(ing["skipped/source"]), read_strings(ing["skipped/reason"]))) if "skipped" in ing else []
    files = int(ing["files/source"].shape[0]) if "files/source" in ing else n + len(skipped)
    history = tr["history"] if "history" in tr else {}
    steps = history["step"][()].tolist() if "step" in history else []
    losses = history["loss"][()].tolist() if "loss" in history else []
    used = int(len(np.unique(front[front >= 0])))
    transforms = ", ".join(model.sprite_seq + [f"{x} (per layer)" for x in model.layer_seq]) or "none"
    device = str(train_attrs.get("device", "?")) + (f", {int(train_attrs['threads'])} threads"
                                                   if train_attrs.get("device") == "cpu" and "threads" in train_attrs else "")
    facts = [
        ("Images folder", str(ing.attrs.get("images_root", ""))),
        ("Crops", f"{n:,} of {S}×{S} px, {'grey' if C == 1 else 'colour'}, from {files:,} files ({len(skipped):,} skipped)"),
        ("Preset", cfg.preset),
        ("Sprites (K)", f"{model.K} ({used} in use)"),
        ("Layers (L)", str(model.L)),
        ("Backgrounds", str(model.M) if model.M else "none"),
        ("Transparency", "learned masks" if model.masks is not None else "opaque prototypes (clustering)"),
        ("Transformations", transforms),
        ("Training", f"{_plural(int(train_attrs.get('epochs_done', 0)), 'epoch')}, {_plural(int(train_attrs.get('steps', 0)), 'step')}, "
                     f"{fmt_duration(float(train_attrs.get('seconds', 0.0)))}"),
        ("Device", device),
        ("Final training loss", fmt_number(losses[-1], 4) if losses else "–"),
        ("Mean reconstruction error", fmt_number(float(error.mean()), 4) if n else "–"),
        ("Sprites re-seeded", str(int(train_attrs.get("reseeded", 0)))),
        *_collection_facts(ing, provenance, n),
        ("Trained", str(train_attrs.get("created_utc", "?")).replace("T", " ").replace("Z", " UTC")),
    ]
    counts = np.bincount(front[front >= 0].astype(np.int64), minlength=model.K)
    lede = (f"{n:,} crops explained by {model.K} sprite{'s' if model.K != 1 else ''}"
            + (f" over {model.M} background{'s' if model.M != 1 else ''}" if model.M else "")
            + f"; {used} sprite{'s are' if used != 1 else ' is'} in use, the most frequent explains {int(counts.max()) if model.K else 0:,} crops.")
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return ReportData(
        project_name=ctx.project.root.name, provenance=provenance, front=front, error=error, margin=dec["margin"][()],
        background=dec["background"][()], size=S, sprite_size=model.s, K=model.K, L=model.L, M=model.M,
        transparent=model.masks is not None, per_page=cfg.report.per_page, steps=steps, losses=losses,
        facts=facts, lede=lede, config_text=render_toml(cfg), created=created, version=__version__,
        skipped=skipped, sample=sample,
        exports=[{"path": e, "description": _EXPORT_NOTES.get(e, "")} for e in exports if not e.startswith("sprites/")]
        + [{"path": "sprites/", "description": "the sprites (RGBA PNG) and background prototypes"}],
        reseeds=[{"epoch": epoch, "sprite": k, "source": src, "reason": why}
                 for _, epoch, k, src, why in json.loads(train_attrs.get("reseeds_json", "[]"))])


def run(ctx) -> None:
    from stages.train import load_model

    project = ctx.project
    set_threads(ctx.config.train.threads)   # run-only setting: never changes the pixels
    _clean_leftovers(project)
    model, train_attrs = load_model(project, "cpu")
    report_dir = project.report_dir
    tmp = project.root / f"report.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "img").mkdir(parents=True)
    try:
        with h5py.File(ctx.upstream("ingest"), "r") as ing, h5py.File(ctx.upstream("decompose"), "r") as dec, \
                h5py.File(ctx.upstream("train"), "r") as tr:
            n = ing["crops"].shape[0]
            exports = _write_exports(ctx, ing, dec, model)
            key = _thumbs_key(ctx, n)
            reuse = _reusable_thumbs(report_dir, key)
            if not reuse:
                write_thumbs(tmp / "img", ing, dec, model, ctx.progress, ctx.config.train.threads)
                (tmp / "img" / "thumbs.json").write_text(json.dumps(key))
            sample = _write_bank_and_sample(tmp / "img", ing, dec, model, ctx.config.report.reconstructions)
            provenance = read_provenance(ing)
            write_page_thumbs(ing, tmp, provenance)
            data = _report_data(ctx, ing, dec, tr, model, train_attrs, sample, exports, provenance)
        pages = render_report(environment(project.root), tmp, report_dir, data, progress=ctx.progress)
        if reuse:
            for name in ("crops", "recon", "aligned", "thumbs.json"):
                os.replace(report_dir / "img" / name, tmp / "img" / name)
        _swap(tmp, report_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with write_stage(ctx.output, ctx.meta) as f:
        string_dataset(f, "pages", pages)
        string_dataset(f, "exports", exports)
        f.attrs.update({"crops": n, "pages": len(pages), "thumbnails_reused": reuse})
    ctx.log(f"report: {len(pages)} pages and the exports written; open {report_dir / 'index.html'}"
            + (" (thumbnails reused)" if reuse else ""))
