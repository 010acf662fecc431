"""Where the model runs: the torch device and the CPU threads."""

from __future__ import annotations

import torch

from pipeline.errors import SpritesError

__all__ = ["pick_device", "set_threads"]


def pick_device(name: str) -> torch.device:
    """train.device: auto (CUDA when present), cpu or cuda."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SpritesError("train.device = cuda but no CUDA GPU is visible: set train.device = auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads(threads: int) -> int:
    """train.threads: 0 keeps torch's default (all cores); returns the threads in use."""
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
