"""``Emitter``: the Keras 3 callback, under the same module layout as the other frameworks'."""

from gangplank_emitter.callback import Emitter

__all__ = ["Emitter"]
