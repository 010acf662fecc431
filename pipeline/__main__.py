"""`python -m pipeline` = `sprites` (also what `torchrun -m pipeline` runs)."""

from pipeline.cli import cli

cli()
