"""decompose: explain every crop with the trained model → cache/decompose.h5.

Datasets (first axis = crop id): `sprite` (N, L) int16, the sprite in each layer (−1 = empty);
`front` (N,) int16, the front-most non-empty layer's sprite (−1 if every layer is empty);
`background` (N,) int16; `error` (N,) float32 reconstruction MSE; `cost` (N,) MSE + λ per
non-empty sprite; `margin` (N,) cost of the best alternative minus cost (small = ambiguous);
`occlusion` (N, L, L) uint8 (1 = row layer in front of column layer); `params/<name>` (N, L, P)
float32; `recon` (N, C, S, S) uint8; `semantic` (N, S, S) uint8 (0 background, k+1 = sprite k);
`instance` (N, S, S) uint8 (0 background, l+1 = layer l); `instance_fg` (N, S, S) uint8, the same
with background pixels given to the non-empty layer of closest colour (the papers' ARI-FG protocol).
"""

from __future__ import annotations

import h5py
import numpy as np
import torch
from tqdm import tqdm

from pipeline.models.sprites.compositor import instance_labels, nearest_layer_labels
from pipeline.models.fit import pick_device, set_threads
from pipeline.core.store import write_stage

NAME = "decompose"
DEPS = ("ingest", "train")
PARAMS = ("decompose",)
VERSION = 2   # 2: instance_fg


def decompose_batch(model, x: torch.Tensor) -> dict[str, np.ndarray]:
    """x (B, C, S, S) float in [0, 1] → the per-crop arrays of decompose.h5 for this batch."""
    d = model.decompose(x)
    K, L = model.K, model.L
    sprite = torch.where(d.choice >= K, -1, d.choice)                       # (B, L)
    inst = instance_labels(d.alphas, d.occlusion)                            # (B, S, S) 0 = background
    padded = torch.cat([torch.full_like(sprite[:, :1], -1), sprite], dim=1)   # (B, L+1), index by label
    sem = torch.gather(padded, 1, inst.flatten(1)).view_as(inst) + 1          # 0 = background
    # front-most non-empty layer: the one occluding the most other layers among non-empty ones
    nonempty = sprite >= 0
    occ = d.occlusion.permute(2, 0, 1)                                         # (B, L, L)
    depth = (occ * nonempty[:, None, :]).sum(2) + 1                            # layers it covers (+1)
    depth = torch.where(nonempty, depth, torch.zeros_like(depth))
    front = torch.gather(padded, 1, (depth.argmax(1, keepdim=True) + 1) * nonempty.any(1, keepdim=True))[:, 0]
    out = {
        "sprite": sprite.short(), "front": front.short(), "background": d.background.short(),
        "error": d.error.float(), "cost": d.cost.float(), "margin": d.margin.float(),
        "occlusion": (occ > 0.5).to(torch.uint8),
        "recon": (d.recon.clamp(0, 1) * 255).round().to(torch.uint8),
        "semantic": sem.to(torch.uint8), "instance": inst.to(torch.uint8),
        "instance_fg": nearest_layer_labels(inst, d.layers, x, nonempty).to(torch.uint8),
    }
    out.update({f"params/{k}": v.float() for k, v in d.params.items()})
    return {k: v.cpu().numpy() for k, v in out.items()}


def run(ctx) -> None:
    from stages.train import load_model
    device = pick_device(ctx.config.train.device)
    set_threads(ctx.config.train.threads)
    model, _ = load_model(ctx.project, device)
    batch = ctx.config.decompose.batch_size
    with h5py.File(ctx.upstream("ingest"), "r") as src, write_stage(ctx.output, ctx.meta) as f:
        crops = src["crops"]
        n = crops.shape[0]
        datasets = {}
        with tqdm(total=n, desc="decompose", unit="crop", disable=not ctx.progress, mininterval=0.5) as bar:
            for lo in range(0, n, batch):
                x = torch.from_numpy(crops[lo:lo + batch]).to(device).float().div_(255)
                arrays = decompose_batch(model, x)
                for key, arr in arrays.items():
                    if key not in datasets:
                        chunk = (max(1, min(n, (1 << 20) // max(1, arr[0].nbytes))),) + arr.shape[1:]
                        datasets[key] = f.create_dataset(key, shape=(n,) + arr.shape[1:], dtype=arr.dtype, chunks=chunk)
                    datasets[key][lo:lo + len(arr)] = arr
                bar.update(len(x))
        f.attrs.update({"sprites": model.K, "layers": model.L, "count": n})
    with h5py.File(ctx.output, "r") as f:
        err = f["error"][()]
        front = f["front"][()]
    used = len(set(front[front >= 0].tolist()))
    ctx.log(f"decompose: {n} crops, mean reconstruction error {err.mean():.5f}, {used} of {model.K} sprites used")
