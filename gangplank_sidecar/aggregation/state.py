"""The current state of every run the sidecar has seen: plain data behind one lock.

A ``Series`` is what one grouping key (job, phase) shows: the latest run of that phase.
Parsers never touch it; the interpreter updates it through ``Store``; sinks take
snapshots, so a slow sink never holds up the reading path.
"""

from __future__ import annotations

import copy
import functools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gangplank_sidecar.aggregation.names import Names
from gangplank_sidecar.parsers.protocol import Check, Weights

DEFAULT_JOB = "gangplank"  # the job of records that name none, when --job is not given
FINISHED_KEPT = 100  # finished runs kept for the summary; older ones are only counted
_LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "mape", "msle", "crossentropy", "hinge", "divergence", "perplexity")


@functools.lru_cache(maxsize=4096)
def lower_is_better(key: str) -> bool:
    """Whether a smaller value of this metric is the better one (losses and errors)."""
    key = key.lower()
    return any(word in key for word in _LOWER_IS_BETTER)


@dataclass
class Series:
    job: str
    phase: str
    run: str
    started: float
    source: str = ""
    framework: str | None = None
    planned_epochs: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # every key's last value: the gauges
    # The values measured at the current epoch (or evaluate), and only those: what the history
    # and the checks see. A val_loss every 4 epochs is not carried into the 3 between.
    epoch_metrics: dict[str, float] = field(default_factory=dict)
    names: Names = field(default_factory=Names)
    best: dict[str, tuple[float, int | None]] = field(default_factory=dict)
    epoch: int | None = None
    step: int | None = None
    elapsed: float | None = None
    params: int | None = None
    weights: Weights | None = None
    checks: dict[str, Check] = field(default_factory=dict)
    failed_checks: set[str] = field(default_factory=set)
    status: str | None = None
    time: float = 0.0
    version: int = 0
    # Work put off until someone looks (the checks of an epoch that FloydHub brings point by point);
    # run under the store's lock, and always before the series is copied.
    settle: Callable[[Series], None] | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.job, self.phase)

    def observe(self, metrics: dict[str, float], epoch: int | None, best: bool = True) -> None:
        """Takes one record's metric values; with ``best``, they are the epoch's (or evaluate's) values.

        A step's values are running means within an epoch: no best is taken from them, and they
        are not what the epoch measured. The epoch's values replace the previous epoch's.
        """
        self.names.learn(metrics)
        self.metrics.update(metrics)
        if not best:
            return
        self.epoch_metrics = dict(metrics)  # its own: FloydHub points add to the current epoch
        bests = self.best
        for key, value in metrics.items():
            if not math.isfinite(value):
                continue
            best = bests.get(key)
            if best is None or (value < best[0] if lower_is_better(key) else value > best[0]):
                bests[key] = (value, epoch)

    def observe_one(self, key: str, value: float, epoch: int | None) -> None:
        """``observe`` of one value (a FloydHub point): a few dict entries."""
        if key not in self.metrics:
            self.names.learn((key,))
        self.metrics[key] = value
        if math.isfinite(value):
            best = self.best.get(key)
            if best is None or (value < best[0] if lower_is_better(key) else value > best[0]):
                self.best[key] = (value, epoch)

    def set_checks(self, checks: list[Check], fired: bool = True) -> None:
        """Known checks, as fired (1) or passed (0): a healthy run shows zeros, not nothing."""
        for check in checks:
            self.checks[check.name] = check
            if fired and check.fired:
                self.failed_checks.add(check.name)
            else:
                self.failed_checks.discard(check.name)

    def settled(self) -> Series:
        """This series with any work put off done (call under the store's lock)."""
        if self.settle is not None:
            settle, self.settle = self.settle, None
            settle(self)
        return self

    def snapshot(self) -> Series:
        return copy.deepcopy(self.settled())


Listener = Callable[[str, Series], None]


class Store:
    """All series, keyed by (job, phase), with change notification for the sinks.

    ``listeners`` are called in the reading thread with (event, series) after each update;
    they must only hand the work on (a queue), never do I/O there. Of the finished runs,
    the last ``FINISHED_KEPT`` are kept for the summary and the others counted in ``dropped``.
    """

    def __init__(self, kept: int = FINISHED_KEPT) -> None:
        self.changed = threading.Condition()
        self.version = 0
        self._series: dict[tuple[str, str], Series] = {}
        self.finished: deque[Series] = deque(maxlen=kept)
        self.dropped = 0
        self.listeners: list[Listener] = []

    def begin(self, job: str, phase: str, run: str, when: float | None = None, **fields: object) -> Series:
        """Starts a run of (job, phase); an earlier run of it is set aside for the summary."""
        with self.changed:
            old = self._series.get((job, phase))
            if old is not None and old.run == run:
                return old
            if old is not None:
                if len(self.finished) == self.finished.maxlen:
                    self.dropped += 1
                self.finished.append(old.settled())
            series = Series(job=job, phase=phase, run=run, started=when or time.time(), **fields)  # type: ignore[arg-type]
            series.time = series.started
            self._series[(job, phase)] = series
        self.update(series, "start", _unchanged)
        return series

    def job(self, named: str | None = None) -> str:
        """The job the sidecar's own series go under: ``named`` (--job), else the first series' job."""
        with self.changed:
            return named or next((s.job for s in self._series.values()), DEFAULT_JOB)

    def get(self, job: str, phase: str) -> Series | None:
        return self._series.get((job, phase))

    def update(self, series: Series, event: str, change: Callable[[Series], None]) -> None:
        """Applies ``change`` under the lock, then tells the sinks (one lock round for both)."""
        with self.changed:
            change(series)
            self.version += 1
            series.version = self.version
            self.changed.notify_all()
            if self.listeners:
                series.settled()
        for listener in self.listeners:
            listener(event, series)

    def snapshot(self) -> list[Series]:
        with self.changed:
            return [s.snapshot() for s in self._series.values()]

    def all_runs(self) -> list[Series]:
        """Every run seen, oldest first (for the end-of-stream summary)."""
        with self.changed:
            return [s.snapshot() for s in [*self.finished, *self._series.values()]]


def _unchanged(series: Series) -> None:
    """A new run's first update: nothing changes but the sinks hear of it."""
