"""Model and optimiser state in HDF5 (never pickles): nested dicts of tensors ↔ groups of datasets.

Tensors become datasets at their path ("model/encoder.trunk.0.weight"); every other leaf (ints,
floats, strings, lists of them) is kept in one JSON attribute `json` of the group, with the tensor
paths listed there too so the structure (dict keys of any type) comes back exactly.
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np
import torch

__all__ = ["save_tree", "load_tree"]


def _encode(obj: Any, group: h5py.Group, path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(group)}"
        arr = obj.detach().cpu()
        group.create_dataset(name, data=arr.numpy() if arr.dtype != torch.bfloat16 else arr.float().numpy())
        return {"__tensor__": name, "dtype": str(arr.dtype).replace("torch.", "")}
    if isinstance(obj, np.ndarray):
        name = f"t{len(group)}"
        group.create_dataset(name, data=obj)
        return {"__array__": name}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, group, path), _encode(v, group, path)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_encode(v, group, path) for v in obj], "tuple": isinstance(obj, tuple)}
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    return obj


def _decode(obj: Any, group: h5py.Group, device) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return torch.from_numpy(np.asarray(group[obj["__tensor__"]][()])).to(getattr(torch, obj["dtype"])).to(device)
        if "__array__" in obj:
            return group[obj["__array__"]][()]
        if "__dict__" in obj:
            return {_decode(k, group, device): _decode(v, group, device) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_decode(v, group, device) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
    return obj


def save_tree(group: h5py.Group, tree: Any) -> None:
    group.attrs["json"] = json.dumps(_encode(tree, group, ""))


def load_tree(group: h5py.Group, device="cpu") -> Any:
    return _decode(json.loads(group.attrs["json"]), group, device)
