"""``Emitter``: the Lightning callback for the ``pytorch_lightning`` package (see ``lightning``)."""

from __future__ import annotations

import pytorch_lightning as pl

from gangplank_emitter.lightning_hooks import LightningHooks


class Emitter(LightningHooks, pl.Callback):
    package = "pytorch_lightning"
    version = pl.__version__
