"""The stages, in the order they run. Each module declares NAME, DEPS, PARAMS, VERSION and run(ctx)."""

from stages import decompose, ingest, report, train

STAGES = (ingest, train, decompose, report)
