"""Which way a metric improves: shared by the run state, the summary and ``gangplank-runs``."""

from __future__ import annotations

import functools

_LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "mape", "msle", "crossentropy", "hinge", "divergence", "perplexity")


@functools.lru_cache(maxsize=4096)
def lower_is_better(key: str) -> bool:
    """Whether a smaller value of this metric is the better one (losses and errors)."""
    key = key.lower()
    return any(word in key for word in _LOWER_IS_BETTER)
