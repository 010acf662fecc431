"""train: learn the model (for `sprites`: the sprites and the transformation predictors) → cache/train.h5.

train.h5: `model/` (weights, HDF5 datasets), `history/{step,epoch,loss,seconds,…}` (the kind adds
its own, e.g. `usage`), attrs `kind`, `channels`, `size`, `crops`, `steps`, `epochs_done`,
`seconds` (all runs), `device`, `threads`, the kind's own (`reseeded`, `reseeds_json` for sprites),
`restarts_json` (with `train.fill_budget = restarts`: every run's seed, epochs, steps, minutes,
losses and which was kept; history and weights are the kept run's), the kind's arrays (sprites:
`snapshots/*`, the prototypes at each tenth of the schedule), plus the stage attributes. While training, `cache/train.checkpoint.h5` holds the latest checkpoint (same
fingerprint → resume).
"""

from __future__ import annotations

import time

from pipeline.core.store import write_stage
from pipeline.errors import SpritesError

NAME = "train"
DEPS = ("ingest",)
PARAMS = ("model", "train")
VERSION = 2  # 2: no hidden layers for empty transformation sequences


def run(ctx) -> None:
    # torch is imported here, not at the top: `sprites run all` forks the ingest workers before
    # this stage runs, and they should not carry torch
    import json
    from dataclasses import asdict

    import numpy as np

    from pipeline.models.base import DataShape
    from pipeline.models.device import pick_device, set_threads
    from pipeline.models.runs import train_runs
    from pipeline.models.trained import load_crops, save_weights

    cfg = ctx.config
    crops = load_crops(ctx.upstream("ingest"))
    shape = DataShape(crops.shape[1], crops.shape[-1], crops.shape[0])
    if crops.shape[1] != cfg.ingest.channels:
        raise SpritesError("cache/ingest.h5 does not match ingest.channels: rerun `sprites run ingest --force`")
    device = pick_device(cfg.train.device)
    threads = set_threads(cfg.train.threads)
    start = time.time()
    run = train_runs(cfg, crops, shape, device, ctx.project.cache_dir, ctx.fingerprint, ctx.progress, ctx.log, threads)
    state, extra = run.state, run.attrs
    seconds = sum(r.minutes for r in run.restarts) * 60 if run.restarts else state.elapsed
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
    (ctx.project.cache_dir / "train.checkpoint.h5").unlink(missing_ok=True)
    final = state.history["loss"][-1] if state.history["loss"] else float("nan")
    note = f", {extra['training_note']}" if "training_note" in extra else ""
    ctx.log(f"train: {state.step} steps in {seconds / 60:.1f} min (this session {time.time() - start:.0f} s), "
            f"final loss {final:.5f}{note}")
