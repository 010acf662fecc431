"""decompose: explain every crop with the trained model → cache/decompose.h5.

The model's `decompose_batch` gives one `Record` per batch (`pipeline.models.base`); the layout
of decompose.h5 is in `pipeline.models.record_io`: per crop the sprite of each layer, the
runner-up and margins, background, occlusion, transformation parameters and readable values,
reconstruction, error, semantic and instance masks, and the pictures the report shows.
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

    from pipeline.models.device import pick_device, set_threads
    from pipeline.models.record_io import RecordWriter
    from pipeline.models.trained import load_trained

    device = pick_device(ctx.config.train.device)
    set_threads(ctx.config.train.threads)
    model, _ = load_trained(ctx.upstream("train"), device)
    batch = ctx.config.decompose.batch_size
    with h5py.File(ctx.upstream("ingest"), "r") as src, write_stage(ctx.output, ctx.meta) as f:
        crops = src["crops"]
        n = crops.shape[0]
        writer = RecordWriter(f, n, model)
        with tqdm(total=n, desc="decompose", unit="crop", disable=not ctx.progress, mininterval=0.5) as bar:
            for lo in range(0, n, batch):
                x = torch.from_numpy(crops[lo:lo + batch]).to(device).float().div_(255)
                writer.add(lo, model.decompose_batch(x))
                bar.update(len(x))
        writer.close()
    with h5py.File(ctx.output, "r") as f:
        err = f["error"][()]
        front = f["front"][()]
        K = int(f.attrs["sprites"])
    used = len(set(front[front >= 0].tolist()))
    ctx.log(f"decompose: {n} crops, mean reconstruction error {err.mean():.5f}, {used} of {K} sprites used")
