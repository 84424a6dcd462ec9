"""A metric's curve over the epochs in one line of text, for the summary and ``gangplank-runs show``.

People judge a run by the shape of its curves: one block per epoch (or per group of epochs
when there are more than ``WIDTH``, showing their mean), scaled from the metric's min to its
max, with the best epoch's column drawn as a marker (its height is known: the best is the min
or the max). A column with a non-finite value shows ``x``. A terminal whose encoding cannot
show the blocks gets the same curve in ASCII.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from gangplank_sidecar.curve import Curve

WIDTH = 40
UNICODE = "▁▂▃▄▅▆▇█"
ASCII = "_.-~^"
_MARK = {UNICODE: "●", ASCII: "*"}
NOT_FINITE = "x"


def levels_for(encoding: str | None) -> str:
    """The blocks when ``encoding`` can write them, else ASCII."""
    try:
        (UNICODE + _MARK[UNICODE]).encode(encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return ASCII
    return UNICODE


def sparkline(curve: Curve, best_epoch: int | None, levels: str = UNICODE, width: int = WIDTH) -> str:
    columns = curve.columns(width)
    low = min((b.low for b in columns if not math.isnan(b.low)), default=0.0)
    high = max((b.high for b in columns if not math.isnan(b.high)), default=0.0)
    top = len(levels) - 1
    out = []
    for b in columns:
        mean = b.mean
        if best_epoch is not None and b.first <= best_epoch <= b.last:
            out.append(_MARK[levels])
        elif math.isnan(mean):
            out.append(NOT_FINITE)
        else:
            out.append(levels[round((mean - low) / (high - low) * top) if high > low else top // 2])
    return "".join(out)


def _number(value: float) -> str:
    return f"{value:.4g}"


def curve_lines(
    curves: Mapping[str, Curve],
    best: Mapping[str, int | None],
    levels: str = UNICODE,
    width: int = WIDTH,
    mark: Callable[[str], str] = str,
) -> list[str]:
    """One line per metric with two values or more: ``key  sparkline  min 0.05  max 0.9  best @8``.

    ``mark`` draws the best epoch's marker (a colour), after the columns are padded.
    """
    shown = {key: c for key, c in sorted(curves.items()) if sum(b.size for b in c.buckets) > 1}
    if not shown:
        return []
    name = max(len(key) for key in shown)
    spark = max(len(c.columns(width)) for c in shown.values())
    lines = []
    for key, curve in shown.items():
        drawn = f"{sparkline(curve, best.get(key), levels, width):<{spark}}"
        line = f"{key:<{name}}  {drawn.replace(_MARK[levels], mark(_MARK[levels]))}"
        lows = [b.low for b in curve.buckets if not math.isnan(b.low)]
        if lows:
            high = max(b.high for b in curve.buckets if not math.isnan(b.high))
            line += f"  min {_number(min(lows))}  max {_number(high)}"
        if best.get(key) is not None:
            line += f"  best @{best[key]}"
        lines.append(line.rstrip())
    return lines
