"""Stability across seeds: do the crops a sprite explains stay together when the model is trained
again from other seeds (`train.seeds = N`)?

Each other run's sprites are matched one-to-one to the kept run's by the Hungarian algorithm on
their co-assignment counts (how many crops the two sprites share; "no sprite" is a sprite of its
own), so the match uses the crops, not the pictures: two runs may draw one motif a little
differently yet explain the same crops. A crop *agrees* with a run when that run's sprite for it is
matched to its sprite in the kept run; its **agreement** is the share of the other runs it agrees
with (1 = every run puts it with the same crops), a sprite's **stability** the mean agreement of
its crops.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["match_sprites", "agreement"]


def match_sprites(kept: np.ndarray, other: np.ndarray, K: int) -> np.ndarray:
    """(N,) front sprites of the kept run and of another run (−1 = none) → (K + 1,) the kept run's
    sprite matched to each sprite of the other run, index k + 1 for sprite k, 0 for none (−1 = unmatched)."""
    counts = np.zeros((K + 1, K + 1), np.int64)
    np.add.at(counts, (np.asarray(kept) + 1, np.asarray(other) + 1), 1)
    rows, cols = linear_sum_assignment(-counts)
    out = np.full(K + 1, -2, np.int64)
    out[cols] = rows - 1
    return out


def agreement(fronts: np.ndarray, kept_run: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """fronts (R, N) each run's front sprite per crop, `kept_run` the row kept → (N,) agreement of
    each crop with the other runs and (K,) stability of each sprite of the kept run (nan: unused)."""
    kept = fronts[kept_run].astype(np.int64)
    others = [r for r in range(len(fronts)) if r != kept_run]
    agree = np.zeros(len(kept), np.float64)
    for r in others:
        mapped = match_sprites(kept, fronts[r], K)[fronts[r].astype(np.int64) + 1]
        agree += mapped == kept
    agree /= max(1, len(others))
    stability = np.full(K, np.nan)
    for k in range(K):
        mine = kept == k
        if mine.any():
            stability[k] = agree[mine].mean()
    return agree, stability
