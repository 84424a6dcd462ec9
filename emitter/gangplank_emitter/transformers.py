"""``Emitter``: a transformers ``TrainerCallback`` that writes protocol v1 lines, exact values.

    trainer = Trainer(model, args, train_dataset=..., eval_dataset=..., callbacks=[Emitter(job="bert")])

The Trainer logs the epoch's training values and evaluates *after* ``on_epoch_end``, so an
epoch's record is held until its evaluation (or the next epoch, or the end of training); it
carries the epoch's last training values and the evaluation's ``eval_*`` metrics as ``val_*``.
``trainer.evaluate()`` (or ``predict()``) outside training is the ``test`` phase, with the prefix
the Trainer added dropped (``eval_loss`` -> ``loss``). Only world process zero writes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import transformers
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from gangplank_emitter.torch_run import TorchRun, framework, params, scalars, trainable
from gangplank_emitter.values import steps

# What the Trainer adds to its own logs: not a measurement of the model.
_BOOKKEEPING = ("epoch", "step", "total_flos")


def _renamed(metrics: Mapping[str, float], prefix: str = "", into: str = "") -> dict[str, float]:
    """The measurements, the Trainer's ``prefix`` replaced by ours (``eval_loss`` -> ``val_loss``)."""
    return {into + key.removeprefix(prefix): value for key, value in metrics.items() if key not in _BOOKKEEPING}


class Emitter(TrainerCallback):
    def __init__(
        self,
        file: str | os.PathLike[str] | None = None,
        metrics: Sequence[str] | None = None,
        histogram_buckets: Sequence[float] | None = None,
        ignore_exceptions: bool = True,
        job: str | None = None,
        step_every: int | None = None,
    ) -> None:
        """``step_every=N``: a step record at the first training log (every ``logging_steps``)
        at least N optimizer steps after the previous one; None writes no step records."""
        self.run = TorchRun(
            job,
            file,
            metrics=metrics,
            histogram_buckets=histogram_buckets,
            ignore_exceptions=ignore_exceptions,
            framework=framework("transformers", transformers.__version__),
        )
        self.step_every = steps(step_every)
        self._in_fit = self._testing = False
        self._last_step = 0
        self._epochs = 0
        self._values: dict[str, float] = {}
        self._epoch_ended = False

    def _weights(self, model: torch.nn.Module | None) -> list | None:
        if self.run.histogram_buckets is None or model is None:
            return None
        return trainable(model)

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        self._in_fit, self._last_step, self._epochs, self._values, self._epoch_ended = (
            True,
            state.global_step,
            0,
            {},
            False,
        )
        epochs = getattr(state, "num_train_epochs", None) or args.num_train_epochs
        self.run.start("train", params(model) if model is not None else None, epochs=int(epochs))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict | None = None,
        **kwargs: Any,
    ) -> None:
        """Training logs only: evaluations come through ``on_evaluate``, the final summary is not an epoch's."""
        if not (self._in_fit and state.is_world_process_zero and logs) or "train_runtime" in logs:
            return
        values = scalars(logs)
        if any(key.startswith("eval_") for key in values):
            return
        values = _renamed(values)
        self._values.update(values)
        if self.step_every and state.global_step - self._last_step >= self.step_every:
            self._last_step = state.global_step
            self.run.step(state.global_step, values)

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._flush(kwargs.get("model"))

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._in_fit and state.is_world_process_zero:
            self._flush(kwargs.get("model"))
            self._epoch_ended = True

    def _flush(self, model: torch.nn.Module | None) -> None:
        """Writes the held epoch record, with the evaluation that followed it if there was one."""
        if self._epoch_ended:
            self.run.epoch(self._epochs, self._values, weights=self._weights(model))
            self._epochs += 1
            self._values, self._epoch_ended = {}, False

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict | None = None,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        values = scalars(metrics or {})
        if self._in_fit:
            self._values.update(_renamed(values, "eval_", "val_"))
            self._flush(model)  # only once the epoch has ended: eval_strategy="steps" evaluates inside it
            return
        self._test(values, "eval_", model)

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """The first batch of an evaluate outside training starts the test phase (and its clock)."""
        if not (self._in_fit or self._testing) and state.is_world_process_zero:
            self._start_test(kwargs.get("model"))

    def on_predict(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._in_fit and state.is_world_process_zero:
            self._test(scalars(metrics or {}), "test_", kwargs.get("model"))

    def _test(self, values: dict[str, float], prefix: str, model: torch.nn.Module | None) -> None:
        if not self._testing:
            self._start_test(model)
        self._testing = False
        self.run.evaluate(_renamed(values, prefix), weights=self._weights(model))

    def _start_test(self, model: torch.nn.Module | None) -> None:
        self._testing = True
        self.run.start("test", params(model) if model is not None else None)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._in_fit and state.is_world_process_zero:
            self._flush(kwargs.get("model"))
            self._in_fit = False
            self.run.end("train")
