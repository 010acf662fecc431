"""The report stage's work: the HTML galleries (DIR/report/) and the exports (DIR/exports/), from
the artifacts alone (ingest.h5, train.h5, decompose.h5): this package never imports a model.

Reads the HDF5 files in chunks (never every crop at once). Thumbnails are written once per crop as
small PNGs (img/crops, img/recon, img/aligned) and kept across reruns while the upstream artifacts
are unchanged (a new `report.per_page` only re-renders pages). The report is rendered into a
temporary folder and swapped in whole, so a crash never leaves half a report; every export is
written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from pipeline import __version__
from pipeline.core.config import render_toml
from pipeline.core.fingerprint import stable_hash
from pipeline.core.store import pid_alive, read_strings
from pipeline.catalogue.annotations import ANNOTATIONS_DIR, write_annotations
from pipeline.catalogue.catalogue import Catalogue
from pipeline.report.exports import assignment_rows, atomic_path, write_assignments, write_masks, write_sprite_pngs
from pipeline.report.numbers import fmt_duration, fmt_number
from pipeline.report.render import ReportData
from pipeline.core.sample import spread_ids
from pipeline.report.thumbs import rgba, sample_pictures, sprite_bank, to_hwc, write_png
from pipeline.trust.deviation import GRID, coarse_maps, deviation_maps, deviation_scores
from pipeline.trust.families import families, family_distances, family_of_sprite, shapes
from pipeline.trust.stability import agreement
from pipeline.trust.uncertain import doubt_scores, front_runner_up

__all__ = ["THUMBS_VERSION", "crop_name", "template_inputs", "clean_leftovers", "thumbs_key", "reusable_thumbs",
           "write_thumbs", "deviations", "swap", "write_exports", "write_bank_and_sample", "write_snapshots", "report_data"]

THUMBS_VERSION = 3   # bump when the thumbnails' pixels change (3: no img/deviation, the browser draws it)
_CHUNK = 512         # crops per streaming step


def template_inputs(project) -> dict:
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


def clean_leftovers(project) -> None:
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


def thumbs_key(ctx, n: int) -> dict:
    return {"version": THUMBS_VERSION, "deps": ctx.meta.get("deps_json"), "count": n}


def reusable_thumbs(report_dir: Path, key: dict) -> bool:
    try:
        return json.loads((report_dir / "img" / "thumbs.json").read_text()) == json.loads(json.dumps(key))
    except (OSError, ValueError):
        return False


def write_thumbs(img: Path, ing: h5py.File, dec: h5py.File, progress: bool = False, threads: int = 0) -> None:
    """img/crops, img/recon, img/aligned (the front sprite as placed, RGBA), as decompose stored
    them. (The deviation pictures are drawn by the browser from crops and recon, see _macros.html.)"""
    n, C = ing["crops"].shape[0], ing["crops"].shape[1]
    folders = [img / "crops", img / "recon", img / "aligned"]
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
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
                crops, recon, aligned = ing["crops"][lo:hi], dec["recon"][lo:hi], dec["aligned"][lo:hi]
                for f in pending:
                    f.result()
                half = max(1, (hi - lo) // 2)
                jobs = []
                for folder, arrays in ((folders[0], [to_hwc(a) for a in crops]), (folders[1], [to_hwc(a) for a in recon]),
                                       (folders[2], [rgba(a[:C], a[C:]) for a in aligned])):
                    jobs += [(folder, arrays[:half], lo), (folder, arrays[half:], lo + half)]
                pending = [pool.submit(save, job) for job in jobs]
                bar.update(hi - lo)
            for f in pending:
                f.result()
    finally:
        pool.shutdown(wait=True)


def deviations(ing: h5py.File, dec: h5py.File) -> tuple[np.ndarray, np.ndarray]:
    """Every crop's deviation score (N,) and coarse deviation map (N, GRID²), streamed in chunks."""
    n = ing["crops"].shape[0]
    scores, coarse = np.zeros(n, np.float32), np.zeros((n, GRID * GRID), np.float32)
    for lo in range(0, n, _CHUNK):
        maps = deviation_maps(ing["crops"][lo:lo + _CHUNK], dec["recon"][lo:lo + _CHUNK])
        scores[lo:lo + len(maps)] = deviation_scores(maps)
        coarse[lo:lo + len(maps)] = coarse_maps(maps)
    return scores, coarse


