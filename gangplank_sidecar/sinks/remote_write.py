"""Prometheus remote write: every epoch, evaluate and step record as samples at the record's time.

A Pushgateway keeps only the latest value and is scraped every 15-60 s; remote write keeps each
record's values with its own timestamp. The store's listener runs in the reading thread, so it only
turns a record into samples (the same families as the push path, plus a ``run`` label) and appends
them to each sink's bounded buffer; one worker per URL batches them (at most ``BATCH_SAMPLES``, at
most ``BATCH_AGE`` seconds old), POSTs a snappy-compressed ``WriteRequest`` and retries with the
--retry-backoff policy of every network sink on 5xx, 429 and network errors, in order, so that the
samples of one series always arrive in time order. A 4xx answer is final: the batch is dropped and
the server's message reported once.

The buffer is bounded twice: by samples (``max_buffered``: the oldest step records go first,
epoch records stay) and by an estimate of its memory (``max_bytes``: past it, the oldest
records of any kind go). Dropped entries are unlinked at once (the buffer is compacted once
they outnumber the live ones), so a receiver that is down never makes memory grow. Nothing
a record holds can stop a worker: an error is reported once, its samples counted as dropped.
A followed file's checkpoint passes a line only once its samples have left the buffer
(``delivered_through``), so a restart sends again what was still buffered.
"""

from __future__ import annotations

import collections
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import cramjam
from prometheus_client import CollectorRegistry, Counter, Gauge

from gangplank_sidecar import __version__
from gangplank_sidecar.aggregation.state import RunState
from gangplank_sidecar.delivery import PushError, Retry, TransportConfig
from gangplank_sidecar.sinks import remote_write_pb2 as pb
from gangplank_sidecar.sinks.families import run_families
from gangplank_sidecar.sinks.transport import Transport

BATCH_SAMPLES = 2000
BATCH_AGE = 1.0
MAX_BUFFERED = 100_000
MAX_BUFFERED_BYTES = 32 << 20
RECORD_BYTES, SAMPLE_BYTES = 240, 40  # what a buffered record and each of its samples hold (entry, tuples, floats)
SAMPLE_EVENTS = ("step", "epoch", "evaluate")
HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": f"gangplank-sidecar/{__version__}",
}

LabelSet = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class RecordSamples:
    """One record's samples: they share a timestamp; ``keys`` is interned across records."""

    time_ms: int
    step: bool
    keys: tuple[LabelSet, ...]
    values: tuple[float, ...]
    version: int = 0  # the store version of the change it came from


@dataclass(slots=True)
class _Entry:
    """A record in one sink's buffer; ``live`` turns False once it is taken or dropped."""

    at: float
    record: RecordSamples
    live: bool = True


