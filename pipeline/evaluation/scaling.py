"""`sprites bench layers`: how a training step's time grows with the number of layers L, for each way
of choosing the sprites (the deep-sprites paper's complexity comparison, on a CPU).

One model shape for every row — 64×64 RGB, K = 6 sprites + the empty sprite, one background,
32-px sprites, predicted occlusion, a 4×4 encoder map (the scenes preset's crowded settings), batch
32 — and one training step timed exactly as `sprites bench speed` (zero_grad, forward, backward,
Adam; warm-up, then the median), for:

* exhaustive: all (K + 1)^L combinations, while they fit the exhaustive search's limit;
* greedy: one sweep, K + 1 candidates per layer, compared at full size (as the paper);
* greedy ¼: the same compared at a quarter of the side (`model.selection_downsample = 4`, the
  scenes preset's default at 64 px);
* predicted: the linear selection head, every sprite of every layer rendered once with gradient.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

from pipeline.errors import SpritesError

__all__ = ["LAYERS", "METHODS", "layers_bench", "format_layers_row", "format_summary"]

LAYERS = (1, 2, 3, 4, 6, 8, 10)
SPRITES = 6
SIZE = 64
# column → model keys on top of the shared ones
METHODS: dict[str, dict[str, Any]] = {
    "exhaustive": {"selection": "exhaustive", "selection_downsample": 1},
    "greedy": {"selection": "greedy", "greedy_iterations": 1, "selection_downsample": 1},
    "greedy ¼": {"selection": "greedy", "greedy_iterations": 1, "selection_downsample": 4},
    "predicted": {"selection": "predicted", "selection_downsample": 1, "greedy_iterations": 1},
}
SHARED = {"sprites": SPRITES, "empty_sprite": True, "background": True, "sprite_size": SIZE // 2,
          "occlusion": "predicted", "encoder_pool": 4, "reassign_redundant": 0.0}


def layers_bench(layers: tuple[int, ...] = LAYERS, threads: int = 0, batch: int = 32, steps: int = 3,
                 warmup: int = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time every (L, method) and log one table row per L as it finishes."""
    import torch
    from pipeline.evaluation.bench import SpeedCase, speed_case, unfit_reason
    from pipeline.models.device import set_threads
    if steps < 1 or warmup < 0 or batch < 1 or not layers or min(layers) < 1:
        raise SpritesError("--steps, --batch and every --layers must be at least 1, --warmup at least 0")
    n = set_threads(threads)
    result: dict[str, Any] = {"torch": torch.__version__, "threads": n, "cpus": os.cpu_count(), "batch": batch,
                              "steps": steps, "warmup": warmup, "sprites": SPRITES, "size": SIZE,
                              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": []}
    log(f"torch {torch.__version__}, {n} threads; training step (zero_grad + forward + backward + Adam), "
        f"batch {batch}, {SIZE}×{SIZE} RGB, K = {SPRITES} + empty; {warmup} warm-up + median of {steps}; ms per step")
    log(format_layers_header())
    for L in layers:
        row: dict[str, Any] = {"layers": L}
        for method, keys in METHODS.items():
            case = SpeedCase(f"L={L} {method}", "scenes", None, {**SHARED, **keys, "layers": L}, 3, SIZE, None,
                             f"{method} selection, L = {L}")
            if unfit_reason(case):      # exhaustive beyond its limit
                row[method] = None
                continue
            r = speed_case(case, batch=batch, steps=steps, warmup=warmup, decompose_steps=0)
            row[method] = r["s_per_iter"]
        result["rows"].append(row)
        log(format_layers_row(row))
    result.update(summary(result["rows"]))
    for line in format_summary(result):
        log(line)
    return result


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets' figures: predicted t(10) / t(2), the L from which predicted beats exhaustive, and
    predicted / greedy at each L."""
    by_l = {r["layers"]: r for r in rows}
    out: dict[str, Any] = {}
    if 2 in by_l and 10 in by_l:
        out["predicted_t10_over_t2"] = by_l[10]["predicted"] / by_l[2]["predicted"]
    line = [(r["layers"], r["predicted"]) for r in rows if r["layers"] >= 2]
    if len(line) >= 2:   # t(L) ≈ a + b·L from L = 2 on: less at the mercy of one noisy step than a ratio
        b, a = np.polyfit(*zip(*line), deg=1)
        out["predicted_fixed_s"], out["predicted_per_layer_s"] = float(a), float(b)
    faster = [r["layers"] for r in rows if r["exhaustive"] is not None and r["predicted"] < r["exhaustive"]]
    out["predicted_faster_than_exhaustive_at"] = faster
    out["predicted_over_greedy"] = {r["layers"]: r["predicted"] / r["greedy"] for r in rows}
    return out


def format_layers_header() -> str:
    return f"{'L':>3s} " + " ".join(f"{m:>11s}" for m in METHODS)


def format_layers_row(row: dict[str, Any]) -> str:
    cells = [f"{row[m] * 1000:11.0f}" if row[m] is not None else f"{'–':>11s}" for m in METHODS]
    return f"{row['layers']:3d} " + " ".join(cells)


def format_summary(result: dict[str, Any]) -> list[str]:
    lines = []
    if "predicted_t10_over_t2" in result:
        lines.append(f"predicted: t(10) / t(2) = {result['predicted_t10_over_t2']:.2f} (linear in L would be 5)")
    if "predicted_per_layer_s" in result:
        lines.append(f"predicted, least-squares line from L = 2: {result['predicted_fixed_s'] * 1000:.0f} ms + "
                     f"{result['predicted_per_layer_s'] * 1000:.0f} ms per layer (t(10) / t(2) ≤ 5 ⇔ the first term ≥ 0)")
    lines.append("predicted faster than exhaustive at L = "
                 + (", ".join(map(str, result["predicted_faster_than_exhaustive_at"])) or "none"))
    ratios = ", ".join(f"L={k}: {v:.2f}" for k, v in result["predicted_over_greedy"].items())
    lines.append(f"predicted / greedy (full size): {ratios}")
    return lines