@dataclass
class TrustSignals:
    """Per crop: deviation score (N,), coarse deviation map (N, GRID²), the front layer's runner-up
    sprite (N,) and the uncertain queue's doubt (N,)."""
    deviation: np.ndarray
    coarse: np.ndarray
    runner_up: np.ndarray
    doubt: np.ndarray
    families: list[list[int]]           # sprite families (pipeline.trust.families), each a sorted list of sprite ids
    family_of_sprite: np.ndarray        # (K,) the smallest sprite id of each sprite's family
    family_threshold: float
    agreement: np.ndarray | None = None   # (N,) with several seed runs (pipeline.trust.stability)
    stability: np.ndarray | None = None   # (K,)
    seed_runs: int = 1


def trust_signals(ing: h5py.File, dec: h5py.File, family_threshold: float) -> TrustSignals:
    scores, coarse = deviations(ing, dec)
    runner = front_runner_up(dec["sprite"][()], dec["runner_up"][()], dec["occlusion"][()])
    colours, masks, _ = sprite_bank(dec)
    K = len(colours)
    groups = (families(family_distances(shapes(colours, masks)), family_threshold) if family_threshold > 0
              else [[k] for k in range(K)])
    agree = stable = None
    runs = json.loads(dec["seeds"].attrs["runs_json"]) if "seeds/front" in dec else []
    if len(runs) > 1:
        kept = next(r for r, run in enumerate(runs) if run["kept"])
        agree, stable = agreement(dec["seeds/front"][()], kept, K)
    doubt = doubt_scores(dec["margin"][()], dec["error"][()], agree)
    return TrustSignals(scores, coarse, runner, doubt, groups, family_of_sprite(groups, K), family_threshold,
                        agree, stable, max(1, len(runs)))


