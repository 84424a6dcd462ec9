"""``gangplank-runs plot``: the curves of runs over the epochs, in the terminal or as an image.

The terminal chart is plotext's (pure Python, no dependencies); ``--output`` draws the same
lines with matplotlib, an optional extra, imported only then. One line per run and metric,
epochs on x; a non-finite value leaves a gap in its line (not a spike to infinity). Lines are told
apart by colour in a terminal and by marker character everywhere, with a legend below the
chart; a terminal whose encoding cannot show box drawing gets the frame in ASCII.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from gangplank_sidecar.runs.db import RunRow
from gangplank_sidecar.runs.style import Cell, Painter

MARKERS = "*+ox#@"
COLORS = [
    "light_blue",
    "light_green",
    "light_red",
    "light_cyan",
    "light_magenta",
    "light_yellow",
]  # plotext's first six
_BOX = str.maketrans("┌┐└┘├┤┬┴┼─│", "+++++++++-|")
FORMATS = (".png", ".svg")
INSTALL = "pip install 'gangplank-sidecar[plot]'"


class PlotError(ValueError):
    """A chart that cannot be drawn as asked: one line on stderr, exit 2."""


@dataclass
class Line:
    """One run's metric: the epochs that measured it, a non-finite value as NaN."""

    run: str
    metric: str
    label: str
    epochs: list[int]
    values: list[float]


def default_metrics(runs: list[RunRow]) -> list[str]:
    """The losses (every key with ``loss`` in its name) when there are any, else every key."""
    keys = sorted({k for r in runs for k in r.keys})
    losses = [k for k in keys if "loss" in k.lower()]
    return losses or keys


def lines(runs: list[RunRow], metrics: list[str]) -> list[Line]:
    """One line per run and metric with a finite value; the label names the run only when there are several."""
    out = []
    for r in runs:
        for key in metrics:
            points = [(e, v[key] if math.isfinite(v[key]) else math.nan) for e, v in sorted(r.rows.items()) if key in v]
            if any(not math.isnan(v) for _, v in points):
                label = f"{r.run} {key}" if len(runs) > 1 else key
                out.append(Line(r.run, key, label, [e for e, _ in points], [v for _, v in points]))
    if not out:
        raise PlotError(
            f"no finite values of {', '.join(metrics)} in run{'s' if len(runs) > 1 else ''} "
            f"{', '.join(r.run for r in runs)}"
        )
    if len(out) > len(MARKERS):
        raise PlotError(f"{len(out)} lines are too many to tell apart: at most {len(MARKERS)} (choose with --metric)")
    return out


def _ticks(first: int, last: int, most: int = 8) -> list[int]:
    step = max(1, math.ceil((last - first) / (most - 1)))
    return list(range(first, last + 1, step))


def y_label(chart: list[Line]) -> str:
    """The metric's name when the chart has one, else ``value``."""
    metrics = {line.metric for line in chart}
    return metrics.pop() if len(metrics) == 1 else "value"


def title(runs: list[RunRow]) -> str:
    return runs[0].run if len(runs) == 1 else f"{len(runs)} runs"


def terminal(chart: list[Line], heading: str, width: int, height: int, unicode: bool, paint: Painter) -> str:
    """The chart as text, then a legend line: ``* loss  + val_loss``."""
    import plotext

    figure = plotext.figure
    figure.clear()
    figure.plot_size(width, height)
    figure.theme("simple")
    for i, line in enumerate(chart):
        kept = [
            (e, v, k > 0 and math.isnan(line.values[k - 1]))
            for k, (e, v) in enumerate(zip(line.epochs, line.values))
            if not math.isnan(v)
        ]
        signal = figure.signal([e for e, _, _ in kept], [v for _, v, _ in kept], marker=MARKERS[i])
        signal.lines()
        for index, (_, _, after_gap) in enumerate(kept):
            if after_gap:
                signal.line(index, active=False)
        figure.draw(signal)
    epochs = sorted({e for line in chart for e in line.epochs})
    figure.ruler("x").ticks(_ticks(epochs[0], epochs[-1]))
    figure.title(heading)
    figure.label("epoch", axis="x")
    figure.label(y_label(chart), axis="y")
    text = figure.build().string(colorless=not paint.on)
    figure.clear()
    if not unicode:
        text = text.translate(_BOX)
    text = "\n".join(row.rstrip() for row in text.splitlines())
    legend = "  ".join(paint(Cell(f"{MARKERS[i]} {line.label}", COLORS[i])) for i, line in enumerate(chart))
    return f"{text}\n{legend}\n"


def image(chart: list[Line], heading: str, path: Path) -> None:
    """The same lines with matplotlib, as PNG or SVG (by the file's suffix)."""
    if path.suffix.lower() not in FORMATS:
        raise PlotError(f"--output: {path.name}: expected a .png or .svg file")
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise PlotError(f"--output needs matplotlib, an optional extra: {INSTALL}") from None
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    for line in chart:
        axes.plot(line.epochs, line.values, marker="o", markersize=3, label=line.label)
    axes.set_xlabel("epoch")
    axes.set_ylabel(y_label(chart))
    axes.set_title(heading)
    locator = axes.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # the default AutoLocator is one
        locator.set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend()
    try:
        figure.savefig(path)
    except OSError as exc:
        raise PlotError(f"--output: cannot write {path}: {exc.strerror or exc}") from None
