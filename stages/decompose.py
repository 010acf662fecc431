"""decompose: explain every crop with the trained model → cache/decompose.h5.

The model's `decompose_batch` gives one `Record` per batch (`pipeline.models.base`); the layout
of decompose.h5 is in `pipeline.models.record_io`: per crop the sprite of each layer, the
runner-up and margins, background, occlusion, transformation parameters and readable values,
reconstruction, error, semantic and instance masks, and the pictures the report shows. With
several seed runs (`train.seeds`), `seeds/front` (R, N) int16: each run's front sprite per crop
(attribute `runs_json`: the runs' seeds and losses, the kept one marked).
"""

from __future__ import annotations

import h5py
from tqdm import tqdm

from pipeline.core.store import write_stage

NAME = "decompose"
DEPS = ("ingest", "train")
PARAMS = ("decompose",)
VERSION = 3   # 2: instance_fg; 3: the record of the model interface (runner-up, values, pictures, prototypes)


def run(ctx) -> None:
    import torch   # here, not at the top: see stages/train.py

    import json

    import numpy as np

    from pipeline.models.device import pick_device, set_threads
    from pipeline.models.layers import front_layer
    from pipeline.models.record_io import RecordWriter
    from pipeline.models.trained import load_trained

    device = pick_device(ctx.config.train.device)
    set_threads(ctx.config.train.threads)
    model, attrs = load_trained(ctx.upstream("train"), device)
    batch = ctx.config.decompose.batch_size
    with h5py.File(ctx.upstream("ingest"), "r") as src, write_stage(ctx.output, ctx.meta) as f:
        crops = src["crops"]
        n = crops.shape[0]
        writer = RecordWriter(f, n, model)

        def batches(desc: str):
            """(first crop id, crops (B, C, S, S) in [0, 1] on the device), with a progress bar."""
            with tqdm(total=n, desc=desc, unit="crop", disable=not ctx.progress, mininterval=0.5) as bar:
                for lo in range(0, n, batch):
                    x = torch.from_numpy(crops[lo:lo + batch]).to(device).float().div_(255)
                    yield lo, x
                    bar.update(len(x))

        for lo, x in batches("decompose"):
            writer.add(lo, model.decompose_batch(x))
        writer.close()
        if "seeds_json" in attrs:   # every seed run explains the crops too: the report compares them (agreement)
            runs = json.loads(attrs["seeds_json"])
            fronts = f.create_dataset("seeds/front", shape=(len(runs), n), dtype=np.int16)
            f["seeds"].attrs["runs_json"] = attrs["seeds_json"]
            for r, run in enumerate(runs):
                if run["kept"]:         # the model just decomposed
                    fronts[r] = f["front"][()]
                    continue
                other, _ = load_trained(ctx.upstream("train"), device, weights=f"seeds/run{r}")
                for lo, x in batches(f"decompose, seed run {r + 1}"):
                    rec = other.decompose_batch(x)
                    sprite, occlusion = rec.sprite.cpu().numpy(), rec.occlusion.cpu().numpy()
                    fronts[r, lo:lo + len(x)] = sprite[np.arange(len(x)), front_layer(sprite, occlusion)]
    with h5py.File(ctx.output, "r") as f:
        err = f["error"][()]
        front = f["front"][()]
        K = int(f.attrs["sprites"])
    used = len(set(front[front >= 0].tolist()))
    ctx.log(f"decompose: {n} crops, mean reconstruction error {err.mean():.5f}, {used} of {K} sprites used")
