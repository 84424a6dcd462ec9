"""The sidecar's own health, as gangplank_sidecar_* metrics in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from gangplank_sidecar.parsers import FORMATS

LINE_FORMATS = (*FORMATS, "patterns", "other", "error")  # what a line can count as


class LineCounts:
    """Lines by format, parse errors, oversized lines and values beyond --max-series, as plain ints.

    The reading path adds to these for every line: an int is far cheaper than
    ``Counter.inc`` (a lock and a label lookup), and one reading thread at a time writes
    them, so a scrape reads whole values. A format is exported once it has counted a line.
    """

    def __init__(self) -> None:
        self.by_format = dict.fromkeys(LINE_FORMATS, 0)
        self.parse_errors = 0
        self.oversized = 0
        self.dropped_values = 0

    def collect(self) -> list[CounterMetricFamily]:
        lines = CounterMetricFamily(
            "gangplank_sidecar_lines", "Lines read, by the format that recognised them", labels=["format"]
        )
        for fmt, count in list(self.by_format.items()):
            if count:
                lines.add_metric([fmt], count)
        return [
            lines,
            CounterMetricFamily(
                "gangplank_sidecar_parse_errors",
                "Lines that looked like a known format but could not be parsed",
                value=self.parse_errors,
            ),
            CounterMetricFamily(
                "gangplank_sidecar_oversized_lines",
                "Lines longer than the longest parsed line: echoed, not parsed",
                value=self.oversized,
            ),
            CounterMetricFamily(
                "gangplank_sidecar_dropped_metric_values",
                "Metric values dropped because their run already had --max-series metric keys",
                value=self.dropped_values,
            ),
        ]


class SelfMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.lines = LineCounts()
        r.register(self.lines)
        self.pushes = Counter(
            "gangplank_sidecar_pushes", "Pushes to the Pushgateway, by result", ["result"], registry=r
        )
        self.push_duration = Histogram(
            "gangplank_sidecar_push_duration_seconds",
            "Time taken by one push to the Pushgateway",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.last_push_success = Gauge(
            "gangplank_sidecar_last_push_success_timestamp_seconds",
            "When the last push succeeded (Unix time)",
            registry=r,
        )
        self.pending = Gauge(
            "gangplank_sidecar_pending_snapshots", "Grouping keys whose latest state is not delivered yet", registry=r
        )
        for result in ("success", "failure"):
            self.pushes.labels(result)
