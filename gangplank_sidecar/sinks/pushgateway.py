"""Pushes the latest state of every series to a Pushgateway from a background thread.

The reading path only bumps the store's version and sets this sink's own wake-up event (a
store watcher: the reading thread never waits on a lock of ours, nor we on the store's); this
worker wakes up, snapshots what changed and PUTs each (job, phase) group whole. The store
keeps one series per grouping key, so however long the gateway is away there is at most one
pending snapshot per key, and records that arrive during a push or an outage coalesce into
the next one.
A failed round is retried with capped exponential backoff and jitter; changes do not
cut a backoff short, so a dead gateway costs one attempt per backoff, not one per line.
A series the store has forgotten (the node agent's deleted pods) has its group deleted.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, default_handler, generate_latest
from prometheus_client.registry import Collector

from gangplank_sidecar.aggregation.state import Key, RunState, Store
from gangplank_sidecar.delivery import Retry
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.sinks.families import Families, run_families

SELF_PUSH_EVERY = 10.0
FINAL_ATTEMPT = 1.0  # the final flush always gets one attempt of at least this long
_PLAIN = re.compile(r"[A-Za-z0-9_:.~-]+\Z")


def _segment(name: str, value: str) -> str:
    if _PLAIN.match(value) and value.strip("."):
        return f"{name}/{quote(value, safe='')}"
    return f"{name}@base64/{base64.urlsafe_b64encode(value.encode()).decode() or '='}"


def group_path(job: str, grouping_key: dict[str, str]) -> str:
    """``/metrics/job/<job>/<name>/<value>...``; any value that is not plain goes in base64.

    prometheus-client sends ``.``, ``..``, ``@`` and non-ASCII as they are; the gateway
    answers dot segments with a redirect to another group, so we encode all of these.
    """
    segments = [_segment("job", job), *(_segment(k, v) for k, v in sorted(grouping_key.items()))]
    return "/metrics/" + "/".join(segments)


class Group(Protocol):
    """Another source of a whole group ``{job, phase, --labels}`` (system metrics); read-only."""

    @property
    def phase(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def registry(self) -> Collector: ...


@dataclass
class _Item:
    """One group to deliver: what the worker needs to push it and to tell the user about it."""

    key: Key
    version: int
    job: str
    phase: str
    registry: Collector
    epoch: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


class _Unrenderable(Collector):
    """A series whose families could not be built: its push fails (counted, retried) with the reason."""

    def __init__(self, error: Exception) -> None:
        self.error = f"cannot render the series: {error.__class__.__name__}: {error}"

    def collect(self) -> Iterator[Metric]:
        raise ValueError(self.error)


def _rendered(series: RunState) -> Collector:
    try:
        return Families(run_families(series))
    except Exception as exc:  # one bad series must not stop the worker nor the other groups
        return _Unrenderable(exc)


class PushgatewaySink:
    def __init__(
        self,
        store: Store,
        url: str,
        labels: dict[str, str],
        selfmetrics: SelfMetrics,
        report: Callable[[str], None],
        job: str | None = None,
        handler: Callable = default_handler,
        retry: Retry = Retry(),
        timeout: float = 5.0,
        on_failed: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.url = url
        self.labels = labels
        self.selfmetrics = selfmetrics
        self.report = report
        self.job = job
        self.handler = handler
        self.retry = retry
        self.timeout = timeout
        self.on_failed = on_failed
        self.groups: list[Group] = []
        self.last_error = ""
        self._delivered: dict[Key, int] = {}
        self._failures = 0
        self._stopping = threading.Event()
        self._wake = threading.Event()  # set by every change of the store or of a group; cleared before a round
        self._deadline = 0.0
        self._last_self_push = time.monotonic()  # our own metrics first go out with the data, or at the end
        self._thread = threading.Thread(target=self._run, name="pushgateway", daemon=True)
        if store.version:
            self._wake.set()  # changes from before the sink existed are pending too
        store.watchers.append(self.wake)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """The store or something in ``groups`` changed: push it soon (called per line: a flag, no I/O)."""
        if not self._wake.is_set():
            self._wake.set()

    def close(self, deadline: float) -> bool:
        """Stops after delivering the final state, trying until ``deadline`` (monotonic) and at least once."""
        flush_timeout = max(0.0, deadline - time.monotonic())
        self._deadline = time.monotonic() + flush_timeout
        self._stopping.set()
        self._wake.set()
        self._thread.join(max(flush_timeout, FINAL_ATTEMPT) + 1)
        return not self._pending()

    def hurry(self) -> None:
        """Ends the final flush after the attempt under way (a signal; safe in its handler)."""
        self._deadline = time.monotonic()

    def delivered_through(self) -> int:
        """The store version up to which every change has reached the gateway (what a checkpoint may claim)."""
        version = self.store.version
        behind = [
            self._delivered.get(s.key, 0) for s in self.store.snapshot() if s.version > self._delivered.get(s.key, 0)
        ]
        return min(behind, default=version)

    def assume_delivered(self) -> None:
        """Takes the store's state as delivered: a restarted sidecar rebuilt it from what it had pushed."""
        for series in self.store.snapshot():
            self._delivered[series.key] = series.version

    def delete(self, keys: list[Key]) -> None:
        """Groups to delete from the gateway though the store never held them (a node agent's dead pods).

        Call it before ``start``.
        """
        for k in keys:
            self._delivered.setdefault(k, 0)
        self._wake.set()

    def undelivered(self) -> list[str]:
        """The groups whose latest state has not reached the gateway, for the user to read."""
        return [
            " ".join(f"{k}={v}" for k, v in {"job": i.job, "phase": i.phase, **self.labels, **i.labels}.items())
            + (f" (epoch {i.epoch})" if i.epoch is not None else "")
            for i in self._pending()
        ]

    def _pending(self) -> list[_Item]:
        series = self.store.snapshot()
        items = [
            _Item(s.key, s.version, s.job, s.phase, _rendered(s), s.epoch, s.labels)
            for s in series
            if s.version > self._delivered.get(s.key, 0)
        ]
        job = self.store.job(self.job)
        items += [
            _Item(("", g.phase, ()), g.version, job, g.phase, g.registry)
            for g in self.groups
            if g.version > self._delivered.get(("", g.phase, ()), 0)
        ]
        return items

    def _forgotten(self) -> list[Key]:
        """RunState delivered once that the store no longer holds: their groups are to be deleted."""
        live = {s.key for s in self.store.snapshot()} | {("", g.phase, ()) for g in self.groups}
        return [key for key in self._delivered if key not in live]

    def _run(self) -> None:
        while True:
            if self._failures:
                self._stopping.wait(self.retry.delay(self._failures))
            else:
                self._wake.wait(max(self._last_self_push + SELF_PUSH_EVERY - time.monotonic(), 0))
            if self._stopping.is_set():
                break
            self._wake.clear()  # before the round's snapshot: a change from here on wakes the next one
            self._count(self._guarded_round(self.timeout, final=False))
        self._flush_final()

    def _guarded_round(self, timeout: float, final: bool) -> bool:
        """A round that cannot raise: an unexpected error counts as a failed push, retried like one."""
        try:
            return self._round(timeout, final)
        except Exception as exc:  # the worker must outlive anything one round meets
            self.last_error = f"{exc.__class__.__name__}: {exc}"
            self.selfmetrics.pushes.labels("failure").inc()
            return False

    def _count(self, ok: bool) -> None:
        """Reports a delivery that failed after its retries once, and its recovery once."""
        if ok:
            if self._failures > self.retry.push_retries:
                self.report(f"pushing to the Pushgateway at {self.url} again")
            self._failures = 0
            return
        self._failures += 1
        if self._failures == self.retry.push_retries + 1 and not self._stopping.is_set():
            groups = ", ".join(self.undelivered()) or "the sidecar's own metrics"
            then = "giving up (--strict)" if self.on_failed else "still trying in the background"
            self.report(
                f"cannot push to the Pushgateway at {self.url} after {self.retry.push_retries} retries "
                f"({self.last_error}): {groups} not delivered; {then}"
            )
            if self.on_failed:
                self.on_failed()

    def _flush_final(self) -> None:
        """Keeps pushing what is undelivered until it is all delivered or the deadline passes."""
        left, failures = max(self._deadline - time.monotonic(), FINAL_ATTEMPT), 0
        while not self._guarded_round(left, final=True):
            failures += 1
            until = time.monotonic() + self.retry.delay(failures)
            while time.monotonic() < min(until, self._deadline):  # in steps: ``hurry`` may bring the deadline closer
                time.sleep(0.05)
            left = self._deadline - time.monotonic()
            if left <= 0:
                return

    def _round(self, timeout: float, final: bool) -> bool:
        """Pushes every pending group (stopping at the first failure of the gateway), then our own metrics if due."""
        ok = True
        for key in self._forgotten():
            job, phase, labels = key
            if not self._send(job, {"phase": phase, **self.labels, **dict(labels)}, None, timeout):
                return False
            del self._delivered[key]
        for item in self._pending():
            if not self._push(item, timeout):
                ok = False
                if not isinstance(item.registry, _Unrenderable):
                    break  # the gateway failed: the next groups would fail too
        self.selfmetrics.pending.set(len(self._pending()))
        if ok and (final or time.monotonic() - self._last_self_push >= SELF_PUSH_EVERY):
            ok = self._push_self(timeout)
        return ok

    def _push(self, item: _Item, timeout: float) -> bool:
        ok = self._send(item.job, {"phase": item.phase, **self.labels, **item.labels}, item.registry, timeout)
        if ok:
            self._delivered[item.key] = item.version
        return ok

    def _push_self(self, timeout: float) -> bool:
        self._last_self_push = time.monotonic()
        return self._send(
            self.store.job(self.job), {"phase": "sidecar", **self.labels}, self.selfmetrics.registry, timeout
        )

    def _send(self, job: str, grouping_key: dict[str, str], registry: Collector | None, timeout: float) -> bool:
        """PUTs ``registry`` as the group, or DELETEs the group when there is none."""
        url = self.url + group_path(job, grouping_key)
        started = time.monotonic()
        try:
            data = generate_latest(registry) if registry is not None else None
            method, headers = (
                ("PUT", [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)]) if data is not None else ("DELETE", [])
            )
            self.handler(url=url, method=method, timeout=timeout, headers=headers, data=data or b"")()
        except Exception as exc:  # any failure of a push is counted and retried, never raised
            self.last_error = str(exc) or exc.__class__.__name__
            self.selfmetrics.push_duration.observe(time.monotonic() - started)
            self.selfmetrics.pushes.labels("failure").inc()
            return False
        self.selfmetrics.push_duration.observe(time.monotonic() - started)
        self.selfmetrics.pushes.labels("success").inc()
        self.selfmetrics.last_push_success.set(time.time())
        return True
