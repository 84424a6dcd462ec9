"""``Emitter``: a Keras 3 callback that writes protocol v1 lines and never touches the network.

Its arguments mirror Gangplank's ``TrainTestExporter`` where they mean the same. Keras calls
``on_test_*`` for the validation inside ``fit`` too; those belong to the epoch record (as
``val_*`` keys), so only an ``evaluate`` outside ``fit`` makes a ``test`` record.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import numpy as np

from gangplank_emitter.run import Run


class Emitter(keras.callbacks.Callback):
    def __init__(
        self,
        file: str | os.PathLike[str] | None = None,
        metrics: Sequence[str] | None = None,
        histogram_buckets: Sequence[float] | None = None,
        ignore_exceptions: bool = True,
        job: str | None = None,
        step_every: int | None = None,
    ) -> None:
        super().__init__()
        self.run = Run(
            job,
            file,
            metrics=metrics,
            histogram_buckets=histogram_buckets,
            ignore_exceptions=ignore_exceptions,
            framework=f"keras-{keras.__version__}/{keras.backend.backend()}",
        )
        self.step_every = step_every
        self._in_fit = False
        self._step = 0

    def _params(self) -> dict[str, int]:
        trainable = sum(int(np.prod(w.shape)) for w in self.model.trainable_weights)
        return {"total": int(self.model.count_params()), "trainable": trainable}

    def _weights(self) -> list[np.ndarray] | None:
        if self.run.histogram_buckets is None:
            return None
        return [np.asarray(w) for w in self.model.trainable_weights]

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._in_fit = True
        self._step = 0
        self.run.start("train", self._params(), epochs=self.params.get("epochs"))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.step_every:
            self._step += 1
            if self._step % self.step_every == 0:
                self.run.step(self._step, logs or {})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.run.epoch(epoch, logs or {}, weights=self._weights())

    def on_train_end(self, logs: dict | None = None) -> None:
        self._in_fit = False
        self.run.end("train")

    def on_test_begin(self, logs: dict | None = None) -> None:
        if not self._in_fit:
            self.run.start("test", self._params())

    def on_test_end(self, logs: dict | None = None) -> None:
        if not self._in_fit:
            self.run.evaluate(logs or {}, weights=self._weights())
