"""Stability across seeds: do the crops a sprite explains stay together when the model is trained
again from other seeds (`train.seeds = N`)?

A crop's **agreement** asks whether its companions — the other crops of its sprite in the kept run —
stay with it: for each other run, the share of them that run puts in the same sprite as the crop,
averaged over the other runs (1 = every run keeps it with all of them; a crop alone in its sprite
agrees by definition). It needs no matching of sprite numbers, and it is graded: a letter whose
sprite another run splits in two keeps about half its companions, a mixed crop that another run
sends to a foreign sprite keeps almost none (a 0/1 "same matched sprite" vote, with 3 seeds only
0, ½ or 1, tied a tenth of a glyphs collection at 0 whenever one run split a class).

A sprite's **stability** matches each other run's sprites one-to-one to the kept run's by the
Hungarian algorithm on their co-assignment counts ("no sprite" is a sprite of its own), so the
match uses the crops, not the pictures: it is the share of the sprite's crops that the other runs
put in its matched sprite. A split or a merge (one of the two merged sprites stays unmatched)
lowers it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["match_sprites", "agreement"]


def _counts(kept: np.ndarray, other: np.ndarray, K: int) -> np.ndarray:
    """(K + 1, K + 1) co-assignment counts, index k + 1 for sprite k and 0 for no sprite."""
    counts = np.zeros((K + 1, K + 1), np.int64)
    np.add.at(counts, (np.asarray(kept, np.int64) + 1, np.asarray(other, np.int64) + 1), 1)
    return counts


def match_sprites(kept: np.ndarray, other: np.ndarray, K: int) -> np.ndarray:
    """(N,) front sprites of the kept run and of another run (−1 = none) → (K + 1,) the kept run's
    sprite matched to each sprite of the other run, index k + 1 for sprite k, 0 for none (−2 = unmatched)."""
    return _matched(_counts(kept, other, K))


def _matched(counts: np.ndarray) -> np.ndarray:
    """:func:`match_sprites` from the co-assignment counts (K + 1, K + 1)."""
    rows, cols = linear_sum_assignment(-counts)
    out = np.full(len(counts), -2, np.int64)
    out[cols] = rows - 1
    return out


def agreement(fronts: np.ndarray, kept_run: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """fronts (R, N) each run's front sprite per crop, `kept_run` the row kept → (N,) agreement of
    each crop with the other runs and (K,) stability of each sprite of the kept run (nan: unused)."""
    kept = fronts[kept_run].astype(np.int64)
    others = [r for r in range(len(fronts)) if r != kept_run]
    size = np.bincount(kept + 1, minlength=K + 1)[kept + 1]                 # (N,) crops of each crop's sprite
    agree, matched = np.zeros(len(kept)), np.zeros(len(kept))
    for r in others:
        other = fronts[r].astype(np.int64)
        counts = _counts(kept, other, K)
        together = counts[kept + 1, other + 1]                              # (N,) the crop and its companions still with it
        agree += np.where(size > 1, (together - 1) / np.maximum(size - 1, 1), 1.0)
        matched += _matched(counts)[other + 1] == kept
    agree /= max(1, len(others))
    matched /= max(1, len(others))
    stability = np.full(K, np.nan)
    for k in range(K):
        mine = kept == k
        if mine.any():
            stability[k] = matched[mine].mean()
    return agree, stability
