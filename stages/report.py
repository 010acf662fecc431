"""report: the HTML galleries (DIR/report/) and the exports (DIR/exports/) → cache/report.h5.

Everything comes from the artifacts (`pipeline.report.build`): no model is loaded. report.h5 holds
only the stage attributes and the lists of pages and exports, so the runner knows the report is
fresh.
"""

from __future__ import annotations

import json
import os
import shutil

import h5py

from pipeline.catalogue.catalogue import build_catalogue, choose_curation, ensure_template, model_id, renamed_names
from pipeline.catalogue.start import note_retrain
from pipeline.core.fingerprint import stable_hash
from pipeline.core.store import string_dataset, write_stage
from pipeline.report.build import (clean_leftovers, report_data, reusable_thumbs, swap, template_inputs, thumbs_key,
                                   trust_signals, write_bank_and_sample, write_exports, write_snapshots, write_thumbs)
from pipeline.report.provenance import read_provenance, write_page_thumbs
from pipeline.report.render import environment, render_report

NAME = "report"
DEPS = ("ingest", "train", "decompose")
PARAMS = ("report",)
VERSION = 4   # 2: reads the pictures and the bank from decompose.h5; 3: the catalogue (curation.toml); 4: deviation, uncertain queue


def _bank_root(project, cfg):
    return project.bank_root(cfg) if cfg.train.bank else None


def inputs(project, cfg) -> dict:
    """A project's own templates/ (overriding the shipped ones) and the content of the curation
    that applies (the project's curation.toml, else the bank's) enter the fingerprint."""
    found = template_inputs(project)
    curation = choose_curation(project.root, _bank_root(project, cfg))
    if curation is not None and not curation.empty:
        found["curation"] = stable_hash(curation.digest())
    return found


def explain_inputs(project, cfg, old: dict, new: dict) -> str:
    changed = [what for key, what in (("curation", "curation.toml changed"), ("templates", "the project's templates changed"))
               if old.get(key) != new.get(key)]
    return "; ".join(changed) or "inputs changed"


def run(ctx) -> None:
    project = ctx.project
    clean_leftovers(project)
    report_dir = project.report_dir
    tmp = project.root / f"report.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "img").mkdir(parents=True)
    try:
        with h5py.File(ctx.upstream("ingest"), "r") as ing, h5py.File(ctx.upstream("decompose"), "r") as dec, \
                h5py.File(ctx.upstream("train"), "r") as tr:
            n = ing["crops"].shape[0]
            model = json.loads(dec.attrs["model_json"])
            train_attrs = dict(tr.attrs)
            curation = choose_curation(project.root, _bank_root(project, ctx.config))
            catalogue = build_catalogue(curation, model["sprites"], model_id(train_attrs),
                                        renamed_names(train_attrs, curation))
            unmatched = dec["error"][()] > float(train_attrs["match_threshold"]) if "match_threshold" in train_attrs else None
            trust = trust_signals(ing, dec, ctx.config.report.family_threshold)
            exports = write_exports(ctx, ing, dec, model, catalogue, unmatched, trust)
            key = thumbs_key(ctx, n)
            reuse = reusable_thumbs(report_dir, key)
            if not reuse:
                write_thumbs(tmp / "img", ing, dec, ctx.progress, ctx.config.train.threads)
                (tmp / "img" / "thumbs.json").write_text(json.dumps(key))
            sample = write_bank_and_sample(tmp / "img", ing, dec, model, ctx.config.report.reconstructions)
            provenance = read_provenance(ing)
            write_page_thumbs(ing, tmp, provenance)
            snapshots = write_snapshots(tmp / "img", tr)
            data = report_data(ctx, ing, dec, tr, model, train_attrs, sample, exports, provenance, snapshots,
                               catalogue, unmatched, trust)
        pages = render_report(environment(project.root), tmp, report_dir, data, progress=ctx.progress)
        if reuse:
            for name in ("crops", "recon", "aligned", "thumbs.json"):
                os.replace(report_dir / "img" / name, tmp / "img" / name)
        swap(tmp, report_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with write_stage(ctx.output, ctx.meta) as f:
        string_dataset(f, "pages", pages)
        string_dataset(f, "exports", exports)
        f.attrs.update({"crops": n, "pages": len(pages), "thumbnails_reused": reuse})
    if note_retrain(project, train_attrs, catalogue.model):
        ctx.log(f"report: noted in {project.root / 'curation.toml'} which sprite of the retrained model is which entry")
    if ensure_template(project.root, catalogue.model):
        ctx.log(f"report: wrote {project.root / 'curation.toml'}, a commented file for your names, merges and drops")
    if catalogue.warning or catalogue.notice:
        ctx.log(f"report: {catalogue.warning or catalogue.notice}")
    ctx.log(f"report: {len(pages)} pages and the exports written; open {report_dir / 'index.html'}"
            + (" (thumbnails reused)" if reuse else ""))
