"""The end-of-stream summary: what a person wants to see when no Pushgateway is set."""

from __future__ import annotations

from gangplank_sidecar.aggregation.state import FINISHED_KEPT, RunState
from gangplank_sidecar.directions import lower_is_better
from gangplank_sidecar.sparkline import UNICODE, curve_lines
from gangplank_sidecar.system.sampler import Totals

MAX_METRICS_SHOWN = 50  # per run: the summary of a run with thousands of keys stays readable and bounded


def _number(value: float) -> str:
    return f"{value:.6g}"


def _system(totals: Totals) -> str:
    """Peak memory, mean CPU and mean GPU over the system samples (what was measured of them)."""
    parts = []
    if totals.peak_memory is not None:
        parts.append(f"peak memory {totals.peak_memory / 2**20:.1f} MiB")
    for what, values in (("CPU", totals.cpu), ("GPU", totals.gpu)):
        mean = Totals.mean(values)
        if mean is not None:
            parts.append(f"mean {what} {mean:.1%}")
    return (
        f"gangplank-sidecar: system ({totals.samples} samples): {', '.join(parts) or 'no CPU, memory or GPU measured'}"
    )


def summarize(runs: list[RunState], system: Totals | None = None, dropped: int = 0, levels: str = UNICODE) -> str:
    """Per run: epochs, elapsed time, status, the last and best value and the curve of each metric; then the system.

    ``dropped``: the earliest finished runs that the store no longer keeps (``Store.dropped``);
    ``levels``: the sparklines' characters (``sparkline.levels_for`` the output's encoding).
    """
    tail = [_system(system)] if system is not None else []
    if not runs:
        return "\n".join(["gangplank-sidecar: no training or evaluation records seen", *tail]) + "\n"
    lines: list[str] = []
    if dropped:
        lines.append(
            f"gangplank-sidecar: {dropped} earlier run{'s' if dropped != 1 else ''} not shown (only the last "
            f"{FINISHED_KEPT} finished runs are kept)"
        )
    for s in runs:
        epochs = s.epoch or 0
        what = f"{epochs} epoch{'s' if epochs != 1 else ''}" if s.phase == "train" else "evaluate"
        took = f" in {s.elapsed:.1f} s" if s.elapsed is not None else ""
        lines.append(
            f"gangplank-sidecar: run {s.run} (job {s.job}, {s.phase}): {what}{took}, {s.status or 'no end record'}"
        )
        if s.metrics:
            width = min(max(len(k) for k in s.metrics), 40)
            lines.append(f"  {'metric':<{width}}  {'last':>12}  best")
            for key, value in sorted(s.metrics.items())[:MAX_METRICS_SHOWN]:
                best, epoch = s.best.get(key, (value, None))
                at = f" (epoch {epoch})" if epoch is not None and s.phase == "train" else ""
                direction = "min" if lower_is_better(key) else "max"
                lines.append(f"  {key:<{width}}  {_number(value):>12}  {_number(best)}{at} [{direction}]")
            curves = curve_lines(s.curves, {k: s.best[k][1] for k in s.curves if k in s.best}, levels)
            if curves:
                first = min(c.buckets[0].first for c in s.curves.values())
                last = max(c.buckets[-1].last for c in s.curves.values())
                lines.append(f"  curves over epochs {first}-{last}")
                lines.extend("  " + line for line in curves)
            if len(s.metrics) > MAX_METRICS_SHOWN:
                lines.append(
                    f"  ... {len(s.metrics) - MAX_METRICS_SHOWN} more metrics not shown (gangplank-runs show {s.run})"
                )
        for name in sorted(s.failed_checks):
            check = s.checks[name]
            lines.append(f"  check {check.code or '-'} {name}: {check.message}")
    return "\n".join([*lines, *tail]) + "\n"
