"""Numbers and durations written for people in the report's pages and logs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["fmt_number", "fmt_duration"]


def fmt_number(value: Any, digits: int = 4) -> str:
    """Numbers for people, never in e-notation unless tiny: 0.000754 → '0.00075' (digits=2),
    12345 → '12,345', 3.14159 → '3.14', nan → '–'."""
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    v = float(value)
    if not math.isfinite(v):
        return "–"
    if v == 0:
        return "0"
    if abs(v) >= 1:
        return f"{v:,.2f}"
    if abs(v) < 1e-8:
        return f"{v:.{max(digits - 1, 0)}e}"
    decimals = digits - 1 - math.floor(math.log10(abs(v)))
    return f"{v:.{decimals}f}".rstrip("0").rstrip(".")


def fmt_duration(seconds: float) -> str:
    s = float(seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
