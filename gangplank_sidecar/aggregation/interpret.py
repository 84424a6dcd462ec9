"""What one stream's parsed items mean for the run state.

Parsers are pure; the little context a stream carries (its job, its current run, whether
it has produced protocol records) lives here, one ``Interpreter`` per stream.

Text formats (FloydHub, Keras logs) carry no run id: a stream's text run starts with its
first such line and a new one when the numbering starts over (a Keras ``Epoch`` header
after training ended or back at epoch 1 again, a FloydHub epoch or step going backwards).
They carry no time either: their records are stamped with the time they were read, or the
time the source gives the line (a container runtime's timestamp).

The training checks run once per epoch: at each protocol epoch record and Keras result,
and for FloydHub, whose epoch comes one metric a line, once the epoch is complete (a later
epoch begins) or when its state is looked at (``RunState.settle``), whichever comes first.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from gangplank_sidecar.aggregation import checks
from gangplank_sidecar.aggregation.state import DEFAULT_JOB, RunState, Store
from gangplank_sidecar.parsers import (
    boosting,
    csv_log,
    floydhub,
    keras_log,
    kv,
    lightning_log,
    patterns,
    protocol,
    transformers_log,
)

Report = Callable[[str], None]
MAX_REPORTED_COLLISIONS = 10  # per run: a record with thousands of colliding keys is not thousands of lines


class Interpreter:
    def __init__(
        self,
        store: Store,
        source: str,
        job: str | None,
        report: Report,
        thresholds: checks.Thresholds | None = None,
        dropped: Callable[[RunState, int], None] | None = None,
        labels: dict[str, str] | None = None,
        default_job: str = DEFAULT_JOB,
    ) -> None:
        """``dropped(series, n)`` hears of metric values dropped for the run's --max-series; ``labels`` go on
        every series of the stream; ``default_job`` names a run that names none."""
        self.store = store
        self.dropped = dropped
        self.checks = checks.Monitor(thresholds)
        self.source = source
        self.job_override = job
        self.labels = labels or {}
        self.default_job = default_job
        self.when: float | None = None  # the time of the line being applied, if its source knows it
        self.report = report
        self.protocol_seen = False
        self._jobs: dict[str, str] = {}
        self._text_run: str | None = None
        self._keras_epoch: int | None = None  # the epoch whose header came and whose result has not
        self._trained = False  # a text training run has ended: a plain Keras result is an evaluate
        self._floyd_offset = 0  # 1 for a FloydHub run that counts its epochs from 0
        self._held: dict[str, RunState] = {}  # per phase, the series this stream updated last
        self.folding = False  # a chunk's lines are read: see _Fold
        self._folded: _Fold | None = None

    def know_jobs(self, jobs: dict[str, str]) -> None:
        """The jobs earlier runs of this stream named (a restarted reader may not see their start records)."""
        self._jobs.update(jobs)

    def apply(self, item: object, when: float | None = None) -> None:
        """``when``: the time the source gives the line (text records take it; else the time it is read)."""
        if self._folded is not None and type(item) not in _FOLDED_ITEMS:
            self.flush()
        self.when = when
        text = _TEXT_ITEMS.get(type(item))
        if text is not None:  # one dict lookup for the text formats' items, not a row of isinstance tests
            if not self.protocol_seen:
                text(self, item)
            return
        if isinstance(item, protocol.Start):
            self._start(item)
        elif isinstance(item, (protocol.Step, protocol.Epoch, protocol.Evaluate, protocol.End)):
            self._record(item)

    def _job(self, run: str, named: str | None = None) -> str:
        job = self.job_override or named or self._jobs.get(run) or self.default_job
        self._jobs[run] = job
        return job

    def _series(
        self, rec: protocol.Start | protocol.Step | protocol.Epoch | protocol.Evaluate | protocol.End
    ) -> RunState:
        if not isinstance(rec, protocol.Start):
            series = self._held_series(rec.run, rec.phase)
            if series is not None:
                return series
        job = self._job(rec.run, rec.job if isinstance(rec, protocol.Start) else None)
        series = self.store.get(job, rec.phase, self.labels)
        if series is None or series.run != rec.run:
            series = self.store.begin(job, rec.phase, rec.run, when=rec.time, labels=self.labels, source=self.source)
        self._held[rec.phase] = series
        return series

    def _held_series(self, run: str, phase: str) -> RunState | None:
        """The series of ``run``'s ``phase`` if this stream updated it last and the store still holds it:
        an attribute test instead of a key and a lookup, for every record of a run."""
        series = self._held.get(phase)
        return series if series is not None and series.run == run and not series.retired else None

    def _start(self, rec: protocol.Start) -> None:
        self.protocol_seen = True
        series = self._series(rec)

        def change(s: RunState) -> None:
            s.params = rec.params.total
            s.framework = rec.framework
            s.planned_epochs = rec.epochs
            self.checks.start(s)
            s.set_checks(rec.checks)
            s.time = rec.time

        self.store.update(series, "start", change)

    def _check_epoch(self, series: RunState) -> None:
        if series.epoch is not None:
            self.checks.epoch(series)

    def _record(self, rec: protocol.Step | protocol.Epoch | protocol.Evaluate | protocol.End) -> None:
        self.protocol_seen = True
        series = self._series(rec)
        if isinstance(rec, protocol.Step):
            self._step(series, rec)
            return

        monitor = self.checks

        def change(s: RunState) -> None:  # ``_update``'s settling and checks, inline: one closure a record
            s.settled()
            s.time = rec.time
            if isinstance(rec, protocol.End):
                s.status = rec.status
                s.elapsed = rec.elapsed_seconds
                return
            if isinstance(rec, protocol.Epoch):
                s.epoch = rec.epoch
                if rec.checks:
                    s.set_checks(rec.checks)
            s.elapsed = rec.elapsed_seconds
            s.params = rec.params.total
            if rec.weights is not None:
                s.weights = rec.weights
            s.observe(rec.metrics, s.epoch)
            if isinstance(rec, protocol.Epoch):
                monitor.epoch(s)

        self._update(series, rec.event, change, check=False)

    def _step(self, series: RunState, rec: protocol.Step) -> None:
        """A step's running means: the step, its values, the time; no best, no checks, no history."""

        def change(s: RunState) -> None:
            s.time = rec.time
            s.step = rec.step
            s.observe(rec.metrics, s.epoch, best=False)

        self._update(series, "step", change, check=False)

    def _update(self, series: RunState, event: str, change: Callable[[RunState], None], check: bool = True) -> None:
        """``change`` under the store's lock, then the checks of a start or an epoch (unless ``check`` is off)."""
        seen, dropped = len(series.names.collisions), series.dropped_values
        if check:
            applied = change

            def change(s: RunState) -> None:
                s.settled()
                applied(s)
                if event == "start":
                    self.checks.start(s)
                elif event == "epoch":
                    self._check_epoch(s)

        self.store.update(series, event, change)
        if series.dropped_values > dropped and self.dropped is not None:
            self.dropped(series, series.dropped_values - dropped)
        for i, (key, name) in enumerate(series.names.collisions[seen:MAX_REPORTED_COLLISIONS], seen + 1):
            more = " (further collisions are not reported)" if i == MAX_REPORTED_COLLISIONS else ""
            self.report(
                f"metric key {key!r} collides with another key; exported as gangplank_{series.phase}_{name}{more}"
            )

    def _text_series(self, phase: str, new_run: bool = False, planned_epochs: int | None = None) -> RunState:
        """The series of this stream's current text run in ``phase``; ``new_run`` starts another run."""
        if new_run or self._text_run is None:
            self._text_run = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(self.when))}-{secrets.token_hex(2)}"
            self._keras_epoch, self._trained = None, False
        series = self._held_series(self._text_run, phase)
        if series is not None:
            return series
        job = self._job(self._text_run)
        held = self.store.get(job, phase, self.labels)
        if held is None or held.run != self._text_run:
            held = self.store.begin(job, phase, self._text_run, when=self.when, labels=self.labels, source=self.source)
            now = self._now()

            def start(s: RunState) -> None:
                s.planned_epochs = planned_epochs
                s.time = now

            self._update(held, "start", start)
        self._held[phase] = held
        return held

    def _now(self) -> float:
        return time.time() if self.when is None else self.when

    def _point(self, point: floydhub.Point) -> None:
        """A FloydHub metric: points of one epoch (or step) build up that epoch's state.

        A run whose first epoch is 0 counts from 0 (an index, as Lightning and XGBoost print it),
        so one is added to each of its epochs: epochs_count is the number of completed epochs.
        """
        metric, value, epoch, step = point
        series = self._text_series("train")
        if epoch is None and metric in series.metrics:  # most points: a step's value of a known key
            at = self._step_at(series)
            if step is None or at is None or step >= at:
                self._fold("point", series, None, {metric: value}, step)
                return
        self.flush()
        if epoch is not None:
            epoch += self._floyd_offset
        if (epoch is not None and series.epoch is not None and epoch < series.epoch) or (
            step is not None and series.step is not None and step < series.step
        ):
            series = self._text_series("train", new_run=True)
        if point.epoch is not None and series.epoch is None:
            self._floyd_offset = int(point.epoch == 0)
            epoch = point.epoch + self._floyd_offset
        now = self._now()
        if epoch is None:  # a step's value: the step, the value, its best, the time

            def step_change(s: RunState) -> None:
                if step is not None:
                    s.step = step
                s.observe_one(metric, value, s.epoch)
                s.time = now

            if metric in series.metrics:  # a known key: no name to learn, no collision to report
                self.store.update(series, "step", step_change)
            else:
                self._update(series, "step", step_change, check=False)
            return
        known = epoch

        def change(s: RunState) -> None:
            if known != s.epoch:
                s.settled()  # the previous epoch is complete: its checks see all its values
                s.epoch_metrics, s.metrics_epoch = {}, known
            s.epoch = known
            s.settle = self._check_epoch
            if step is not None:
                s.step = step
            if s.observe_one(metric, value, known, curve=True):
                s.epoch_metrics[metric] = value
            s.time = now

        self._update(series, "epoch", change, check=False)

    def _header(self, header: keras_log.EpochHeader) -> None:
        """``Epoch i/N``: training goes on, or starts over if it ended or is back at an earlier epoch."""
        series = None if self._text_run is None else self.store.get(self._job(self._text_run), "train", self.labels)
        done = (series.epoch or 0) if series is not None and series.run == self._text_run else 0
        self._text_series("train", new_run=self._trained or header.epoch <= done, planned_epochs=header.epochs)
        self._keras_epoch = header.epoch

    def _result(self, result: keras_log.Result) -> None:
        """An epoch's result after its header or with val_* keys; otherwise, after training, an evaluate."""
        epoch, self._keras_epoch = self._keras_epoch, None
        now = self._now()
        if epoch is None and self._trained and not any(key.startswith("val_") for key in result.metrics):
            series = self._text_series("test")

            def evaluate(s: RunState) -> None:
                s.observe(result.metrics, None)
                s.time = now

            self._update(series, "evaluate", evaluate)
            self._update(series, "end", _ended)
            return
        series = self._text_series("train", new_run=epoch is None)

        def change(s: RunState) -> None:
            s.epoch = epoch or 1
            s.observe(result.metrics, s.epoch)
            s.time = now

        self._update(series, "epoch", change)
        if epoch is None or epoch >= (series.planned_epochs or 0):
            self._trained = True
            self._update(series, "end", _ended)

    # The frameworks' logs (design.md section 8). Their epochs are completed epochs counted from 1
    # here; values that come in pieces (bars, sparse CSV rows, one dict a logging step) build up
    # their epoch, whose checks run once it is complete, as FloydHub's do.

    def _train_series(self) -> RunState | None:
        """This stream's current text run's training series, if it has one."""
        if self._text_run is None:
            return None
        series = self._held_series(self._text_run, "train")
        if series is None:
            series = self.store.get(self._job(self._text_run), "train", self.labels)
            if series is None or series.run != self._text_run:
                return None
            self._held["train"] = series
        return series

    def _placed(
        self,
        metrics: dict[str, float],
        epoch: int | None,
        step: int | None = None,
        new_run: bool = False,
        complete: bool = False,
        train: RunState | None = None,
    ) -> None:
        """Values of epoch ``epoch`` (or of no epoch yet) in the training run.

        ``complete``: the epoch has all of them. ``train``: the run's training series if the caller has
        just looked it up (``_train_series``).
        """
        series = train if train is not None and not new_run else self._text_series("train", new_run=new_run)
        now = self._now()

        def change(s: RunState) -> None:
            if epoch is not None and s.epoch is not None and epoch != s.epoch:
                s.settled()  # the previous epoch is complete: its checks see all its values
            if epoch is not None:
                s.epoch = epoch
                s.settle = None if complete else self._check_epoch
            if step is not None:
                s.step = step
            # A line without an epoch, once the run has one, is a step of the epoch in progress: its
            # values are the gauges', not the finished epoch's (its curve, best, history and checks).
            s.observe(metrics, s.epoch, best=epoch is not None or s.epoch is None)
            s.time = now

        event = "epoch" if epoch is not None else "step"
        if complete or not metrics.keys() <= series.metrics.keys():
            self._update(series, event, change, check=complete)
        else:  # known keys (most lines): no name to learn, no key to drop, no collision to report
            self.store.update(series, event, change)

    def _evaluate(self, metrics: dict[str, float], elapsed: float | None = None, end_training: bool = False) -> None:
        """An evaluation after training (or with none): the test phase; ``end_training`` says the fit is over."""
        train = self._train_series()
        if end_training and train is not None and train.status is None:
            self._trained = True
            self._update(train, "end", _ended)
        series = self._text_series("test")
        now = self._now()

        def evaluate(s: RunState) -> None:
            s.observe(metrics, None)
            if elapsed is not None:
                s.elapsed = elapsed
            s.time = now

        self._update(series, "evaluate", evaluate)
        self._update(series, "end", _ended)

    def _trainer_log(self, log: transformers_log.Log) -> None:
        """A Trainer dict: training values, a validation (eval_* -> val_*), the fit's summary, or a test."""
        metrics = dict(log.metrics)
        epoch = _whole(metrics.pop("epoch", None))
        train = self._train_series()
        if "train_runtime" in metrics:
            self.flush()
            elapsed = metrics.pop("train_runtime")
            series = self._text_series("train")

            def summary(s: RunState) -> None:
                s.observe(metrics, s.epoch)
                s.elapsed = elapsed if elapsed >= 0 else None
                s.time = self._now()

            self._update(series, "epoch" if epoch else "step", summary, check=False)  # its epoch was checked
            self._trained = True
            self._update(series, "end", _ended)
        elif any(key.startswith("eval_") for key in metrics):
            self.flush()
            if self._trained or train is None:
                values = {key.removeprefix("eval_"): value for key, value in metrics.items()}
                runtime = values.pop("runtime", None)
                self._evaluate(values, runtime if runtime is not None and runtime >= 0 else None)
            else:
                self._placed(
                    {"val_" + key.removeprefix("eval_"): value for key, value in metrics.items()}, epoch or None
                )
        else:
            restart = self._trained or (
                epoch is not None and train is not None and train.epoch is not None and epoch < train.epoch
            )
            if not restart and self._folds(train, metrics, epoch or None):
                return
            self._placed(metrics, epoch or None, new_run=restart, train=train)

    def _bar(self, bar: lightning_log.Bar) -> None:
        """Lightning's bar for epoch N (from 0): epoch N+1's values so far; back at an earlier epoch, a new fit."""
        train = self._train_series()
        epoch = bar.epoch + 1
        restart = self._trained or (train is not None and train.epoch is not None and epoch < train.epoch)
        self._placed(bar.metrics, epoch, new_run=restart, train=train)

    def _round(self, found: boosting.Round) -> None:
        """A boosting round is a whole epoch; back at round one, a new training; an earlier round again
        (LightGBM's early stopping prints the best one at the end) changes nothing."""
        train = self._train_series()
        done = train.epoch if train is not None and train.epoch is not None else 0
        if found.rounds <= done and found.rounds != 1:
            return
        self._placed(found.metrics, found.rounds, new_run=found.rounds <= done, complete=True, train=train)

    def _csv_row(self, row: csv_log.Row) -> None:
        """A row updates its epoch (from 0); a row of an earlier epoch was read before (a logger rewrote its file).

        Most rows of a file are more values of the epoch in progress, all of known keys: ``_more_of_epoch``
        takes them, folded into one update while ``folding``. They change nothing the test for them reads.
        """
        train = self._train_series()
        metrics, epoch = row.metrics, None if row.epoch is None else row.epoch + 1
        if self._folds(train, metrics, epoch, row.step):
            return
        if train is None or epoch is None or train.epoch is None or epoch >= train.epoch:
            self._placed(metrics, epoch, row.step, train=train)

    def _folds(
        self, train: RunState | None, metrics: dict[str, float], epoch: int | None, step: int | None = None
    ) -> bool:
        """Whether ``metrics`` are more values of ``train``'s epoch in progress, all of known keys, and so
        folded (``_fold``); else what was folded is flushed, for the caller to place them."""
        if (
            train is not None
            and epoch is not None
            and epoch == train.epoch == train.metrics_epoch
            and metrics.keys() <= train.metrics.keys()
        ):
            self._fold("epoch", train, epoch, metrics, step)
            return True
        self.flush()
        return False

    def _fold(
        self, event: str, series: RunState, epoch: int | None, metrics: dict[str, float], step: int | None
    ) -> None:
        """One more row of ``series``' epoch in progress ("epoch") or step of it ("step"); made at once unless
        ``folding``, else with the rows and steps after it that fold into the same update."""
        fold = self._folded
        if fold is None or fold.event != event or fold.series is not series or fold.epoch != epoch:
            self.flush()
            fold = self._folded = _Fold(event, series, epoch)
        fold.rows.append((metrics, step))
        if step is not None:
            fold.step = step
        if not self.folding:
            self.flush()

    def _step_at(self, series: RunState) -> int | None:
        """The step ``series`` is at, the steps folded for it included."""
        fold = self._folded
        return fold.step if fold is not None and fold.series is series and fold.step is not None else series.step

    def flush(self) -> None:
        """Makes the update of the rows or steps folded so far, if any."""
        fold, self._folded = self._folded, None
        if fold is not None and fold.epoch is not None:  # "epoch" folds have one, the others none
            self._more_of_epoch(fold.series, fold.rows, fold.epoch)
        elif fold is not None:
            self._steps(fold.series, fold.rows, best=fold.event == "point")

    def _steps(self, series: RunState, rows: list[tuple[dict[str, float], int | None]], best: bool) -> None:
        """Steps of the epoch in progress, of known keys: the gauges and the step (``observe`` without a best);
        ``best``: FloydHub's step points, whose values also count for the best (``observe_one``)."""
        now = self._now()

        def change(s: RunState) -> None:
            for metrics, step in rows:
                if step is not None:
                    s.step = step
                if best:
                    for key, value in metrics.items():
                        s.observe_one(key, value, s.epoch)
                else:
                    s.metrics.update(metrics)
            s.time = now

        self.store.update(series, "step", change)

    def _more_of_epoch(self, series: RunState, rows: list[tuple[dict[str, float], int | None]], epoch: int) -> None:
        """``_placed`` of each row's (values, step), more values of the epoch in progress, all of known keys
        (most rows of a CSV file), in one update: nothing to settle, no name to learn, no key to drop; and
        once the epoch's checks have run (a sink looks at every record), no need to run them again for
        values they do not read."""
        now, settle = self._now(), self._check_epoch

        def change(s: RunState) -> None:
            # Each row's test against the values before the fold is the test against the values before it:
            # a value an earlier row replaced was tested as that row's own.
            if s.settle is None and any(checks.changes_findings(s.epoch_metrics, metrics) for metrics, _ in rows):
                s.settle = settle
            for _, step in reversed(rows):
                if step is not None:
                    s.step = step
                    break
            s.observe_more([metrics for metrics, _ in rows], epoch)
            s.time = now

        self.store.update(series, "epoch", change)

    def _pairs(self, found: kv.Pairs | patterns.Match) -> None:
        """``name=value`` pairs or a user pattern's groups: the epoch and step as printed."""
        if isinstance(found, patterns.Match) and found.phase == "test":
            self.flush()
            self._evaluate(found.metrics)
            return
        train = self._train_series()
        metrics, epoch, step = found.metrics, found.epoch, found.step
        at = None if train is None else self._step_at(train)
        back = train is not None and (
            (epoch is not None and train.epoch is not None and epoch < train.epoch)
            or (step is not None and at is not None and step < at)
        )
        if (
            epoch is None
            and train is not None
            and train.epoch is not None
            and not (back or self._trained)
            and metrics.keys() <= train.metrics.keys()
        ):  # most lines: a step of the epoch in progress, of known keys (folded steps change none of these)
            self._fold("step", train, None, metrics, step)
            return
        self.flush()
        self._placed(metrics, epoch, step, new_run=back or self._trained, train=train)


