"""What one stream's parsed items mean for the run state.

Parsers are pure; the little context a stream carries (its job, its current run, whether
it has produced protocol records) lives here, one ``Interpreter`` per stream.

Text formats (FloydHub, Keras logs) carry no run id: a stream's text run starts with its
first such line and a new one when the numbering starts over (a Keras ``Epoch`` header
after training ended or back at epoch 1 again, a FloydHub epoch or step going backwards).
They carry no time either: their records are stamped with the time they were read.

The training checks run once per epoch: at each protocol epoch record and Keras result,
and for FloydHub, whose epoch comes one metric a line, once the epoch is complete (a later
epoch begins) or when its state is looked at (``Series.settle``), whichever comes first.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from gangplank_sidecar import checks
from gangplank_sidecar.aggregation.state import DEFAULT_JOB, Series, Store
from gangplank_sidecar.parsers import floydhub, keras_log, protocol

Report = Callable[[str], None]


class Interpreter:
    def __init__(
        self, store: Store, source: str, job: str | None, report: Report, thresholds: checks.Thresholds | None = None
    ) -> None:
        self.store = store
        self.checks = checks.Monitor(thresholds)
        self.source = source
        self.job_override = job
        self.report = report
        self.protocol_seen = False
        self._jobs: dict[str, str] = {}
        self._text_run: str | None = None
        self._keras_epoch: int | None = None  # the epoch whose header came and whose result has not
        self._trained = False  # a text training run has ended: a plain Keras result is an evaluate

    def apply(self, item: object) -> None:
        if isinstance(item, protocol.Start):
            self._start(item)
        elif isinstance(item, (protocol.Step, protocol.Epoch, protocol.Evaluate, protocol.End)):
            self._record(item)
        elif self.protocol_seen:
            return  # one stream, one source of truth: the emitter's values are exact, the text is rounded
        elif isinstance(item, floydhub.Point):
            self._point(item)
        elif isinstance(item, keras_log.EpochHeader):
            self._header(item)
        elif isinstance(item, keras_log.Result):
            self._result(item)

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
            self.checks.start(s)
            s.set_checks(rec.checks)
            s.time = rec.time

        self.store.update(series, "start", change)

    def _check_epoch(self, series: Series) -> None:
        if series.epoch is not None:
            self.checks.epoch(series)

    def _record(self, rec: protocol.Step | protocol.Epoch | protocol.Evaluate | protocol.End) -> None:
        self.protocol_seen = True
        series = self._series(rec)
        if isinstance(rec, protocol.Step):
            self._step(series, rec)
            return

        def change(s: Series) -> None:
            s.time = rec.time
            if isinstance(rec, protocol.End):
                s.status = rec.status
                s.elapsed = rec.elapsed_seconds
                return
            if isinstance(rec, protocol.Epoch):
                s.epoch = rec.epoch
                s.set_checks(rec.checks)
            s.elapsed = rec.elapsed_seconds
            s.params = rec.params.total
            if rec.weights is not None:
                s.weights = rec.weights
            s.observe(rec.metrics, s.epoch)

        self._update(series, rec.event, change)

    def _step(self, series: Series, rec: protocol.Step) -> None:
        """A step's running means: the step, its values, the time; no best, no checks, no history."""

        def change(s: Series) -> None:
            s.time = rec.time
            s.step = rec.step
            s.observe(rec.metrics, s.epoch, best=False)

        self._update(series, "step", change, check=False)

    def _update(self, series: Series, event: str, change: Callable[[Series], None], check: bool = True) -> None:
        """``change`` under the store's lock, then the checks of a start or an epoch (unless ``check`` is off)."""
        seen = len(series.names.collisions)
        if check:
            applied = change

            def change(s: Series) -> None:
                s.settled()
                applied(s)
                if event == "start":
                    self.checks.start(s)
                elif event == "epoch":
                    self._check_epoch(s)

        self.store.update(series, event, change)
        if len(series.names.collisions) > seen:
            for key, name in series.names.collisions[seen:]:
                self.report(f"metric key {key!r} collides with another key; exported as gangplank_{series.phase}_{name}")

    def _text_series(self, phase: str, new_run: bool = False, planned_epochs: int | None = None) -> Series:
        """The series of this stream's current text run in ``phase``; ``new_run`` starts another run."""
        if new_run or self._text_run is None:
            self._text_run = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
            self._keras_epoch, self._trained = None, False
        job = self._job(self._text_run)
        series = self.store.get(job, phase)
        if series is None or series.run != self._text_run:
            series = self.store.begin(job, phase, self._text_run, source=self.source)

            def start(s: Series) -> None:
                s.planned_epochs = planned_epochs
                s.time = time.time()

            self._update(series, "start", start)
        return series

    def _point(self, point: floydhub.Point) -> None:
        """A FloydHub metric: points of one epoch (or step) build up that epoch's state."""
        metric, value, epoch, step = point
        series = self._text_series("train")
        if (epoch is not None and series.epoch is not None and epoch < series.epoch) or (
            step is not None and series.step is not None and step < series.step
        ):
            series = self._text_series("train", new_run=True)
        now = time.time()
        if epoch is None:  # a step's value: the step, the value, its best, the time

            def step_change(s: Series) -> None:
                if step is not None:
                    s.step = step
                s.observe_one(metric, value, s.epoch)
                s.time = now

            if metric in series.metrics:  # a known key: no name to learn, no collision to report
                self.store.update(series, "step", step_change)
            else:
                self._update(series, "step", step_change, check=False)
            return

        def change(s: Series) -> None:
            if epoch != s.epoch:
                s.settled()  # the previous epoch is complete: its checks see all its values
                s.epoch_metrics = {}
            s.epoch = epoch
            s.epoch_metrics[metric] = value
            s.settle = self._check_epoch
            if step is not None:
                s.step = step
            s.observe_one(metric, value, epoch)
            s.time = now

        self._update(series, "epoch", change, check=False)

    def _header(self, header: keras_log.EpochHeader) -> None:
        """``Epoch i/N``: training goes on, or starts over if it ended or is back at an earlier epoch."""
        series = None if self._text_run is None else self.store.get(self._job(self._text_run), "train")
        done = (series.epoch or 0) if series is not None and series.run == self._text_run else 0
        self._text_series("train", new_run=self._trained or header.epoch <= done, planned_epochs=header.epochs)
        self._keras_epoch = header.epoch

    def _result(self, result: keras_log.Result) -> None:
        """An epoch's result after its header or with val_* keys; otherwise, after training, an evaluate."""
        epoch, self._keras_epoch = self._keras_epoch, None
        now = time.time()
        if epoch is None and self._trained and not any(key.startswith("val_") for key in result.metrics):
            series = self._text_series("test")

            def evaluate(s: Series) -> None:
                s.observe(result.metrics, None)
                s.time = now

            self._update(series, "evaluate", evaluate)
            self._update(series, "end", _ended)
            return
        series = self._text_series("train", new_run=epoch is None)

        def change(s: Series) -> None:
            s.epoch = epoch or 1
            s.observe(result.metrics, s.epoch)
            s.time = now

        self._update(series, "epoch", change)
        if epoch is None or epoch >= (series.planned_epochs or 0):
            self._trained = True
            self._update(series, "end", _ended)


def _ended(series: Series) -> None:
    """A text log shows no end record: a finished last epoch or evaluate is the end."""
    series.status = "ok"
