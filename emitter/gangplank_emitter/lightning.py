"""``Emitter``: a Lightning callback (``lightning.pytorch``) that writes protocol v1 lines.

    trainer = lightning.Trainer(max_epochs=10, callbacks=[Emitter(job="mnist")])

Built on ``lightning.pytorch.Callback``, or on ``pytorch_lightning.Callback`` where only that
package is installed; ``gangplank_emitter.pytorch_lightning.Emitter`` is always the latter. Either
Trainer calls either (its hooks are looked up by name); the hooks are in ``lightning_hooks``.
"""

from __future__ import annotations

try:
    import lightning.pytorch as pl
    from lightning import __version__ as _version

    _package = "lightning"
except ImportError:
    import pytorch_lightning as pl  # type: ignore[no-redef]  # the same Callback API under its older name
    from pytorch_lightning import __version__ as _version

    _package = "pytorch_lightning"

from gangplank_emitter.lightning_hooks import LightningHooks


class Emitter(LightningHooks, pl.Callback):
    package = _package
    version = _version
