"""train: learn the model (for `sprites`: the sprites and the transformation predictors) → cache/train.h5.

train.h5: `model/` (weights, HDF5 datasets), `history/{step,epoch,loss,seconds,…}` (the kind adds
its own, e.g. `usage`), attrs `kind`, `channels`, `size`, `crops`, `steps`, `epochs_done`,
`seconds` (all runs), `device`, `threads`, the kind's own (`reseeded`, `reseeds_json` for sprites),
`restarts_json` (with `train.fill_budget = restarts`: every run's seed, epochs, steps, minutes,
losses and which was kept; history and weights are the kept run's), the kind's arrays (sprites:
`snapshots/*`, the prototypes at each tenth of the schedule), plus the stage attributes. With
`train.bank` (a matched project) the file is a copy of the bank's, plus `bank`, `model_id`,
`model_config_json` and `match_threshold` (`pipeline.catalogue.bank`); with `train.init = curated`,
`curated_from` (the model the curation named), `curated_names_json` and `curated_members_json`
(per new sprite: its name and the old sprites of its entry; `pipeline.catalogue.start`). With
`train.seeds = N > 1`: `seeds/run<r>/` every seed run's weights and `seeds_json` (seed, loss,
epochs, minutes, kept per run; `pipeline.models.seeds`); `model/` is the kept run's.
While training, `cache/train.checkpoint.h5` holds the latest checkpoint (same fingerprint → resume).
"""

from __future__ import annotations

import time

from pipeline.core.store import write_stage
from pipeline.errors import SpritesError

NAME = "train"
DEPS = ("ingest",)
PARAMS = ("model", "train")
VERSION = 2  # 2: no hidden layers for empty transformation sequences


def inputs(project, cfg) -> dict:
    """With `train.bank`, the bank's model (its train and decompose runs) enters the fingerprint;
    with `train.init = curated`, the content of curation.toml."""
    if cfg.train.bank:
        from pipeline.catalogue.bank import bank_inputs
        return bank_inputs(project, cfg)
    if cfg.train.init == "curated":
        from pipeline.catalogue.start import start_inputs
        return start_inputs(project)
    return {}


def run(ctx) -> None:
    if ctx.config.train.bank:   # a matched project: the bank's model, nothing trained
        from pipeline.catalogue.bank import adopt_bank
        ctx.log(adopt_bank(ctx))
        return
    # torch is imported here, not at the top: `sprites run all` forks the ingest workers before
    # this stage runs, and they should not carry torch
    import json
    from dataclasses import asdict

    import numpy as np

    from pipeline.models.base import DataShape
    from pipeline.models.device import pick_device, set_threads
    from pipeline.models.runs import train_runs
    from pipeline.models.state_io import save_tree
    from pipeline.models.trained import load_crops, save_weights

    cfg = ctx.config
    crops = load_crops(ctx.upstream("ingest"))
    shape = DataShape(crops.shape[1], crops.shape[-1], crops.shape[0])
    if crops.shape[1] != cfg.ingest.channels:
        raise SpritesError("cache/ingest.h5 does not match ingest.channels: rerun `sprites run ingest --force`")
    curated, curated_attrs = None, {}
    if cfg.train.init == "curated":
        from pipeline.catalogue.start import curated_start
        curated, curated_attrs = curated_start(ctx.project)
        ctx.log(f"train: {len(curated.names)} sprites start from the curated entries of model {curated_attrs['curated_from']}")
    device = pick_device(cfg.train.device)
    threads = set_threads(cfg.train.threads)
    start = time.time()
    seed_runs, seed_weights = [], []
    if cfg.train.seeds > 1:
        from pipeline.models.seeds import train_seeds
        run, seed_runs, seed_weights = train_seeds(cfg, crops, shape, device, ctx.project.cache_dir, ctx.fingerprint,
                                                   ctx.progress, ctx.log, threads, start=curated)
    else:
        run = train_runs(cfg, crops, shape, device, ctx.project.cache_dir, ctx.fingerprint, ctx.progress, ctx.log,
                         threads, start=curated)
    state, extra = run.state, {**run.attrs, **curated_attrs}
    seconds = sum(r.minutes for r in run.restarts) * 60 if run.restarts else state.elapsed
    if seed_runs:
        seconds = sum(x.minutes for x in seed_runs) * 60
    with write_stage(ctx.output, ctx.meta) as f:
        save_weights(f.create_group("model"), run.model)
        for key, values in state.history.items():
            f.create_dataset(f"history/{key}", data=np.asarray(values, dtype=np.float64))
        f.attrs.update({"kind": cfg.model.kind, "channels": shape.channels, "size": shape.size, "steps": state.step,
                        "epochs_done": state.epoch, "seconds": seconds, "device": device.type,
                        "threads": threads, "crops": shape.count, **extra})
        if run.restarts:
            f.attrs["restarts_json"] = json.dumps([asdict(r) for r in run.restarts])
        for name, array in run.arrays.items():   # e.g. snapshots/* of the prototypes as they formed
            f.create_dataset(name, data=array)
        if seed_runs:   # every seed run's weights, for decompose to measure agreement
            for r, weights in enumerate(seed_weights):
                save_tree(f.create_group(f"seeds/run{r}"), weights)
            f.attrs["seeds_json"] = json.dumps([asdict(x) for x in seed_runs])
    (ctx.project.cache_dir / "train.checkpoint.h5").unlink(missing_ok=True)
    if seed_runs:
        from pipeline.models.seeds import forget_seed_runs
        forget_seed_runs(ctx.project.cache_dir, len(seed_runs))
    final = state.history["loss"][-1] if state.history["loss"] else float("nan")
    note = f", {extra['training_note']}" if "training_note" in extra else ""
    ctx.log(f"train: {state.step} steps in {seconds / 60:.1f} min (this session {time.time() - start:.0f} s), "
            f"final loss {final:.5f}{note}")
