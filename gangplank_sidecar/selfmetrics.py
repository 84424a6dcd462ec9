"""The sidecar's own health, as gangplank_sidecar_* metrics in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SelfMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.lines = Counter("gangplank_sidecar_lines", "Lines read, by the format that recognised them", ["format"], registry=r)
        self.parse_errors = Counter("gangplank_sidecar_parse_errors", "Lines that looked like a known format but could not be parsed", registry=r)
        self.pushes = Counter("gangplank_sidecar_pushes", "Pushes to the Pushgateway, by result", ["result"], registry=r)
        self.push_duration = Histogram(
            "gangplank_sidecar_push_duration_seconds",
            "Time taken by one push to the Pushgateway",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.last_push_success = Gauge(
            "gangplank_sidecar_last_push_success_timestamp_seconds", "When the last push succeeded (Unix time)", registry=r
        )
        self.pending = Gauge("gangplank_sidecar_pending_snapshots", "Grouping keys whose latest state is not delivered yet", registry=r)
        for result in ("success", "failure"):
            self.pushes.labels(result)
