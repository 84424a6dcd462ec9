"""Pushes the latest state of every series to a Pushgateway from a background thread.

The reading path only bumps the store's version; this worker wakes up, snapshots what
changed and PUTs each (job, phase) group whole, so records that arrive during a push
coalesce into the next one and a new run replaces the old run's series, stale keys too.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, push_to_gateway
from prometheus_client.exposition import default_handler

from gangplank_sidecar.aggregation.state import Series, Store
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.sinks.families import Families, families

SELF_PUSH_EVERY = 10.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


class PushgatewaySink:
    def __init__(
        self,
        store: Store,
        url: str,
        labels: dict[str, str],
        selfmetrics: SelfMetrics,
        report: Callable[[str], None],
        job: str | None = None,
        timeout: float = 5.0,
        handler: Callable = default_handler,
    ) -> None:
        self.store = store
        self.url = url
        self.labels = labels
        self.selfmetrics = selfmetrics
        self.report = report
        self.job = job
        self.timeout = timeout
        self.handler = handler
        self._delivered: dict[tuple[str, str], int] = {}
        self._stopping = threading.Event()
        self._failing = False
        self._last_self_push = 0.0
        self._thread = threading.Thread(target=self._run, name="pushgateway", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, flush_timeout: float) -> bool:
        """Stops after delivering the final state, trying for at most ``flush_timeout``."""
        self._deadline = time.monotonic() + flush_timeout
        self._stopping.set()
        with self.store.changed:
            self.store.changed.notify_all()
        self._thread.join(flush_timeout + self.timeout + 1)
        return not self._pending()

    def _pending(self) -> list[Series]:
        return [s for s in self.store.snapshot() if s.version > self._delivered.get(s.key, 0)]

    def _run(self) -> None:
        seen, backoff = 0, 0.0
        while not self._stopping.is_set():
            with self.store.changed:
                self.store.changed.wait_for(lambda: self.store.version != seen or self._stopping.is_set(), backoff or None)
                seen = self.store.version
            ok = all([self._push(s) for s in self._pending()])
            if time.monotonic() - self._last_self_push > SELF_PUSH_EVERY:
                ok = self._push_self() and ok
            backoff = 0.0 if ok else min(BACKOFF_MAX, max(BACKOFF_FIRST, backoff * 2)) * random.uniform(0.8, 1.2)
        self._flush_final()

    def _flush_final(self) -> None:
        """Keeps pushing what is undelivered until it is all delivered or the deadline passes."""
        backoff = BACKOFF_FIRST
        while True:
            ok = all([self._push(s) for s in self._pending()])
            ok = self._push_self() and ok
            left = self._deadline - time.monotonic()
            if ok or left <= 0:
                return
            time.sleep(min(backoff, left))
            backoff = min(BACKOFF_MAX, backoff * 2)

    def _push(self, series: Series) -> bool:
        registry = CollectorRegistry()
        registry.register(Families(families(series)))
        ok = self._send(series.job, {"phase": series.phase, **self.labels}, registry)
        if ok:
            self._delivered[series.key] = series.version
        self.selfmetrics.pending.set(len(self._pending()))
        return ok

    def _push_self(self) -> bool:
        self._last_self_push = time.monotonic()
        job = self.job or next((s.job for s in self.store.snapshot()), None) or "gangplank"
        return self._send(job, {"phase": "sidecar", **self.labels}, self.selfmetrics.registry)

    def _send(self, job: str, grouping_key: dict[str, str], registry: CollectorRegistry) -> bool:
        started = time.monotonic()
        try:
            push_to_gateway(
                self.url, job=job, registry=registry, grouping_key=grouping_key, timeout=self.timeout, handler=self.handler
            )
        except Exception as exc:  # noqa: BLE001 - any failure of a push is reported, never raised
            self.selfmetrics.pushes.labels("failure").inc()
            if not self._failing:
                self._failing = True
                self.report(f"cannot push to the Pushgateway at {self.url}: {exc}; retrying in the background")
            return False
        self.selfmetrics.push_duration.observe(time.monotonic() - started)
        self.selfmetrics.pushes.labels("success").inc()
        self.selfmetrics.last_push_success.set(time.time())
        if self._failing:
            self._failing = False
            self.report(f"pushing to the Pushgateway at {self.url} again")
        return True
