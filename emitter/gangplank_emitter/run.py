"""``Run``: protocol v1 records for any training loop (PyTorch, JAX, numpy, Keras).

    with Run(job="mnist", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0) as run:
        for epoch in range(10):
            ...
            run.epoch(epoch, {"loss": loss}, weights=[w1, b1])
        run.evaluate({"loss": test_loss})

``epoch`` is the index of the epoch that just ended, counted from 0 as in Keras'
``on_epoch_end``; the record carries the number of completed epochs. Histograms are off unless
``histogram_buckets`` is given, as in the Keras ``Emitter`` and Gangplank.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from gangplank_emitter.histogram import histogram
from gangplank_emitter.values import NotAMetric, metric_values
from gangplank_emitter.writer import Writer, finite_or_token

if TYPE_CHECKING:
    from numpy.typing import ArrayLike  # numpy.typing costs an import at run time

PROTOCOL = 1
_PROCESS_RUN = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
_fits_started = 0
_current_run = _PROCESS_RUN
_live: set[Run] = set()
"""Runs with a phase open: the one atexit handler ends them; a finished run is not kept alive."""


def _end_live_runs() -> None:
    """A process that exits mid-run (Ctrl-C, an error) says so instead of going silent."""
    for run in list(_live):
        run._at_exit()


atexit.register(_end_live_runs)


def _next_run_id(phase: str) -> str:
    """One id per process, shared by a fit and the evaluates after it; a second fit gets ``-2``."""
    global _fits_started, _current_run
    if phase == "train":
        _fits_started += 1
        _current_run = _PROCESS_RUN if _fits_started == 1 else f"{_PROCESS_RUN}-{_fits_started}"
    return _current_run


def _names(metrics: Sequence[str] | str | None) -> list[str] | None:
    """The metric names to keep; one name alone (``metrics="loss"``) means that one."""
    if metrics is None:
        return None
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"metrics: expected metric names (str), got {names!r}")
    return names


def _size(arrays: Iterable[ArrayLike]) -> int:
    return sum(int(np.size(a)) for a in arrays)


class Run:
    def __init__(
        self,
        job: str | None = None,
        file: str | os.PathLike[str] | None = None,
        *,
        metrics: Sequence[str] | None = None,
        histogram_buckets: Sequence[float] | None = None,
        ignore_exceptions: bool = True,
        framework: str | None = None,
    ) -> None:
        self.job = job
        self.metrics = _names(metrics)
        self.histogram_buckets = list(histogram_buckets) if histogram_buckets else None
        if self.histogram_buckets:
            histogram([], self.histogram_buckets)
        self.framework = framework
        self.writer = Writer(file, ignore_exceptions)
        self._open: dict[str, tuple[str, float]] = {}
        self._params: dict[str, int] = {"total": 0}
        self._params_given = False
        self._skipped: set[str] = set()

    def _skip(self, key: str, why: str) -> None:
        """A value we cannot record: a TypeError in strict mode, else one warning per key."""
        message = f"gangplank_emitter: {key}: {why}; expected a real number or an array of one"
        if not self.writer.ignore_exceptions:
            raise TypeError(message)
        if key not in self._skipped:
            self._skipped.add(key)
            warnings.warn(message + " (skipped; training goes on)", RuntimeWarning, stacklevel=4)

    def _numbers(self, metrics: Mapping[str, object]) -> dict[str, float | str]:
        try:
            values, skipped = metric_values(metrics, self.metrics)
        except NotAMetric as why:
            self._skip("metrics", str(why))
            return {}
        for key, reason in skipped.items():
            self._skip(key, reason)
        return values

    def _record(self, event: str, phase: str, **fields: object) -> None:
        run, _ = self._open[phase]
        self.writer.write(
            {"gangplank": PROTOCOL, "event": event, "run": run, "phase": phase, "time": time.time(), **fields}
        )

    def _elapsed(self, phase: str) -> float:
        return time.perf_counter() - self._open[phase][1]

    def _weights(self, weights: Iterable[object] | None) -> dict[str, object]:
        if weights is None or self.histogram_buckets is None:
            return {}
        try:
            counts = histogram(weights, self.histogram_buckets)
        except (TypeError, ValueError) as exc:
            self._skip("weights", f"no histogram ({exc})")
            return {}
        counts["sum"] = finite_or_token(counts["sum"])
        return {"weights": counts}

    def start(
        self,
        phase: str = "train",
        params: int | Mapping[str, int] | None = None,
        epochs: int | None = None,
        checks: list[dict] | None = None,
    ) -> None:
        """Begins a fit (``train``) or an evaluate (``test``); called for you when omitted."""
        if params is not None:
            self._params = {"total": params} if isinstance(params, int) else dict(params)
            self._params_given = True
        self._open[phase] = (_next_run_id(phase), time.perf_counter())
        _live.add(self)
        fields: dict[str, object] = {"params": self._params}
        for key, value in (("job", self.job), ("epochs", epochs), ("framework", self.framework), ("checks", checks)):
            if value:
                fields[key] = value
        self._record("start", phase, **fields)

    def _ensure(self, phase: str, weights: Sequence[ArrayLike] | None) -> None:
        """Starts the phase if the loop did not; counts parameters from the weights if not told."""
        if weights is not None and not self._params_given:
            self._params = {"total": _size(weights)}
        if phase not in self._open:
            self.start(phase)

    def step(self, step: int, metrics: Mapping[str, object]) -> None:
        self._ensure("train", None)
        self._record("step", "train", step=step, metrics=self._numbers(metrics))

    def epoch(
        self,
        epoch: int,
        metrics: Mapping[str, object],
        weights: Sequence[ArrayLike] | None = None,
        checks: list[dict] | None = None,
    ) -> None:
        """Records the end of epoch ``epoch`` (from 0); ``weights``: arrays for the histogram."""
        self._ensure("train", weights)
        fields: dict[str, object] = {
            "epoch": epoch + 1,
            "elapsed_seconds": self._elapsed("train"),
            "metrics": self._numbers(metrics),
            "params": self._params,
            **self._weights(weights),
        }
        if checks:
            fields["checks"] = checks
        self._record("epoch", "train", **fields)

    def evaluate(self, metrics: Mapping[str, object], weights: Sequence[ArrayLike] | None = None) -> None:
        """Records a test result and ends the evaluate (phase ``test``)."""
        self._ensure("test", weights)
        self._record(
            "evaluate",
            "test",
            elapsed_seconds=self._elapsed("test"),
            metrics=self._numbers(metrics),
            params=self._params,
            **self._weights(weights),
        )
        self.end("test")

    def end(self, phase: str = "train", status: str = "ok") -> None:
        if phase in self._open:
            self._record("end", phase, status=status, elapsed_seconds=self._elapsed(phase))
            del self._open[phase]
        if not self._open:
            _live.discard(self)

    def _at_exit(self) -> None:
        for phase in list(self._open):
            with contextlib.suppress(Exception):  # the process is ending: nothing left to save by raising
                self.end(phase, "interrupted")

    def close(self, status: str = "ok") -> None:
        for phase in list(self._open):
            self.end(phase, status)
        self.writer.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.close("ok")
        else:
            self.close("interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed")
