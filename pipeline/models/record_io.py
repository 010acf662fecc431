"""decompose.h5 from a model's `Record`s, streamed batch by batch (the same layout for every kind).

Per crop (first axis = crop id): `sprite` (N, L) int16 (−1 = empty); `front` (N,) int16, the
front-most non-empty layer's sprite (−1 if every layer is empty); `runner_up` (N, L) int16 and
`layer_margin` (N, L) float32 (the best other sprite of each layer and its extra cost);
`background` (N,) int16 (−1 = none); `error`, `cost`, `margin` (N,) float32; `occlusion`
(N, L, L) uint8; `params/<name>` (N, L, P) float32; `values/<column>` (N, L) float64 (readable
transformation values; attribute `order` on `values` lists the columns in order); `recon`
(N, C, S, S) uint8; `semantic`, `instance`, `instance_fg` (N, S, S) uint8; `aligned`
(N, C+1, S, S) uint8, the front layer's sprite as placed (colour + alpha: the gallery cards).
For a sample of crops (`sample/ids`, evenly spread, at most `SAMPLE`): `sample/layers`
(R, L, C+1, S, S) and `sample/backdrop` (R, C, S, S) uint8 (the reconstructions page).
The model's bank: `prototypes/colours` (K, C, s, s), `prototypes/masks` (K, 1, s, s),
`prototypes/backgrounds` (M, C, S, S) uint8. Attributes: `sprites`, `layers`, `count`, `kind`,
`model_json` (the model's `summary()`).
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import torch

from pipeline.core.sample import spread_ids
from pipeline.models.base import Model, Record, front_layer

__all__ = ["SAMPLE", "RecordWriter", "record_arrays"]

SAMPLE = 256   # crops whose every layer is kept for the reconstructions page (report.reconstructions ≤ this)


def _uint8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def record_arrays(rec: Record) -> dict[str, np.ndarray]:
    """The per-crop arrays of one batch, as stored."""
    out = {
        "sprite": rec.sprite.short(), "runner_up": rec.runner_up.short(), "layer_margin": rec.layer_margin.float(),
        "background": rec.background.short(), "error": rec.error.float(), "cost": rec.cost.float(),
        "margin": rec.margin.float(), "occlusion": rec.occlusion.to(torch.uint8),
        "semantic": rec.semantic.to(torch.uint8), "instance": rec.instance.to(torch.uint8),
        "instance_fg": rec.instance_fg.to(torch.uint8),
    }
    arrays = {k: v.cpu().numpy() for k, v in out.items()}
    arrays["recon"] = _uint8(rec.recon)
    arrays.update({f"params/{k}": v.float().cpu().numpy() for k, v in rec.params.items()})
    arrays.update({f"values/{k}": np.asarray(v, dtype=np.float64) for k, v in rec.values.items()})
    layer = front_layer(arrays["sprite"], arrays["occlusion"])
    rows = np.arange(len(layer))
    arrays["front"] = arrays["sprite"][rows, layer]
    arrays["aligned"] = _uint8(rec.layers[torch.from_numpy(rows), torch.from_numpy(layer)])
    return arrays


class RecordWriter:
    """Writes decompose.h5's datasets into the open file `f` as batches arrive."""

    def __init__(self, f: h5py.File, n: int, model: Model):
        self.f, self.n = f, n
        self.sample = spread_ids(n, SAMPLE)
        self.datasets: dict[str, h5py.Dataset] = {}
        self.value_order: list[str] = []
        bank = model.prototype_bank()
        for name in ("colours", "masks", "backgrounds"):
            arr = getattr(bank, name)
            if arr is not None:
                f.create_dataset(f"prototypes/{name}", data=arr)
        summary = model.summary()
        f.attrs.update({"sprites": summary["sprites"], "layers": summary["layers"], "count": n,
                        "kind": summary["kind"], "model_json": json.dumps(summary)})

    def _dataset(self, key: str, arr: np.ndarray, compress: bool = False) -> h5py.Dataset:
        if key not in self.datasets:
            n = self.n if not key.startswith("sample/") else len(self.sample)
            chunk = (max(1, min(n, (1 << 20) // max(1, arr[0].nbytes))),) + arr.shape[1:]
            self.datasets[key] = self.f.create_dataset(key, shape=(n,) + arr.shape[1:], dtype=arr.dtype, chunks=chunk,
                                                       compression="lzf" if compress else None)
        return self.datasets[key]

    def add(self, lo: int, rec: Record) -> None:
        """The batch of crops lo … lo + B − 1."""
        arrays = record_arrays(rec)
        for key, arr in arrays.items():
            self._dataset(key, arr, compress=key == "aligned")[lo:lo + len(arr)] = arr
            if key.startswith("values/") and key[7:] not in self.value_order:
                self.value_order.append(key[7:])
        B = len(arrays["sprite"])
        hit = np.nonzero((self.sample >= lo) & (self.sample < lo + B))[0]
        if len(hit):
            rows = torch.from_numpy(self.sample[hit] - lo)
            self._dataset("sample/layers", _uint8(rec.layers[:1]), True)[hit[0]:hit[-1] + 1] = _uint8(rec.layers[rows])
            if rec.backdrop is not None:
                self._dataset("sample/backdrop", _uint8(rec.backdrop[:1]), True)[hit[0]:hit[-1] + 1] = _uint8(rec.backdrop[rows])

    def close(self) -> None:
        self.f.create_dataset("sample/ids", data=self.sample)
        if "values" in self.f:
            self.f["values"].attrs["order"] = json.dumps(self.value_order)
