"""How the report writes numbers: as many digits as their interval supports, the same in every table and line."""

from __future__ import annotations

import math

SIGNIFICANT = 3
"""Significant digits of a number shown without an interval."""

MIN_FIT_POINTS = 10
"""Fewest (task, checkpoint) points for which the report shows the forgetting fits (a 3-parameter fit to fewer
says little); below it the page says there were too few and draws no fit."""


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def decimals_for(value: float, spread: float | None = None) -> int:
    """Decimals that show two significant digits of ``spread`` (an interval's width), or, without a spread (or a
    zero one), :data:`SIGNIFICANT` significant digits of ``value``."""
    if spread is not None and _finite(spread) and spread > 0:
        scale, digits = spread, 2
    else:
        scale, digits = abs(value), SIGNIFICANT
    if not _finite(scale) or scale == 0:
        return 2
    return max(0, digits - 1 - math.floor(math.log10(scale)))


def fixed(x: float, decimals: int) -> str:
    """``x`` with ``decimals`` decimals, never ``-0.00``; scientific beyond six decimals."""
    if not _finite(x):
        return "n/a"
    if decimals > 6:
        return f"{x:.1e}"
    text = f"{x:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def number_text(x: float | None) -> str:
    """A number on its own: :data:`SIGNIFICANT` significant digits."""
    return fixed(x, decimals_for(x)) if x is not None and _finite(x) else "n/a"


def percent_text(share: float) -> str:
    """A share as a whole percentage (``0.53`` -> ``53 %``), never ``-0 %``."""
    return f"{fixed(100 * share, 0)} %"


PROSE_DECIMALS = 6
"""Most decimals a number in a sentence gets (:func:`interval_text` with ``prose``): prose has no exponents."""


def interval_text(stat: dict | None, fmt: str | None = None, prose: bool = False) -> str:
    """``value [low, high]`` of a ``{value, ci_low, ci_high}`` statistic, to the digits the interval's width
    supports (``fmt``: a fixed format instead); the value alone without an interval (one seed), ``n/a`` without a
    value, ``exactly 0`` for a zero whose interval is zero too.  ``prose``: at most :data:`PROSE_DECIMALS`
    decimals and no exponent, and a statistic that is zero at that precision is written as such (``0 (below
    0.000001)``)."""
    if not stat or not _finite(stat.get("value")):
        return "n/a"
    value = float(stat["value"])
    low, high = stat.get("ci_low"), stat.get("ci_high")
    bounds = (float(low), float(high)) if _finite(low) and _finite(high) else None  # type: ignore[arg-type]
    if bounds is not None and value == bounds[0] == bounds[1] == 0:
        return "exactly 0"  # every resample (or seed) gave 0: no digits to choose, nothing to bound
    decimals = decimals_for(value, bounds[1] - bounds[0] if bounds else None)
    if prose and decimals > PROSE_DECIMALS:
        decimals = PROSE_DECIMALS
        if all(abs(x) < 0.5 * 10**-PROSE_DECIMALS for x in (value, *(bounds or ()))):
            return f"0 (below {10**-PROSE_DECIMALS:.{PROSE_DECIMALS}f})"

    def show(x: float) -> str:
        return fmt.format(x) if fmt is not None else fixed(x, decimals)

    if bounds is None:
        return show(value)
    return f"{show(value)} [{show(bounds[0])}, {show(bounds[1])}]"


def p_text(p: float | None) -> str:
    """A p or q value: two significant digits (``0.0005``, ``0.031``)."""
    return f"{p:.2g}" if p is not None and _finite(p) else "n/a"
