"""``Emitter``: a Keras 3 callback that writes protocol v1 lines and never touches the network.

Its arguments mirror Gangplank's ``TrainTestExporter`` where they mean the same. Keras calls
``on_test_*`` for the validation inside ``fit`` too; those belong to the epoch record (as
``val_*`` keys), so only an ``evaluate`` outside ``fit`` makes a ``test`` record.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypedDict

import keras
import numpy as np

from gangplank_emitter.checks import (
    ALWAYS_IN_INSPECT,
    ALWAYS_IN_MODEL,
    UpdateTracker,
    inspected,
    model_checks,
    passed,
    take_inspected,
    trainable_by_layer,
)
from gangplank_emitter.run import Run
from gangplank_emitter.values import steps


class CheckOptions(TypedDict, total=False):
    ignore: Iterable[str]  # Kepler codes not to report
    updates: bool  # the per-epoch update-ratio checks (they keep a copy of the weights)


class Emitter(keras.callbacks.Callback):
    def __init__(
        self,
        file: str | os.PathLike[str] | None = None,
        metrics: Sequence[str] | None = None,
        histogram_buckets: Sequence[float] | None = None,
        ignore_exceptions: bool = True,
        job: str | None = None,
        step_every: int | None = None,
        checks: bool | CheckOptions = True,
    ) -> None:
        """``checks``: False turns Kepler's checks off; ``{"ignore": ["K102"], "updates": True}``
        drops codes and turns on the per-epoch update-ratio checks (which keep a weight copy)."""
        super().__init__()
        steps(step_every)
        self.run = Run(
            job,
            file,
            metrics=metrics,
            histogram_buckets=histogram_buckets,
            ignore_exceptions=ignore_exceptions,
            framework=f"keras-{keras.__version__}/{keras.backend.backend()}",
        )
        self.step_every = step_every
        options: CheckOptions = checks if isinstance(checks, Mapping) else {}
        self._checks = bool(checks)
        self._ignore = set(options.get("ignore", ()))
        self._tracker = UpdateTracker() if self._checks and options.get("updates") else None
        self._in_fit = False
        self._step = 0
        if step_every:
            # Only then: a batch hook turns off Keras' asynchronous batch dispatch.
            self.on_train_batch_end = self._step_end

    def _params(self) -> dict[str, int]:
        trainable = sum(int(np.prod(w.shape)) for w in self.model.trainable_weights)
        return {"total": int(self.model.count_params()), "trainable": trainable}

    def _weights(self) -> list[np.ndarray] | None:
        if self.run.histogram_buckets is None:
            return None
        return [np.asarray(w) for w in self.model.trainable_weights]

    def _kept(self, run_checks: Callable[[], list[dict]]) -> list[dict]:
        """Findings not ignored; a check that breaks on an unusual model warns, never stops training."""
        try:
            found = run_checks()
        except Exception as error:  # a check that breaks must never stop training
            warnings.warn(f"gangplank checks failed: {error!r}", RuntimeWarning, stacklevel=2)
            return []
        return [f for f in found if f["code"] not in self._ignore]

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._in_fit = True
        self._step = 0
        found = None
        if self._checks:
            ran = ALWAYS_IN_MODEL + (ALWAYS_IN_INSPECT if inspected() else ())
            found = self._kept(lambda: model_checks(self.model) + take_inspected())
            found += passed((code for code in ran if code not in self._ignore), found)
        # ``params`` is None when the callback is driven outside ``fit``.
        epochs = (self.params or {}).get("epochs")
        self.run.start("train", self._params(), epochs=epochs, checks=found)
        if (tracker := self._tracker) is not None:
            self._kept(lambda: tracker.update(trainable_by_layer(self.model)))

    def _step_end(self, batch: int, logs: dict | None = None) -> None:
        self._step += 1
        if self.step_every and self._step % self.step_every == 0:  # installed only with a step_every
            self.run.step(self._step, logs or {})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        found = None
        if (tracker := self._tracker) is not None:
            found = self._kept(lambda: tracker.update(trainable_by_layer(self.model)))
        self.run.epoch(epoch, logs or {}, weights=self._weights(), checks=found)

    def on_train_end(self, logs: dict | None = None) -> None:
        self._in_fit = False
        self.run.end("train")
        self.run.writer.close()  # as Keras' CSVLogger: the file is closed between fits

    def on_test_begin(self, logs: dict | None = None) -> None:
        if not self._in_fit:
            self.run.start("test", self._params())

    def on_test_end(self, logs: dict | None = None) -> None:
        if not self._in_fit:
            self.run.evaluate(logs or {}, weights=self._weights())
            self.run.writer.close()
