"""``Emitter``: a Lightning callback (``lightning.pytorch``) that writes protocol v1 lines.

    trainer = lightning.Trainer(max_epochs=10, callbacks=[Emitter(job="mnist")])

Built on ``lightning.pytorch.Callback``, or on ``pytorch_lightning.Callback`` where only that
package is installed; ``gangplank_emitter.pytorch_lightning.Emitter`` is always the latter. Either
Trainer calls either (its hooks are looked up by name); the hooks are in ``lightning_hooks``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

try:
    import lightning.pytorch as pl
    from lightning import __version__ as _version

    _package = "lightning"
except ImportError:
    import pytorch_lightning as pl
    from pytorch_lightning import __version__ as _version

    _package = "pytorch_lightning"

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
            file, metrics, histogram_buckets, ignore_exceptions, job, step_every, package=_package, version=_version
        )
