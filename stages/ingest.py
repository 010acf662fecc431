"""ingest: images, PDFs and IIIF manifests → square crops with provenance → cache/ingest.h5.

The layout of ingest.h5 and the work are in `pipeline.ingest.collection`.
"""

from __future__ import annotations

from pipeline.core.store import write_stage
from pipeline.ingest.collection import explain_inputs, ingest, inputs

__all__ = ["NAME", "DEPS", "PARAMS", "VERSION", "inputs", "explain_inputs", "run"]

NAME = "ingest"
DEPS: tuple[str, ...] = ()
PARAMS = ("ingest",)
VERSION = 1


def run(ctx) -> None:
    ingest(ctx.project, ctx.config, lambda: write_stage(ctx.output, ctx.meta), ctx.log, ctx.progress)
