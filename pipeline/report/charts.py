"""Inline SVG charts of the report's first page: the training loss and the sprites' usage (their
geometry only; `templates/_charts.html` draws them)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from pipeline.report.numbers import fmt_number

__all__ = ["loss_chart", "usage_chart"]


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def loss_chart(steps: Sequence[float], losses: Sequence[float], width: int = 560, height: int = 220,
               max_points: int = 400) -> dict[str, Any] | None:
    """Geometry of the training-loss line chart for `_charts.html` (None without history)."""
    pts = [(float(s), float(v)) for s, v in zip(steps, losses) if math.isfinite(v)]
    if not pts:
        return None
    if len(pts) > max_points:
        stride = len(pts) / max_points
        pts = [pts[int(i * stride)] for i in range(max_points)] + [pts[-1]]
    left, right, top, bottom = 64, 16, 12, 40
    x0, x1 = pts[0][0], max(pts[-1][0], pts[0][0] + 1)
    ys = [v for _, v in pts]
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5 * abs(y0 or 1), y1 + 0.5 * abs(y1 or 1)
    pad = (y1 - y0) * 0.05
    y0, y1 = max(0.0, y0 - pad) if y0 >= 0 else y0 - pad, y1 + pad
    sx = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)  # noqa: E731
    sy = lambda y: top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)  # noqa: E731
    return {
        "width": width, "height": height, "left": left, "right": width - right, "top": top,
        "bottom": height - bottom,
        "points": " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts),
        "xticks": [{"pos": round(sx(t), 1), "label": f"{t:,.0f}"} for t in _ticks(x0, x1) if float(t).is_integer()],
        "yticks": [{"pos": round(sy(t), 1), "label": fmt_number(t, 3)} for t in _ticks(y0, y1)],
        "last": {"x": round(sx(pts[-1][0]), 1), "y": round(sy(pts[-1][1]), 1), "label": fmt_number(pts[-1][1], 4)},
        "single": len(pts) == 1,
    }


def usage_chart(counts: Sequence[int], colours: Sequence[str], hrefs: Sequence[str], height: int = 220,
                max_width: int = 900) -> dict[str, Any]:
    """Geometry of the sprite-usage bar chart: one bar per sprite, linked to its page."""
    K = len(counts)
    left, top, bottom = 48, 12, 40
    bar = max(4, min(36, (max_width - left - 8) // max(K, 1)))
    width = left + bar * K + 8
    top_count = max(max(counts, default=0), 1)
    inner = height - top - bottom
    bars = []
    for k, c in enumerate(counts):
        h = inner * c / top_count
        bars.append({"x": left + k * bar + 1, "y": round(top + inner - h, 1), "w": bar - 2, "h": round(h, 1),
                     "colour": colours[k], "href": hrefs[k], "count": c, "k": k,
                     "label": str(k) if K <= 40 or k % 5 == 0 else ""})
    return {"width": width, "height": height, "left": left, "top": top, "bottom": height - bottom, "bars": bars,
            "yticks": [{"pos": round(top + inner * (1 - t / top_count), 1), "label": f"{t:,.0f}"}
                       for t in _ticks(0, top_count) if float(t).is_integer()]}