class _Fold:
    """Updates that wait for one ``store.update`` while a chunk's lines are read (``Interpreter.folding``):
    rows of one series' epoch in progress ("epoch": a CSV file's, a Trainer's logging steps) or steps of it
    ("step": name=value lines, user patterns; "point": FloydHub's), each (values, step), all of known keys.
    Read at once, they are read at one time; their update is made before any other item, at the end of the
    chunk, or as the next one does not fold."""

    __slots__ = ("epoch", "event", "rows", "series", "step")

    def __init__(self, event: str, series: RunState, epoch: int | None) -> None:
        self.event, self.series, self.epoch = event, series, epoch
        self.rows: list[tuple[dict[str, float], int | None]] = []
        self.step: int | None = None  # the last step of the rows


# The handler of each text format's item (exact types: the parsers build no subclasses). After
# protocol records, a stream's text is ignored (one source of truth: the emitter's values are exact, the text rounded).
_TEXT_ITEMS: dict[type, Callable[[Interpreter, Any], None]] = {
    floydhub.Point: Interpreter._point,
    keras_log.EpochHeader: Interpreter._header,
    keras_log.Result: Interpreter._result,
    transformers_log.Log: Interpreter._trainer_log,
    lightning_log.Bar: Interpreter._bar,
    lightning_log.Results: lambda self, item: self._evaluate(item.metrics, end_training=True),
    boosting.Round: Interpreter._round,
    csv_log.Row: Interpreter._csv_row,
    kv.Pairs: Interpreter._pairs,
    patterns.Match: Interpreter._pairs,
}
_FOLDED_ITEMS = (csv_log.Row, kv.Pairs, patterns.Match, transformers_log.Log, floydhub.Point)  # fold or flush


def _whole(epoch: float | None) -> int | None:
    """Whole epochs reached, from the Trainer's fractional epoch."""
    if epoch is None or not 0 <= epoch <= 1e9:
        return None
    return int(epoch)


def _ended(series: RunState) -> None:
    """A text log shows no end record: a finished last epoch or evaluate is the end."""
    series.status = "ok"
