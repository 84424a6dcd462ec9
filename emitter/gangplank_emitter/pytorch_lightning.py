"""``Emitter``: the Lightning callback for the ``pytorch_lightning`` package (see ``lightning``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytorch_lightning as pl

from gangplank_emitter.lightning_hooks import LightningHooks


class Emitter(LightningHooks, pl.Callback):
    def __init__(
        self,
        file: str | os.PathLike[str] | None = None,
        metrics: Sequence[str] | None = None,
        histogram_buckets: Sequence[float] | None = None,
        ignore_exceptions: bool = True,
        job: str | None = None,
        step_every: int | None = None,
    ) -> None:
        super().__init__(
            file, metrics, histogram_buckets, ignore_exceptions, job, step_every, package="pytorch_lightning", version=pl.__version__
        )
