"""Records every run in the SQLite run history, from a writer thread.

The store's listener runs in the reading thread, so it only takes a snapshot of the few fields
a record changed (a tuple, shallow copies of the dicts that change in place) into a queue; the
writer builds the rows, the labels' JSON and the checks' state from it, and commits whatever has
queued up in one transaction, so a crash loses at most the records not yet written (the
current epoch). When the stream ends,
runs without an end record are closed: `interrupted` for protocol runs (the emitter always
writes an end), `ended` for text formats that have no end record to give.

The writer never dies: a batch that fails is written again record by record, so a record
the database refuses costs that record only (counted in
``gangplank_sidecar_history_dropped_records_total``, the first failure reported).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter

from gangplank_sidecar.aggregation.state import RunState
from gangplank_sidecar.parsers.protocol import Check
from gangplank_sidecar.runs import db
from gangplank_sidecar.system.sampler import Reading

_WRITTEN = ("start", "epoch", "evaluate", "end")
LOCAL_WAIT = 30.0  # seconds the database gets to take what is queued, whatever --flush-timeout says
MAX_QUEUED = 2_000  # records and samples waiting for the writer (a few MB); a faster reader waits for room
WAIT_FOR_ROOM = 1.0  # seconds a record waits for room before the history sheds records until half is free


class _HistoryRow(NamedTuple):
    """What the writer needs of one record: a tuple, cheap to build in the reading thread."""

    event: str
    run: str
    phase: str
    job: str
    started: float
    time: float
    epoch: int | None
    metrics: dict[str, float] | None
    status: str | None
    params: int | None
    framework: str | None
    planned_epochs: int | None
    elapsed: float | None
    source: str
    checks: dict[str, Check]
    failed_checks: frozenset[str]
    labels: dict[str, str]
    version: int  # the store version of the change it came from


_new_row = tuple.__new__  # builds a _HistoryRow without NamedTuple's Python-level __new__ (1 us a record)


@dataclass(frozen=True)
class _System:
    """One system sample of a job (see gangplank_sidecar/system)."""

    job: str
    time: float
    values: tuple[float | None, ...]


def _system_values(reading: Reading) -> tuple[float | None, ...]:
    gpus = list(reading.gpus.values())
    return (
        reading.cpu_ratio,
        reading.memory_used,
        reading.memory_ratio,
        reading.disk_used,
        reading.disk_ratio,
        sum(g.utilization_ratio for g in gpus) / len(gpus) if gpus else None,
        sum(g.memory_used for g in gpus) if gpus else None,
    )


class HistorySink:
    def __init__(
        self,
        path: Path,
        labels: dict[str, str],
        report: Callable[[str], None],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.path = path
        self.dropped = Counter(
            "gangplank_sidecar_history_dropped_records",
            "Records or system samples the run history could not store",
            registry=registry,
        )
        self.report = report
        self._label_dict = labels
        self._labels = json.dumps(labels, sort_keys=True)
        self._conn = db.connect(path)
        db.mark_stale(self._conn)
        # A SimpleQueue (C, no lock round in Python) bounded by hand: the reader checks qsize and waits
        # for ``_room``, which the writer sets when it has taken what was queued.
        # A record is queued in a one-item list, its slot: the next record of the same run's same epoch takes
        # its place while the writer has not popped it (CSV rows, FloydHub points: an epoch a thousand records).
        self._queue: queue.SimpleQueue[list[_HistoryRow] | _System | None] = queue.SimpleQueue()
        self._slot: list[_HistoryRow] = []  # the last record's slot
        # The last series heard of, its checks_version, and copies of its checks and failed checks then
        self._checks_copied: tuple[RunState | None, int, dict[str, Check], frozenset[str]] = (None, 0, {}, frozenset())
        self._room = threading.Event()
        self._shedding = False
        self.shed = 0  # records and samples dropped because the writer could not keep up
        self._projects: dict[str, int] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._open: dict[tuple[str, str], bool] = {}  # runs without an end record -> from the protocol
        self._passing: set[tuple[int, str]] = set()  # (run id, check) whose row this writer left unfired
        self._failed = False
        self.lost = 0  # records and samples dropped (what --strict counts)
        # Store versions, for checkpoints: set in this order (heard last), read in the reverse.
        self._queued = self._written = self._heard = 0
        self._thread = threading.Thread(target=self._run, name="history", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def listen(self, event: str, s: RunState) -> None:
        """A store listener, in the reading thread: a snapshot of what the record brought, no I/O.

        The dicts the run state changes in place are copied (a C-level copy of a few entries), the checks
        only when they changed (``checks_version``); ``labels`` and each Check are never changed once
        made, so they are shared.
        """
        if event not in _WRITTEN:
            self._heard = s.version
            return
        copied = self._checks_copied
        if copied[0] is not s or copied[1] != s.checks_version:  # copies of checks are shared while current
            copied = self._checks_copied = (s, s.checks_version, dict(s.checks), frozenset(s.failed_checks))
        row = _new_row(
            _HistoryRow,
            (
                event,
                s.run,
                s.phase,
                s.job,
                s.started,
                s.time,
                s.epoch,
                dict(s.epoch_metrics) if event in ("epoch", "evaluate") else None,
                s.status,
                s.params,
                s.framework,
                s.planned_epochs,
                s.elapsed,
                s.source,
                copied[2],
                copied[3],
                s.labels,
                s.version,
            ),
        )
        if not (event == "epoch" and self._coalesced(row)):
            self._put(row)
        self._heard = s.version

    def _coalesced(self, row: _HistoryRow) -> bool:
        """Whether ``row`` took the place of the record before it: the same run's same epoch with the same
        checks fired, still queued (the writer upserts that epoch, so only its last record matters)."""
        slot = self._slot
        if not slot or not _replaces(row, slot[0]):
            return False
        try:
            slot[0] = row  # one C operation: an IndexError once the writer has popped the slot
        except IndexError:
            return False
        self._queued = row.version
        return True

    def system(self, job: str, reading: Reading) -> None:
        """A sampler listener: one row per sample, under the job, so each run can sum up its own."""
        self._put(_System(job, time.time(), _system_values(reading)))

    def _put(self, item: _HistoryRow | _System) -> None:
        """Queues ``item``; a writer that cannot keep up slows the reader by at most ``WAIT_FOR_ROOM``,
        then records are dropped (counted, reported once) until half of the queue is free again."""
        size = self._queue.qsize()
        if size > MAX_QUEUED // 2 and (self._shedding or (size >= MAX_QUEUED and not self._wait_for_room())):
            self._shed()
            return
        self._shedding = False
        if isinstance(item, _HistoryRow):
            self._slot = [item]
            self._queue.put(self._slot)
            self._queued = item.version
        else:
            self._queue.put(item)

    def delivered_through(self) -> int:
        """The last version committed while records wait, else the latest heard of (shed records are not
        waited for). ``_heard`` is read first: a record heard of was queued before, so it shows as pending."""
        heard, queued, written = self._heard, self._queued, self._written
        return written if written < queued else heard

    def _wait_for_room(self) -> bool:
        """Whether the full queue has room within ``WAIT_FOR_ROOM``; False starts shedding."""
        self._room.clear()  # then look again: the writer sets it after taking what is queued
        if self._queue.qsize() < MAX_QUEUED or self._room.wait(WAIT_FOR_ROOM):
            return True
        self._shedding = True
        return False

    def _shed(self) -> None:
        self.dropped.inc()
        if not self.shed:
            self.report(
                f"run history {self.path}: the database cannot keep up; records are dropped while "
                f"{MAX_QUEUED // 2} or more wait (counted in gangplank_sidecar_history_dropped_records_total)"
            )
        self.shed += 1

    def close(self, deadline: float) -> bool:
        """Writes what is queued and closes the runs left open; True when no record was lost.

        A local write is not the network: it gets at least ``LOCAL_WAIT`` seconds past a shorter ``deadline``.
        """
        wait = max(deadline - time.monotonic(), LOCAL_WAIT)
        self._queue.put(None)
        self._thread.join(wait)
        return not self._thread.is_alive() and self.lost == 0 and self.shed == 0

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._room.set()
            records = [r.pop() for r in batch if isinstance(r, list)]  # each slot is popped once, here
            samples = [r for r in batch if isinstance(r, _System)]
            if records and not self._guarded(self._write, records):
                for record in records:  # the batch failed: write what can be written, one record at a time
                    self._guarded(self._write, [record], count=1)
            if samples:
                self._guarded(self._write_system, samples, count=len(samples))
            if records:
                self._written = records[-1].version
            if None in batch:
                self._guarded(self._close_open)
                self._guarded(self._conn.close)
                return

    def _guarded(self, write: Callable[..., None], *args: object, count: int = 0) -> bool:
        """False if the write failed: reported once, ``count`` records dropped; the writer goes on."""
        try:
            write(*args)
        except Exception as exc:  # any failure of one write must not stop the history
            self._projects.clear()  # ids cached in a transaction that was rolled back
            self._passing.clear()  # and rows it updated
            self.dropped.inc(count)
            self.lost += count
            if not self._failed:
                self._failed = True
                self.report(
                    f"run history {self.path}: {exc.__class__.__name__}: {exc} (the record is dropped; further errors "
                    "are only counted)"
                )
            return False
        return True

    def _write(self, records: list[_HistoryRow]) -> None:
        """One transaction, with one statement a kind where the records allow it.

        FloydHub brings an epoch one metric a line, each an ``epoch`` record (a Trainer its logging
        steps, as values of the epoch in progress): the next record of the same epoch holds every key
        of this one (a series' metrics only grow), newer. A record followed by one of the same epoch with
        the same checks fired is left out, as the queue's slot leaves it out; one whose checks differ
        writes its checks, not its metrics. Each run's row is written once, from its last record.
        """
        kept = []  # (record, whether its metrics are written)
        for record, later in zip(records, [*records[1:], None]):
            if later is None or not _same_epoch(record, later):
                kept.append((record, True))
            elif not _replaces(later, record):
                kept.append((record, False))
        with db.transaction(self._conn):
            for record in _last_of_each_run([record for record, _ in kept]):
                self._write_run(record)
            rows = [
                (
                    self._ids[(r.run, r.phase)],
                    r.epoch if r.event == "epoch" and r.epoch is not None else db.EVALUATE_EPOCH,
                )
                + (key, db.to_db(value))
                for r, metrics in kept
                if metrics and r.metrics is not None and (r.epoch is not None or r.event == "evaluate")
                for key, value in r.metrics.items()
            ]
            if rows:
                self._conn.executemany(
                    "INSERT INTO metrics VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET value = excluded.value", rows
                )
            for record, _ in kept:
                self._write_checks(record)

    def _write_system(self, samples: list[_System]) -> None:
        with db.transaction(self._conn):
            self._conn.executemany(
                "INSERT INTO system VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(self._project(s.job), s.time, *s.values) for s in samples],
            )

    def _project(self, job: str) -> int:
        if job not in self._projects:
            self._conn.execute("INSERT INTO projects (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (job,))
            self._projects[job] = self._conn.execute("SELECT id FROM projects WHERE name = ?", (job,)).fetchone()[0]
        return self._projects[job]

    def _write_run(self, r: _HistoryRow) -> None:
        """The run's row, from its latest record; its id is kept for the metrics and checks."""
        key = (r.run, r.phase)
        status = r.status or "running"
        (run_id,) = self._conn.execute(
            """INSERT INTO runs (run, phase, project_id, labels, framework, params, planned_epochs, epochs, elapsed,
                                 started, ended, updated, status, source, host, pid)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (run, phase) DO UPDATE SET
                 project_id = excluded.project_id, framework = COALESCE(excluded.framework, framework),
                 params = COALESCE(excluded.params, params),
                 planned_epochs = COALESCE(excluded.planned_epochs, planned_epochs),
                 epochs = COALESCE(excluded.epochs, epochs), elapsed = COALESCE(excluded.elapsed, elapsed),
                 ended = excluded.ended, updated = excluded.updated, status = excluded.status,
                 host = excluded.host, pid = excluded.pid
               RETURNING id""",
            (
                r.run,
                r.phase,
                self._project(r.job),
                json.dumps({**self._label_dict, **r.labels}, sort_keys=True) if r.labels else self._labels,
                r.framework,
                r.params,
                r.planned_epochs,
                r.epoch,
                r.elapsed,
                r.started,
                r.time if r.status else None,
                time.time(),
                status,
                r.source,
                db.HOST,
                os.getpid(),
            ),
        ).fetchone()
        self._ids[key] = run_id
        if r.status:
            self._open.pop(key, None)
        else:
            self._open[key] = r.params is not None

    def _write_checks(self, r: _HistoryRow) -> None:
        """A check that passes is written once as passing, then only when it has fired again."""
        run_id = self._ids[(r.run, r.phase)]
        for name, check in r.checks.items():
            if name in r.failed_checks:
                self._conn.execute(
                    """INSERT INTO checks VALUES (?, ?, ?, ?, ?, ?, ?, 1)
                       ON CONFLICT DO UPDATE SET code = excluded.code, severity = excluded.severity,
                         message = excluded.message, last_epoch = excluded.last_epoch, fired = 1""",
                    (run_id, name, check.code, check.severity, check.message, r.epoch, r.epoch),
                )
                self._passing.discard((run_id, name))
            elif (run_id, name) not in self._passing:
                self._conn.execute("UPDATE checks SET fired = 0 WHERE run_id = ? AND name = ?", (run_id, name))
                self._passing.add((run_id, name))

    def _close_open(self) -> None:
        if not self._open:
            return
        with db.transaction(self._conn):
            for key, protocol in self._open.items():
                self._conn.execute(
                    "UPDATE runs SET status = ?, ended = updated WHERE id = ? AND status = 'running'",
                    ("interrupted" if protocol else "ended", self._ids[key]),
                )
        self._open.clear()


def _same_epoch(record: _HistoryRow, later: _HistoryRow) -> bool:
    """Whether ``later`` is another ``epoch`` record of the same run's same epoch."""
    return (
        later.event == record.event == "epoch"
        and later.epoch == record.epoch
        and later.run == record.run
        and later.phase == record.phase
    )


def _replaces(later: _HistoryRow, record: _HistoryRow) -> bool:
    """Whether ``later`` says all ``record`` does: the same epoch with the same checks fired (its metrics, a
    series' only growing, hold every key of ``record``'s)."""
    return _same_epoch(record, later) and later.failed_checks == record.failed_checks


_KEPT_FIELDS = ("framework", "params", "planned_epochs", "epoch", "elapsed")  # the runs row keeps an earlier value


def _last_of_each_run(records: list[_HistoryRow]) -> list[_HistoryRow]:
    """Each run's last record, with the values its row keeps (``COALESCE``) filled in from the records before
    it: one write of the row leaves what one write a record would."""
    last: dict[tuple[str, str], _HistoryRow] = {}
    for record in records:
        before = last.get((record.run, record.phase))
        if before is not None:
            kept = {name: getattr(before, name) for name in _KEPT_FIELDS if getattr(record, name) is None}
            if any(value is not None for value in kept.values()):
                record = record._replace(**{k: v for k, v in kept.items() if v is not None})
        last[(record.run, record.phase)] = record
    return list(last.values())
