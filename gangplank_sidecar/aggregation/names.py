"""Metric keys to Prometheus names: the same key gets the same name for the life of a run."""

from __future__ import annotations

import re
from collections.abc import Iterable

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_VALID = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

# Names the sidecar itself exports under gangplank_<phase>_; a key may not take them.
RESERVED = frozenset(
    {
        "epochs_count",
        "elapsed_time_seconds",
        "model_parameters_count",
        "model_weights",
        "model_weights_bucket",
        "model_weights_count",
        "model_weights_sum",
        "step",
        "best",
        "best_epoch",
    }
)


def sanitize(key: str) -> str:
    """``val-loss`` -> ``val_loss``, ``1st`` -> ``_1st``: any key becomes a valid name."""
    name = _INVALID.sub("_", key)
    if not name or name[0].isdigit():
        name = "_" + name
    return name


class Names:
    """Assigns names to one run's keys, resolving collisions and remembering the answer.

    A key that is already a valid name keeps it; other keys that would take a name in use
    get ``_2``, ``_3``... in the order first seen (sorted within one record), so the
    mapping never changes during a run.
    """

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._taken: set[str] = set(RESERVED)
        self.collisions: list[tuple[str, str]] = []

    def map(self, keys: list[str]) -> dict[str, str]:
        """Names for ``keys``; new collisions are appended to ``collisions``."""
        for key in sorted(k for k in keys if k not in self._names):
            if _VALID.match(key) and key not in self._taken:
                self._assign(key, key)
        for key in sorted(k for k in keys if k not in self._names):
            name = base = sanitize(key)
            n = 1
            while name in self._taken:
                n += 1
                name = f"{base}_{n}"
            if n > 1:
                self.collisions.append((key, name))
            self._assign(key, name)
        return {k: self._names[k] for k in keys}

    def learn(self, keys: Iterable[str]) -> None:
        """Names the keys not seen yet: ``map`` without building its answer, for every record."""
        new = [k for k in keys if k not in self._names]
        if new:
            self.map(new)

    def _assign(self, key: str, name: str) -> None:
        self._names[key] = name
        self._taken.add(name)
