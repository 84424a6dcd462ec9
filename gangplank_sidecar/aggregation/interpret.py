"""What one stream's parsed items mean for the run state.

Parsers are pure; the little context a stream carries (its job, its current run, whether
it has produced protocol records) lives here, one ``Interpreter`` per stream.
"""

from __future__ import annotations

from collections.abc import Callable

from gangplank_sidecar.aggregation.state import Series, Store
from gangplank_sidecar.parsers import protocol

DEFAULT_JOB = "gangplank"

Report = Callable[[str], None]


class Interpreter:
    def __init__(self, store: Store, source: str, job: str | None, report: Report) -> None:
        self.store = store
        self.source = source
        self.job_override = job
        self.report = report
        self.protocol_seen = False
        self._jobs: dict[str, str] = {}

    def apply(self, item: object) -> None:
        if isinstance(item, protocol.Start):
            self._start(item)
        elif isinstance(item, (protocol.Step, protocol.Epoch, protocol.Evaluate, protocol.End)):
            self._record(item)

    def _job(self, run: str, named: str | None = None) -> str:
        job = self.job_override or named or self._jobs.get(run) or DEFAULT_JOB
        self._jobs[run] = job
        return job

    def _series(self, rec: protocol.Start | protocol.Step | protocol.Epoch | protocol.Evaluate | protocol.End) -> Series:
        job = self._job(rec.run, rec.job if isinstance(rec, protocol.Start) else None)
        series = self.store.get(job, rec.phase)
        if series is None or series.run != rec.run:
            series = self.store.begin(job, rec.phase, rec.run, when=rec.time, source=self.source)
        return series

    def _start(self, rec: protocol.Start) -> None:
        self.protocol_seen = True
        series = self._series(rec)

        def change(s: Series) -> None:
            s.params = rec.params.total
            s.framework = rec.framework
            s.planned_epochs = rec.epochs
            s.set_checks(rec.checks)
            s.time = rec.time

        self.store.update(series, "start", change)

    def _record(self, rec: protocol.Step | protocol.Epoch | protocol.Evaluate | protocol.End) -> None:
        self.protocol_seen = True
        series = self._series(rec)

        def change(s: Series) -> None:
            s.time = rec.time
            if isinstance(rec, protocol.End):
                s.status = rec.status
                s.elapsed = rec.elapsed_seconds
                return
            if isinstance(rec, protocol.Step):
                s.step = rec.step
                s.observe(rec.metrics, s.epoch)
                return
            if isinstance(rec, protocol.Epoch):
                s.epoch = rec.epoch
                s.set_checks(rec.checks)
            s.elapsed = rec.elapsed_seconds
            s.params = rec.params.total
            if rec.weights is not None:
                s.weights = rec.weights
            s.observe(rec.metrics, s.epoch)

        seen = len(series.names.collisions)
        self.store.update(series, rec.event, change)
        for key, name in series.names.collisions[seen:]:
            self.report(f"metric key {key!r} collides with another key; exported as gangplank_{series.phase}_{name}")
