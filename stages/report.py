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

from pipeline.core.store import string_dataset, write_stage
from pipeline.report.build import (clean_leftovers, report_data, reusable_thumbs, swap, template_inputs, thumbs_key,
                                   write_bank_and_sample, write_exports, write_snapshots, write_thumbs)
from pipeline.report.provenance import read_provenance, write_page_thumbs
from pipeline.report.render import environment, render_report

NAME = "report"
DEPS = ("ingest", "train", "decompose")
PARAMS = ("report",)
VERSION = 2   # 2: reads the pictures and the bank from decompose.h5


def inputs(project, cfg) -> dict:
    """A project's own templates/ (overriding the shipped ones) enter the fingerprint."""
    return template_inputs(project)


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
            exports = write_exports(ctx, ing, dec, model)
            key = thumbs_key(ctx, n)
            reuse = reusable_thumbs(report_dir, key)
            if not reuse:
                write_thumbs(tmp / "img", ing, dec, ctx.progress, ctx.config.train.threads)
                (tmp / "img" / "thumbs.json").write_text(json.dumps(key))
            sample = write_bank_and_sample(tmp / "img", ing, dec, model, ctx.config.report.reconstructions)
            provenance = read_provenance(ing)
            write_page_thumbs(ing, tmp, provenance)
            snapshots = write_snapshots(tmp / "img", tr)
            data = report_data(ctx, ing, dec, tr, model, dict(tr.attrs), sample, exports, provenance, snapshots)
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
    ctx.log(f"report: {len(pages)} pages and the exports written; open {report_dir / 'index.html'}"
            + (" (thumbnails reused)" if reuse else ""))
