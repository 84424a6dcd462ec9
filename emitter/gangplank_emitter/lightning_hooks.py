"""The Lightning callback's hooks, shared by the ``lightning`` and ``pytorch_lightning`` packages.

One epoch record per training epoch, written at ``on_train_epoch_end`` (Lightning validates
before it) with ``trainer.callback_metrics``; the epoch in the record counts from 1. A validation
metric is only in the epochs that validated: ``callback_metrics`` keeps the last value, and a
``check_val_every_n_epoch=4`` run must not show it as measured in between. ``trainer.validate()``
and ``trainer.test()`` are the ``test`` phase, names as logged. Only global rank zero writes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from gangplank_emitter.torch_run import TorchRun, framework, params, scalars, trainable
from gangplank_emitter.values import steps


class LightningHooks:
    package = ""  # the Lightning package the Emitter is built on, and its version, for the start record
    version = ""

    def __init__(
        self,
        file: str | os.PathLike[str] | None = None,
        metrics: Sequence[str] | None = None,
        histogram_buckets: Sequence[float] | None = None,
        ignore_exceptions: bool = True,
        job: str | None = None,
        step_every: int | None = None,
    ) -> None:
        """``step_every=N``: a step record every N optimizer steps (``trainer.global_step``)."""
        super().__init__()
        self.run = TorchRun(
            job,
            file,
            metrics=metrics,
            histogram_buckets=histogram_buckets,
            ignore_exceptions=ignore_exceptions,
            framework=framework(self.package, self.version),
        )
        self.step_every = steps(step_every)
        self._last_step = 0
        self._val_keys: set[str] = set()
        self._before: set[str] = set()
        self._validated = False
        self._in_fit = False
        self._every_epoch = True

    def _weights(self, pl_module: Any) -> list | None:
        return None if self.run.histogram_buckets is None else trainable(pl_module)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        self._last_step, self._val_keys, self._validated, self._in_fit = trainer.global_step, set(), False, True
        # Validating every epoch, no value is carried over: the keys need no tracking (it costs two
        # computations of callback_metrics an epoch).
        self._every_epoch = trainer.check_val_every_n_epoch == 1
        epochs = trainer.max_epochs
        self.run.start("train", params(pl_module), epochs=epochs if epochs and epochs > 0 else None)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: object, batch: object, batch_idx: int) -> None:
        if self.step_every and trainer.is_global_zero:
            step = trainer.global_step
            if step - self._last_step >= self.step_every:
                self._last_step = step
                self.run.step(step, scalars(trainer.callback_metrics))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        values = scalars(trainer.callback_metrics)
        if not (self._validated or self._every_epoch):
            values = {key: value for key, value in values.items() if key not in self._val_keys}
        self._validated = False
        self.run.epoch(trainer.current_epoch, values, weights=self._weights(pl_module))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._in_fit = False
        if trainer.is_global_zero:
            self.run.end("train")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._in_fit = False
        if trainer.is_global_zero:
            status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
            for phase in ("train", "test"):
                self.run.end(phase, status)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Inside fit (between on_train_start and on_train_end, so never the sanity check) it is
        the epoch's validation; outside, ``trainer.validate()``."""
        if self._in_fit:
            if not self._every_epoch:
                self._before = set(trainer.callback_metrics)
        elif trainer.is_global_zero and not trainer.sanity_checking:
            self.run.start("test", params(pl_module))

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self._in_fit:
            if not self._every_epoch:
                self._val_keys |= set(trainer.callback_metrics) - self._before
                self._validated = True
        elif trainer.is_global_zero and not trainer.sanity_checking:
            self._evaluate(trainer, pl_module)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            self.run.start("test", params(pl_module))

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            self._evaluate(trainer, pl_module)

    def _evaluate(self, trainer: Any, pl_module: Any) -> None:
        self.run.evaluate(scalars(trainer.callback_metrics), weights=self._weights(pl_module))