def swap(tmp: Path, final: Path) -> None:
    old = final.with_name(f"{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def export_attrs(ctx) -> dict:
    keep = ("stage", "fingerprint", "config_json", "stage_version", "run_id")
    return {k: ctx.meta[k] for k in keep if k in ctx.meta}


def write_exports(ctx, ing, dec, model: dict, catalogue: Catalogue, unmatched: np.ndarray | None = None,
                  trust: TrustSignals | None = None) -> list[str]:
    """exports/: assignments.csv/.json, catalogue.json, annotations/, masks.h5 (transparent models), sprites/*.png."""
    cfg, exports, n = ctx.config, ctx.project.exports_dir, ing["crops"].shape[0]
    K, L, M = model["sprites"], model["layers"], model["backgrounds"]
    numbers = {} if trust is None else {"deviation": trust.deviation, "doubt": trust.doubt,
                                        **({"agreement": trust.agreement} if trust.agreement is not None else {})}
    family = None if trust is None else trust.family_of_sprite
    columns, rows = assignment_rows(ing, dec, backgrounds=M, catalogue=catalogue, unmatched=unmatched, numbers=numbers,
                                    family=family)
    header = {"sprites": K, "layers": L, "backgrounds": M, "count": n, "model": catalogue.model,
              "curation": catalogue.source, "size": int(ing["crops"].shape[-1]),
              "images_root": str(ing.attrs.get("images_root", "")), "config": cfg.to_dict()}
    write_assignments(exports, columns, rows, header)
    with atomic_path(exports / "catalogue.json") as tmp:
        summary = catalogue.summary(dec["front"][()])
        if unmatched is not None:
            summary["unmatched"] = int(unmatched.sum())
        if trust is not None:
            summary.update(families=trust.families, family_of_sprite=trust.family_of_sprite.tolist(),
                           family_threshold=trust.family_threshold)
            if trust.stability is not None:
                summary.update(seed_runs=trust.seed_runs,
                               stability=[None if s != s else round(float(s), 4) for s in trust.stability])
        tmp.write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    written = ["assignments.csv", "assignments.json", "catalogue.json"]
    written += write_annotations(exports / ANNOTATIONS_DIR, ing, dec["front"][()], catalogue, base=cfg.report.iiif_base,
                                 project_root=ctx.project.root, title=ctx.project.root.name, skip=unmatched)
    if model["transparent"]:
        write_masks(exports / "masks.h5", ing, dec, {**export_attrs(ctx), "sprites": K, "layers": L}, family)
        written.append("masks.h5")
    else:
        (exports / "masks.h5").unlink(missing_ok=True)
    colours, masks, backgrounds = sprite_bank(dec)
    return written + [f"sprites/{s}" for s in write_sprite_pngs(exports / "sprites", colours, masks, backgrounds)]


def write_snapshots(img: Path, tr) -> list[dict]:
    """img/snapshots/*.png: the prototypes as they formed during training (train.h5 snapshots/*),
    one row per snapshot: {"epoch", "sprites": [png paths], "backgrounds": [png paths]}."""
    if "snapshots" not in tr:
        return []
    shots = tr["snapshots"]
    colours = shots["colours"][()]
    masks = shots["masks"][()] if "masks" in shots else None
    backgrounds = shots["backgrounds"][()] if "backgrounds" in shots else None
    (img / "snapshots").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, epoch in enumerate(shots["epoch"][()].tolist()):
        row = {"epoch": epoch, "sprites": [], "backgrounds": []}
        for k in range(colours.shape[1]):
            name = f"img/snapshots/s{i:02d}_sprite_{k:03d}.png"
            write_png(img.parent / name, rgba(colours[i, k], None if masks is None else masks[i, k]))
            row["sprites"].append(name)
        for m in range(0 if backgrounds is None else backgrounds.shape[1]):
            name = f"img/snapshots/s{i:02d}_background_{m}.png"
            write_png(img.parent / name, rgba(backgrounds[i, m], None))
            row["backgrounds"].append(name)
        rows.append(row)
    return rows


def write_bank_and_sample(img: Path, ing, dec, model: dict, count: int) -> list[dict]:
    """img/sprites/*.png (the sprite bank) and img/sample/* (the reconstructions page's pictures:
    `count` of the crops whose layers decompose kept)."""
    (img / "sprites").mkdir(parents=True, exist_ok=True)
    colours, masks, backgrounds = sprite_bank(dec)
    for k in range(len(colours)):
        write_png(img / "sprites" / f"sprite_{k:03d}.png", rgba(colours[k], None if masks is None else masks[k]))
    for m in range(0 if backgrounds is None else len(backgrounds)):
        write_png(img / "sprites" / f"background_{m}.png", rgba(backgrounds[m], None))
    n, C = ing["crops"].shape[0], ing["crops"].shape[1]
    kept = dec["sample/ids"][()] if "sample/ids" in dec else np.zeros(0, np.int64)
    rows = spread_ids(len(kept), count)
    (img / "sample").mkdir(exist_ok=True)
    sample = []
    for lo in range(0, len(rows), 64):
        chunk = rows[lo:lo + 64]
        pics = sample_pictures(dec, chunk, kept[chunk], C, model["sprites"], model["layers"])
        for i, pic in zip(kept[chunk].tolist(), pics):
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
    "catalogue.json": "the catalogue: every entry (its sprites, name, note, crop count) and the dropped sprites, after curation.toml",
    "annotations/collection.json": "every crop as a IIIF / W3C Web Annotation (name and sprite on the crop's box), one page per canvas or image; annotations/manifest.json shows local images in a IIIF viewer",
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


def report_data(ctx, ing, dec, tr, model: dict, train_attrs, sample, exports, provenance,
                snapshots: list[dict] | None = None, catalogue: Catalogue | None = None,
                unmatched: np.ndarray | None = None, trust: TrustSignals | None = None) -> ReportData:
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
    K, L, M = model["sprites"], model["layers"], model["backgrounds"]
    restarts = json.loads(train_attrs.get("restarts_json", "[]"))
    device = str(train_attrs.get("device", "?")) + (f", {int(train_attrs['threads'])} threads"
                                                   if train_attrs.get("device") == "cpu" and "threads" in train_attrs else "")
    facts = [
        ("Images folder", str(ing.attrs.get("images_root", ""))),
        ("Crops", f"{n:,} of {S}×{S} px, {'grey' if C == 1 else 'colour'}, from {files:,} files ({len(skipped):,} skipped)"),
        ("Preset", cfg.preset),
        ("Model", model["kind"]),
        ("Sprites (K)", f"{K} ({used} in use)"),
        ("Layers (L)", str(L)),
        ("Backgrounds", str(M) if M else "none"),
        *[(label, value) for label, value in model.get("facts", [])],
        ("Training", f"{_plural(int(train_attrs.get('epochs_done', 0)), 'epoch')}, {_plural(int(train_attrs.get('steps', 0)), 'step')}, "
                     f"{fmt_duration(float(train_attrs.get('seconds', 0.0)))}"
                     + (f" ({len(restarts)} runs from different seeds, the lowest-loss one kept; the epochs and steps are its own)"
                        if len(restarts) > 1 else "")),
        ("Device", device),
        ("Final training loss", fmt_number(losses[-1], 4) if losses else "–"),
        ("Mean reconstruction error", fmt_number(float(error.mean()), 4) if n else "–"),
        ("Sprites re-seeded", str(int(train_attrs.get("reseeded", 0)))),
        *_collection_facts(ing, provenance, n),
        ("Trained", str(train_attrs.get("created_utc", "?")).replace("T", " ").replace("Z", " UTC")),
    ]
    if catalogue is not None:
        facts.append(("Model id", catalogue.model + (f" (curation: {catalogue.source})" if catalogue.source else "")))
    if "bank" in train_attrs:
        facts.append(("Bank", f"{train_attrs['bank']}: its trained model explains these crops (nothing trained here)"
                              + (f"; {int(unmatched.sum()):,} crops unmatched (error above "
                                 f"{fmt_number(float(train_attrs['match_threshold']), 3)})" if unmatched is not None else "")))
    counts = np.bincount(front[front >= 0].astype(np.int64), minlength=K)
    lede = (f"{n:,} crops explained by {K} sprite{'s' if K != 1 else ''}"
            + (f" over {M} background{'s' if M != 1 else ''}" if M else "")
            + f"; {used} sprite{'s are' if used != 1 else ' is'} in use, the most frequent explains {int(counts.max()) if K else 0:,} crops.")
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return ReportData(
        project_name=ctx.project.root.name, provenance=provenance, front=front, error=error, margin=dec["margin"][()],
        background=dec["background"][()], size=S, sprite_size=model["sprite_size"], K=K, L=L, M=M,
        transparent=model["transparent"], per_page=cfg.report.per_page, steps=steps, losses=losses,
        facts=facts, lede=lede, config_text=render_toml(cfg), created=created, version=__version__,
        skipped=skipped, sample=sample,
        exports=[{"path": e, "description": _EXPORT_NOTES.get(e, "")} for e in exports
                 if not e.startswith("sprites/") and (not e.startswith("annotations/") or e in _EXPORT_NOTES)]
        + [{"path": "sprites/", "description": "the sprites (RGBA PNG) and background prototypes"}],
        reseeds=[{"epoch": epoch, "sprite": k, "source": src, "reason": why}
                 for _, epoch, k, src, why in json.loads(train_attrs.get("reseeds_json", "[]"))],
        restarts=json.loads(train_attrs.get("restarts_json", "[]")), snapshots=snapshots or [],
        catalogue=catalogue, unmatched=unmatched,
        **({} if trust is None else {"deviation": trust.deviation, "deviation_coarse": trust.coarse,
                                     "doubt": trust.doubt, "runner_up": trust.runner_up, "families": trust.families,
                                     "family_threshold": trust.family_threshold, "agreement": trust.agreement,
                                     "stability": trust.stability, "seed_runs": trust.seed_runs}))


