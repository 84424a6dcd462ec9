"""gangplank_emitter: one JSON line per epoch for gangplank-sidecar; numpy only, no network.

``Emitter`` (the Keras callback) is imported on first use, so ``Run`` works without Keras. The
callbacks of each framework are in their own modules, imported only by who asks for them:
``gangplank_emitter.keras``, ``.transformers``, ``.lightning`` and ``.pytorch_lightning``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gangplank_emitter.checks import inspect_data
from gangplank_emitter.histogram import HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0
from gangplank_emitter.run import Run

if TYPE_CHECKING:
    from gangplank_emitter.callback import Emitter

__all__ = ["Emitter", "Run", "inspect_data", "HISTOGRAM_WEIGHT_BUCKETS_0_3", "HISTOGRAM_WEIGHT_BUCKETS_1_0"]


def __getattr__(name: str) -> object:
    if name == "Emitter":
        from gangplank_emitter.callback import Emitter

        return Emitter
    raise AttributeError(f"module 'gangplank_emitter' has no attribute {name!r}")
