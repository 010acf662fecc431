"""The uncertain queue: the crops most worth a human look, with the runner-up sprite beside the
chosen one. A crop's *doubt* combines how it ranks in the collection on each signal — a small
margin to the runner-up, a high reconstruction error (and, once several seeds are trained, a low
agreement): doubt = 1 − Π (1 − p_s), p_s its percentile on signal s (1 = the most
doubtful crop of the collection on that signal). So a crop at the top on any one signal ranks high,
and one high on several ranks higher still.

Agreement enters as itself, p = 1 − agreement, not as a percentile: it is already a share on an
absolute scale (of companions kept, pipeline.trust.stability), and most crops tie at 1, so its
percentile would put every crop that lost one companion in one run above nine tenths of the
collection. (On 600 glyphs letters with 8 planted mixes of two letters and 3 seeds, the
percentile ranked the mixes 3rd to 46th, the share 2nd to 38th, the crops between them mostly
letters the model put with another letter.)
"""

from __future__ import annotations

import numpy as np

from pipeline.models.layers import front_layer

__all__ = ["QUEUE", "percentile", "doubt_scores", "front_runner_up"]

QUEUE = 200     # crops listed on the uncertain page


def percentile(values: np.ndarray) -> np.ndarray:
    """(N,) → (N,) in [0, 1]: the share of the other crops with a smaller value (ties share a rank)."""
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return np.zeros(len(v))
    order = np.sort(v)
    return np.searchsorted(order, v, side="left") / (len(v) - 1)


def doubt_scores(margin: np.ndarray, error: np.ndarray, agreement: np.ndarray | None = None) -> np.ndarray:
    """(N,) doubt in [0, 1] (see the module docstring). An infinite margin (no other choice) is no doubt."""
    m = np.asarray(margin, np.float64)
    m = np.where(np.isfinite(m), m, np.nanmax(np.where(np.isfinite(m), m, -np.inf), initial=0.0) + 1.0)
    signals = [percentile(-m), percentile(error)]
    if agreement is not None:
        signals.append(1.0 - np.clip(np.asarray(agreement, np.float64), 0.0, 1.0))
    keep = np.ones(len(m))
    for p in signals:
        keep *= 1.0 - p
    return 1.0 - keep


def front_runner_up(sprite: np.ndarray, runner_up: np.ndarray, occlusion: np.ndarray) -> np.ndarray:
    """(N,) the runner-up sprite of each crop's front layer (−1: the empty sprite, or none)."""
    layer = front_layer(sprite, occlusion)
    return runner_up[np.arange(len(layer)), layer]
