"""How the report writes a number with its interval (shared by every table and line of it)."""

from __future__ import annotations

import math


def interval_text(stat: dict | None, fmt: str = "{:.3f}") -> str:
    """``value [low, high]`` of a ``{value, ci_low, ci_high}`` statistic; the value alone without an interval
    (one seed), ``n/a`` without a value."""
    if not stat or stat.get("value") is None:
        return "n/a"
    low, high = stat.get("ci_low", float("nan")), stat.get("ci_high", float("nan"))
    value = fmt.format(stat["value"])
    if low is None or high is None or math.isnan(low):
        return value
    return f"{value} [{fmt.format(low)}, {fmt.format(high)}]"
