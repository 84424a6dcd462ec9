"""The current state of every run the sidecar has seen: plain data behind one lock.

A ``RunState`` is what one grouping key (job, phase, the stream's labels) shows: the latest run
of that phase. A source may label its streams (the node agent: namespace, pod, container);
those labels are part of the key, so two pods with the same job never share a series.
Parsers never touch it; the interpreter updates it through ``Store``; sinks take
snapshots, so a slow sink never holds up the reading path.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from math import isfinite

from gangplank_sidecar.aggregation.names import Names
from gangplank_sidecar.curve import Curve
from gangplank_sidecar.directions import lower_is_better
from gangplank_sidecar.parsers.protocol import Check, Weights

DEFAULT_JOB = "gangplank"  # the job of records that name none, when --job is not given
FINISHED_KEPT = 100  # finished runs kept for the summary; older ones are only counted
MAX_CURVES = 64  # metrics per run whose values over the epochs are kept for the summary's sparklines
DEFAULT_MAX_SERIES = 2000  # metric keys per run (--max-series): further keys are dropped and counted


@dataclass
class RunState:
    """The latest run of one (job, phase, labels): every metric's last value, its best, its curve and its checks.

    Not a Prometheus time series: one RunState becomes many series when it is rendered.
    """

    job: str
    phase: str
    run: str
    started: float
    source: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    framework: str | None = None
    planned_epochs: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # every key's last value: the gauges
    # The values measured at the current epoch (or evaluate), and only those: what the history
    # and the checks see. A val_loss every 4 epochs is not carried into the 3 between.
    epoch_metrics: dict[str, float] = field(default_factory=dict)
    metrics_epoch: int | None = None  # the epoch ``epoch_metrics`` belong to: its later records add to them
    names: Names = field(default_factory=Names)
    best: dict[str, tuple[float, int | None]] = field(default_factory=dict)
    epoch: int | None = None
    step: int | None = None
    elapsed: float | None = None
    params: int | None = None
    weights: Weights | None = None
    checks: dict[str, Check] = field(default_factory=dict)
    failed_checks: set[str] = field(default_factory=set)
    checks_version: int = 0  # changes with ``checks`` and ``failed_checks``: a reader's copy of them is current
    status: str | None = None
    curves: dict[str, Curve] = field(default_factory=dict)
    time: float = 0.0
    version: int = 0
    max_keys: int = DEFAULT_MAX_SERIES
    dropped_values: int = 0  # values of keys beyond ``max_keys``, not kept
    retired: bool = False  # the store no longer holds it (a later run took its key, or its source is gone)
    # Work put off until someone looks (the checks of an epoch that FloydHub brings point by point);
    # run under the store's lock, and always before the series is copied.
    settle: Callable[[RunState], None] | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> Key:
        return key(self.job, self.phase, self.labels)

    def observe(self, metrics: dict[str, float], epoch: int | None, best: bool = True) -> None:
        """Takes one record's metric values; with ``best``, they are the epoch's (or evaluate's) values.

        A step's values are running means within an epoch: no best is taken from them, and they
        are not what the epoch measured. Records of one epoch (a training log, then its validation)
        add up to the epoch's values; a new epoch's replace them. Keys beyond ``max_keys`` (the run's
        first keys win) are dropped and counted in ``dropped_values``.
        """
        known = self.metrics
        if not metrics.keys() <= known.keys():  # a new key: the only case with a name to learn or a key to drop
            if len(known) + len(metrics) > self.max_keys:
                metrics = self._within_limit(metrics)
            self.names.learn(metrics)
        known.update(metrics)
        if not best:
            return
        if epoch is None or epoch != self.metrics_epoch:
            self.epoch_metrics, self.metrics_epoch = {}, epoch
        self.epoch_metrics.update(metrics)
        if epoch is not None:
            self._curves(metrics, epoch)
        self._bests(metrics, epoch)

    def observe_more(self, rows: list[dict[str, float]], epoch: int) -> None:
        """``observe(metrics, epoch)`` of each of ``rows``, values of known keys of the epoch ``epoch_metrics``
        hold (``metrics_epoch``): the same dict entries and bests, without a choice to make; each curve takes
        its key's last value once (the same epoch again would replace it)."""
        last = rows[0] if len(rows) == 1 else {key: value for metrics in rows for key, value in metrics.items()}
        for metrics in rows:
            self._bests(metrics, epoch)
        self.metrics.update(last)
        self.epoch_metrics.update(last)
        self._curves(last, epoch)

    def _curves(self, metrics: dict[str, float], epoch: int) -> None:
        """An epoch's values into each metric's curve (the first ``MAX_CURVES`` metrics have one)."""
        curves = self.curves
        for key, value in metrics.items():
            curve = curves.get(key)
            if curve is None and len(curves) < MAX_CURVES:
                curve = curves[key] = Curve()
            if curve is not None:
                curve.add(epoch, value)

    def _bests(self, metrics: dict[str, float], epoch: int | None) -> None:
        """An epoch's (or evaluate's) values into each metric's best: the first of its best values."""
        bests = self.best
        for key, value in metrics.items():
            if not isfinite(value):
                continue
            kept = bests.get(key)
            if kept is None or (value < kept[0] if lower_is_better(key) else value > kept[0]):
                bests[key] = (value, epoch)

    def _within_limit(self, metrics: dict[str, float]) -> dict[str, float]:
        new = [key for key in metrics if key not in self.metrics]
        room = max(0, self.max_keys - len(self.metrics))
        if len(new) <= room:
            return metrics
        dropped = set(new[room:])
        self.dropped_values += len(dropped)
        return {key: value for key, value in metrics.items() if key not in dropped}

    def observe_one(self, key: str, value: float, epoch: int | None, curve: bool = False) -> bool:
        """``observe`` of one value (a FloydHub point): a few dict entries. False: dropped (--max-series)."""
        if key not in self.metrics:
            if len(self.metrics) >= self.max_keys:
                self.dropped_values += 1
                return False
            self.names.learn((key,))
        self.metrics[key] = value
        one = {key: value}
        if curve and epoch is not None:
            self._curves(one, epoch)
        self._bests(one, epoch)
        return True

    def set_checks(self, checks: Iterable[Check], fired: bool = True) -> None:
        """Known checks, as fired (1) or passed (0): a healthy run shows zeros, not nothing."""
        self.checks_version += 1
        for check in checks:
            self.checks[check.name] = check
            if fired and check.fired:
                self.failed_checks.add(check.name)
            else:
                self.failed_checks.discard(check.name)

    def pass_checks(self, passed: dict[str, Check]) -> None:
        """``set_checks(passed.values(), fired=False)`` for checks that passed, by name: two C-level updates."""
        self.checks_version += 1
        self.checks.update(passed)
        self.failed_checks.difference_update(passed)

    def settled(self) -> RunState:
        """This series with any work put off done (call under the store's lock)."""
        if self.settle is not None:
            settle, self.settle = self.settle, None
            settle(self)
        return self

    def snapshot(self) -> RunState:
        return copy.deepcopy(self.settled())


Listener = Callable[[str, RunState], None]
Key = tuple[str, str, tuple[tuple[str, str], ...]]


def key(job: str, phase: str, labels: dict[str, str] | None = None) -> Key:
    """A series' grouping key: its job, its phase and its stream's labels."""
    return (job, phase, tuple(sorted(labels.items())) if labels else ())


class Store:
    """All series, keyed by (job, phase, labels), with change notification for the sinks.

    ``listeners`` are called in the reading thread with (event, series) after each update;
    they must only hand the work on (a queue), never do I/O there. ``watchers`` are only told,
    outside the lock, that something changed (a sink that takes snapshots wakes up): they get no
    series, so no put-off work is settled for them, and no sink ever waits on the store's lock.
    Of the finished runs, the last ``FINISHED_KEPT`` are kept for the summary and the others
    counted in ``dropped``; each run keeps at most ``max_series`` metric keys (``RunState.observe``).
    """

    def __init__(self, kept: int = FINISHED_KEPT, max_series: int = DEFAULT_MAX_SERIES) -> None:
        self._lock = threading.RLock()
        self.max_series = max_series
        self.version = 0
        self._series: dict[Key, RunState] = {}
        self.finished: deque[RunState] = deque(maxlen=kept)
        self.dropped = 0
        self.listeners: list[Listener] = []
        self.watchers: list[Callable[[], None]] = []

    def begin(
        self,
        job: str,
        phase: str,
        run: str,
        when: float | None = None,
        labels: dict[str, str] | None = None,
        source: str = "",
    ) -> RunState:
        """Starts a run of (job, phase, labels); an earlier run of it is set aside for the summary."""
        with self._lock:
            old = self._series.get(key(job, phase, labels))
            if old is not None and old.run == run:
                return old
            if old is not None:
                old.retired = True
                if len(self.finished) == self.finished.maxlen:
                    self.dropped += 1
                self.finished.append(old.settled())
            series = RunState(
                job=job,
                phase=phase,
                run=run,
                started=when or time.time(),
                max_keys=self.max_series,
                labels=dict(labels or {}),
                source=source,
            )
            series.time = series.started
            self._series[series.key] = series
        self.update(series, "start", _unchanged)
        return series

    def job(self, named: str | None = None) -> str:
        """The job the sidecar's own series go under: ``named`` (--job), else the first series' job."""
        with self._lock:
            return named or next((s.job for s in self._series.values()), DEFAULT_JOB)

    def get(self, job: str, phase: str, labels: dict[str, str] | None = None) -> RunState | None:
        return self._series.get(key(job, phase, labels))

    def of_source(self, source: str) -> list[RunState]:
        """The current series a stream feeds (the live objects: change them through ``update``)."""
        with self._lock:
            return [s for s in self._series.values() if s.source == source]

    def forget(self, series: RunState) -> None:
        """Drops a series whose source is gone: the sinks stop showing it (the Pushgateway's is deleted)."""
        with self._lock:
            if self._series.get(series.key) is not series:
                return
            del self._series[series.key]
            series.retired = True
            self.version += 1
        for watcher in self.watchers:
            watcher()

    def update(self, series: RunState, event: str, change: Callable[[RunState], None]) -> None:
        """Applies ``change`` under the lock, then tells the sinks (one lock round for both)."""
        with self._lock:
            change(series)
            self.version += 1
            series.version = self.version
            if self.listeners:
                series.settled()
        for listener in self.listeners:
            listener(event, series)
        for watcher in self.watchers:
            watcher()

    def snapshot(self) -> list[RunState]:
        with self._lock:
            return [s.snapshot() for s in self._series.values()]

    def all_runs(self) -> list[RunState]:
        """Every run seen, oldest first (for the end-of-stream summary)."""
        with self._lock:
            return [s.snapshot() for s in [*self.finished, *self._series.values()]]


def _unchanged(series: RunState) -> None:
    """A new run's first update: nothing changes but the sinks hear of it."""