class RemoteWriteMetrics:
    """gangplank_sidecar_remote_write_*, registered once for all URLs."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "gangplank_sidecar_remote_write_sent_samples",
            "Samples accepted by remote-write receivers",
            registry=registry,
        )
        self.dropped = Counter(
            "gangplank_sidecar_remote_write_dropped_samples",
            "Samples given up: overflow (buffer full, oldest step samples first), rejected (4xx), "
            "undelivered (at exit), "
            "error (a record or batch that could not be turned into a request)",
            ["reason"],
            registry=registry,
        )
        self.requests = Counter(
            "gangplank_sidecar_remote_write_requests", "Remote-write requests, by result", ["result"], registry=registry
        )
        self.pending = Gauge(
            "gangplank_sidecar_remote_write_pending_samples", "Samples buffered for remote write", registry=registry
        )
        self.pending_bytes = Gauge(
            "gangplank_sidecar_remote_write_pending_bytes",
            "Estimated memory of the samples buffered for remote write",
            registry=registry,
        )
        for reason in ("overflow", "rejected", "undelivered", "error"):
            self.dropped.labels(reason)
        for result in ("success", "retry", "rejected"):
            self.requests.labels(result)


class Recorder:
    """The store listener: turns sample-bearing records into ``RecordSamples`` and hands them to the sinks.

    Runs in the reading thread, after the update, so the series is stable while it is read here.
    Each record is stamped with the series' time (text formats: the time the line was read). A
    record whose time is not after the previous one of its run (two in one millisecond, or a clock
    step back) is stamped 1 ms after it: Prometheus only accepts a series' samples in increasing
    time order, and the latest state must not be lost.
    """

    def __init__(
        self, labels: dict[str, str], sinks: Iterable[RemoteWriteSink], report: Callable[[str], None] | None = None
    ) -> None:
        self.labels = labels
        self.sinks = list(sinks)
        self.report = report
        self._interned: dict[tuple[LabelSet, ...], tuple[LabelSet, ...]] = {}
        self._keys: dict[tuple[str, tuple[tuple[str, str], ...]], LabelSet] = {}
        self._last: dict[tuple[str, str, str], int] = {}
        self._failed = False

    def __call__(self, event: str, series: RunState) -> None:
        """Never raises into the reading thread: a record that cannot become samples is counted and reported once."""
        if event not in SAMPLE_EVENTS:
            for sink in self.sinks:
                sink.heard = series.version  # nothing to send: a checkpoint may pass this change
            return
        try:
            record = self.record(event, series)
        except Exception as exc:  # whatever a record holds, reading goes on
            for sink in self.sinks:
                sink.metrics.dropped.labels("error").inc()
                sink.heard = series.version
            if not self._failed and self.report is not None:
                self._failed = True
                self.report(
                    f"remote write: a {event} record of run {series.run} could not be turned into samples ({exc}); "
                    "such records are dropped and counted"
                )
            return
        for sink in self.sinks:
            sink.put(record)

    def record(self, event: str, series: RunState) -> RecordSamples:
        group = (series.job, series.phase, series.run)
        time_ms = max(round(series.time * 1000), self._last.get(group, -1) + 1)
        self._last[group] = time_ms
        labels = {"job": series.job, "phase": series.phase, **self.labels, **series.labels, "run": series.run}
        if event == "step":
            # Steps are the frequent records: only the metric gauges and the step, without run_families().
            prefix = f"gangplank_{series.phase}_"
            names = series.names.map(list(series.metrics))
            samples = [(prefix + names[key], labels, value) for key, value in sorted(series.metrics.items())]
            samples.append((prefix + "step", labels, float(series.step or 0)))
        else:
            samples = [(s.name, s.labels, s.value) for family in run_families(series, labels) for s in family.samples]
        keys = tuple(self._key(name, tuple(sample_labels.items())) for name, sample_labels, _ in samples)
        values = tuple(float(value) for _, _, value in samples)
        return RecordSamples(time_ms, event == "step", self._intern(keys), values, series.version)

    def _key(self, name: str, labels: tuple[tuple[str, str], ...]) -> LabelSet:
        """The sorted label set of a sample, with ``__name__``; computed once per series."""
        key = self._keys.get((name, labels))
        if key is None:
            key = self._keys[(name, labels)] = tuple(sorted([*labels, ("__name__", name)]))
        return key

    def _intern(self, value: tuple[LabelSet, ...]) -> tuple[LabelSet, ...]:
        return self._interned.setdefault(value, value)


def encode(records: Iterable[RecordSamples]) -> bytes:
    """The snappy-compressed WriteRequest; each series' samples in the records' (time) order."""
    request = pb.WriteRequest()
    series: dict[LabelSet, pb.TimeSeries] = {}
    for record in records:
        for key, value in zip(record.keys, record.values):
            ts = series.get(key)
            if ts is None:
                ts = series[key] = request.timeseries.add()
                ts.labels.extend(pb.Label(name=n, value=v) for n, v in key)
            ts.samples.add(value=value, timestamp=record.time_ms)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def redact(url: str) -> str:
    """The URL without credentials or query (either may hold a secret)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class RemoteWriteSink:
    """One receiver URL: a bounded buffer of records and the worker that delivers them in order."""

    def __init__(
        self,
        url: str,
        metrics: RemoteWriteMetrics,
        report: Callable[[str], None],
        transport: Transport | None = None,
        timeout: float = 5.0,
        max_buffered: int = MAX_BUFFERED,
        batch_samples: int = BATCH_SAMPLES,
        batch_age: float = BATCH_AGE,
        max_bytes: int = MAX_BUFFERED_BYTES,
        retry: Retry = Retry(),
    ) -> None:
        self.url = url
        self.retry = retry
        self.metrics = metrics
        self.report = report
        self.transport = transport or Transport(TransportConfig())
        self.timeout = timeout
        self.max_buffered = max_buffered
        self.max_bytes = max_bytes
        self.batch_samples = batch_samples
        self.batch_age = batch_age
        self.lost = 0
        self.heard = 0  # the latest store version this sink heard of
        self._sending: int | None = None  # the oldest version of the batch being sent
        self._undelivered_from: int | None = None  # the oldest version given up at exit
        self._buffer: collections.deque[_Entry] = collections.deque()
        self._steps: collections.deque[_Entry] = collections.deque()
        self._buffered = 0
        self._bytes = 0
        self._unlinked = 0  # step entries dropped since the buffer was last compacted (still in ``_buffer``)
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._failing = False
        self._rejected_reported = False
        self._error_reported = False
        self._thread = threading.Thread(target=self._run, name="remote-write", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, record: RecordSamples) -> None:
        """Buffers a record (reading thread: no I/O); when full, the oldest step records go first."""
        entry = _Entry(time.monotonic(), record)
        with self._cond:
            self._buffer.append(entry)
            if record.step:
                self._steps.append(entry)
            self._buffered += len(record.values)
            self._bytes += _size(record)
            self.heard = record.version
            if self._buffered > self.max_buffered or self._bytes > self.max_bytes:
                self._overflow()
            self.metrics.pending.set(self._buffered)
            self.metrics.pending_bytes.set(self._bytes)
            self._cond.notify()

    def _overflow(self) -> None:
        """Drops the oldest step records until the buffer fits; past ``max_bytes``, the oldest of any kind.

        A step record dropped from ``_steps`` stays linked in ``_buffer`` (behind a live epoch record,
        say) until the buffer is compacted, which happens once such entries outnumber half of it.
        """
        dropped = 0
        while self._steps and (self._buffered > self.max_buffered or self._bytes > self.max_bytes):
            entry = self._steps.popleft()
            if entry.live:
                dropped += self._drop(entry)
                self._unlinked += 1
        while self._buffer and self._bytes > self.max_bytes:
            dropped += self._drop(self._buffer.popleft())
        self.lost += dropped
        self.metrics.dropped.labels("overflow").inc(dropped)
        if self._unlinked > len(self._buffer) // 2:
            self._buffer = collections.deque(e for e in self._buffer if e.live)
            self._unlinked = 0

    def delivered_through(self) -> int:
        """The version before the oldest sample still to send (the buffer is in store order: one reader
        thread feeds the sources that checkpoint); samples dropped on purpose are not waited for."""
        with self._cond:
            pending = [v for v in (self._undelivered_from, self._sending) if v is not None]
            pending += [next((e.record.version for e in self._buffer if e.live), self.heard + 1)]
            return min(pending) - 1

    def _drop(self, entry: _Entry) -> int:
        """Marks a buffered entry taken or dropped; the samples it held."""
        if not entry.live:
            return 0
        entry.live = False
        self._buffered -= len(entry.record.values)
        self._bytes -= _size(entry.record)
        return len(entry.record.values)

    def stop(self, deadline: float) -> None:
        """Asks the worker to deliver what is buffered, trying until ``deadline`` (monotonic); never later
        than a deadline already set (a signal may have cut the flush short)."""
        with self._cond:
            self._deadline = deadline if self._deadline is None else min(self._deadline, deadline)
            self._cond.notify()

    def join(self) -> bool:
        """Waits for the worker; True when every sample was delivered."""
        assert self._deadline is not None
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + self.timeout + 1)
        with self._cond:
            if self._buffered:
                self.report(
                    f"{self._buffered} samples could not be written to {redact(self.url)} before the flush timeout"
                )
                self.metrics.dropped.labels("undelivered").inc(self._buffered)
                self.lost += self._buffered
                self._undelivered_from = min(e.record.version for e in self._buffer if e.live)
                self._buffer.clear()
                self._steps.clear()
                self._buffered = self._bytes = self._unlinked = 0
        return self.lost == 0

    def close(self, deadline: float) -> bool:
        self.stop(deadline)
        return self.join()

    def _take(self) -> list[RecordSamples] | None:
        """The next batch, once it is full or its oldest record is ``batch_age`` old; None when done."""
        with self._cond:
            while True:
                while self._buffer and not self._buffer[0].live:
                    self._buffer.popleft()
                while self._steps and not self._steps[0].live:
                    self._steps.popleft()
                if self._buffer:
                    age = time.monotonic() - self._buffer[0].at
                    if self._buffered >= self.batch_samples or age >= self.batch_age or self._deadline is not None:
                        break
                    self._cond.wait(self.batch_age - age)
                elif self._deadline is not None:
                    return None
                else:
                    self._cond.wait()
            batch: list[RecordSamples] = []
            size = 0
            while self._buffer and (not batch or size + len(self._buffer[0].record.values) <= self.batch_samples):
                entry = self._buffer.popleft()
                if entry.live:
                    size += self._drop(entry)
                    batch.append(entry.record)
            self._sending = min(r.version for r in batch)
            self.metrics.pending.set(self._buffered)
            self.metrics.pending_bytes.set(self._bytes)
            return batch

    def _run(self) -> None:
        """Delivers batch after batch; an unexpected error costs its batch (counted, reported once), never
        the thread."""
        while (batch := self._take()) is not None:
            try:
                if not self._deliver(batch):
                    return
            except Exception as exc:  # the worker must outlive any one batch
                count = sum(len(r.values) for r in batch)
                self.metrics.dropped.labels("error").inc(count)
                self.lost += count
                if not self._error_reported:
                    self._error_reported = True
                    self.report(
                        f"remote write to {redact(self.url)}: {count} samples dropped: {exc.__class__.__name__}: {exc} "
                        "(further errors are only counted)"
                    )
            finally:
                with self._cond:
                    self._sending = None  # sent, given up, or back in the buffer

    def _deliver(self, batch: list[RecordSamples]) -> bool:
        """Sends one batch until it is accepted or rejected; False if the deadline passed first."""
        body = encode(batch)
        count = sum(len(r.values) for r in batch)
        failures = 0
        while True:
            try:
                self.transport.send(self.url, "POST", body, list(HEADERS.items()), self.timeout)
            except PushError as exc:
                if exc.final:
                    self._rejected(str(exc), count)
                    return True
                self._retrying(str(exc))
            else:
                self.metrics.requests.labels("success").inc()
                self.metrics.sent.inc(count)
                if self._failing:
                    self._failing = False
                    self.report(f"writing to {redact(self.url)} again")
                return True
            with self._cond:
                deadline = self._deadline
                failures += 1
                wait = self.retry.delay(failures)
                if deadline is not None:
                    if time.monotonic() >= deadline:
                        self._undelivered(batch, count)
                        return False
                    wait = min(wait, deadline - time.monotonic())
                self._cond.wait(wait)

    def _retrying(self, reason: str) -> None:
        self.metrics.requests.labels("retry").inc()
        if not self._failing:
            self._failing = True
            self.report(f"cannot write to {redact(self.url)}: {reason}; retrying in the background")

    def _rejected(self, reason: str, count: int) -> None:
        self.metrics.requests.labels("rejected").inc()
        self.metrics.dropped.labels("rejected").inc(count)
        self.lost += count
        if not self._rejected_reported:
            self._rejected_reported = True
            self.report(
                f"{redact(self.url)} rejected {count} samples: {reason} (not retried; later rejections are only "
                "counted)"
            )

    def _undelivered(self, batch: list[RecordSamples], count: int) -> None:
        """Puts the batch back in front, for ``join`` to count with the rest."""
        for record in reversed(batch):
            self._buffer.appendleft(_Entry(0.0, record))
            self._bytes += _size(record)
        self._buffered += count


def _size(record: RecordSamples) -> int:
    """The estimated memory a buffered record holds (its label sets are shared with every other record)."""
    return RECORD_BYTES + SAMPLE_BYTES * len(record.values)


def remote_write_sinks(
    urls: list[str],
    labels: dict[str, str],
    registry: CollectorRegistry,
    report: Callable[[str], None],
    transport: Transport | None = None,
    retry: Retry = Retry(),
) -> tuple[Recorder, list[RemoteWriteSink]]:
    """One sink per URL, fed by one recorder (to add to ``store.listeners``); all retry with ``retry``'s backoff."""
    metrics = RemoteWriteMetrics(registry)
    sinks = [RemoteWriteSink(url, metrics, report, transport, retry=retry) for url in urls]
    return Recorder(labels, sinks, report), sinks
