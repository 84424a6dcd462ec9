"""Pull mode: ``/metrics`` for Prometheus to scrape, built from the same store as the pushes.

prometheus-client renders the page; this module only adds the collector over the run state,
the health endpoints and the server's lifetime.

The page is always the Prometheus text format 0.0.4, also to a scraper that prefers OpenMetrics
(Prometheus offers both and takes either). The weights histogram has negative bounds, and
OpenMetrics forbids a histogram with negative bounds to carry ``_sum`` (prometheus-client's parser
rejects it; it also wants ``_count`` and ``_sum`` together), while the design keeps ``_sum`` and
``_count`` exact on both paths: the text format, which the Pushgateway serves too, allows both.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from gangplank_sidecar.aggregation.state import Store
from gangplank_sidecar.errors import ConfigError
from gangplank_sidecar.sinks.families import merge, run_families

DEFAULT_HOST = "127.0.0.1"


def parse_address(value: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6]:PORT``; the host defaults to loopback."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, value
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen: bad address {value!r}: expected [HOST:]PORT")
    return host, int(port)


class StoreCollector(Collector):
    """Every series of the store, with job, phase, its stream's and the user's labels in each sample.

    A series that cannot be rendered is left out of that scrape (counted, the first reported),
    so one bad run never turns every scrape into an error.
    """

    def __init__(
        self,
        store: Store,
        labels: dict[str, str],
        report: Callable[[str], None] | None = None,
        errors: Counter | None = None,
    ) -> None:
        self.store = store
        self.labels = labels
        self.report = report
        self.errors = errors
        self._reported = False

    def collect(self) -> Iterator[Metric]:
        metrics: list[Metric] = []
        for s in self.store.snapshot():
            try:
                metrics.extend(run_families(s, {"job": s.job, "phase": s.phase, **self.labels, **s.labels}))
            except Exception as exc:  # a scrape must not fail for one series
                if self.errors is not None:
                    self.errors.inc()
                if not self._reported and self.report is not None:
                    self._reported = True
                    self.report(
                        f"--listen: run {s.run} (job {s.job}, {s.phase}) left out of /metrics: {exc} (further errors "
                        "are only counted)"
                    )
        return iter(merge(metrics))


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """The sidecar's stderr is the training log's: no access log there."""


def _app(metrics_app: Callable) -> Callable:
    def app(environ: dict, start_response: Callable) -> list[bytes]:
        if environ.get("PATH_INFO") in ("/-/healthy", "/-/ready"):
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"OK\n"]
        return metrics_app({**environ, "HTTP_ACCEPT": "text/plain"}, start_response)  # never OpenMetrics: see above

    return app


class ListenSink:
    """Binds at once (so that a port in use is a usage error) and serves until ``close``."""

    def __init__(
        self,
        address: str,
        store: Store,
        labels: dict[str, str],
        self_registry: CollectorRegistry,
        job: Callable[[], str],
        report: Callable[[str], None] | None = None,
    ) -> None:
        """``job`` names the job of the sidecar's own series (known once the first record came)."""
        host, port = parse_address(address)
        self.registry = registry = CollectorRegistry()
        errors = Counter(
            "gangplank_sidecar_listen_errors",
            "RunState left out of a /metrics page because they could not be rendered",
            registry=self_registry,
        )
        self.store = store
        registry.register(StoreCollector(store, labels, report, errors))
        registry.register(_Labelled(self_registry, lambda: {"job": job(), "phase": "sidecar", **labels}))
        server_class = _Server6 if ":" in host else _Server
        try:
            self.server: _Server = make_server(
                host, port, _app(make_wsgi_app(registry)), server_class, handler_class=_Quiet
            )
        except OSError as exc:
            raise ConfigError(f"--listen {address}: {exc.strerror or exc}") from None
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, name="listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, deadline: float | None = None) -> bool:
        """Stops serving at once: a scrape pulls, so nothing is left to deliver."""
        self.server.shutdown()
        self.server.server_close()
        return True

    def delivered_through(self) -> int:
        """A scrape reads the store itself: nothing is ever pending here."""
        return self.store.version


class _Labelled(Collector):
    """The sidecar's self-metrics with the labels of the push path's group {job, phase="sidecar"}."""

    def __init__(self, registry: CollectorRegistry, labels: Callable[[], dict[str, str]]) -> None:
        self.registry = registry
        self.labels = labels

    def collect(self) -> Iterator[Metric]:
        labels = self.labels()
        for family in self.registry.collect():
            family.samples = [s._replace(labels={**labels, **s.labels}) for s in family.samples]
            yield family
