"""Training-time checks (Kepler K502, K505) from the weights at each epoch end.

Opt-in, because the tracker keeps a copy of the previous epoch's weights (plus a
fixed sample of at most UPDATE_SAMPLE coordinates of the last update per layer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import catalogue as c
from .catalogue import finding


def trainable_by_layer(model: Any) -> dict[str, list[np.ndarray]]:
    """A Keras model's trainable weights grouped by layer, in the shape update() takes."""
    grouped: dict[str, list[np.ndarray]] = {}
    for variable in getattr(model, "trainable_weights", []):
        layer = variable.path.rsplit("/", 1)[0] if "/" in variable.path else variable.path
        grouped.setdefault(layer, []).append(np.asarray(variable))
    return grouped


class UpdateTracker:
    """Per-layer update ratio ||w_t - w_t-1|| / ||w_t-1|| between consecutive calls."""

    def __init__(self) -> None:
        self._previous: dict[str, list[np.ndarray]] = {}
        self._last_step: dict[str, np.ndarray] = {}
        self._sample: dict[str, np.ndarray] = {}

    def update(self, weights: Mapping[str, Sequence[Any]]) -> list[dict]:
        """Take this epoch's weights (layer name -> arrays); return the K502/K505 findings."""
        vanishing, exploding, noisy = [], [], []
        for name, arrays in weights.items():
            current = [np.array(a, copy=True) for a in arrays]
            previous = self._previous.get(name)
            self._previous[name] = current
            if previous is None or [p.shape for p in previous] != [a.shape for a in current]:
                self._forget(name, current)
                continue
            if not all(np.isfinite(a).all() for a in current):
                exploding.append(f"{name} (non-finite weights)")
                continue
            steps = [(a - p).ravel() for a, p in zip(current, previous)]
            moved = float(np.sqrt(sum(float(s @ s) for s in steps)))
            size = float(np.sqrt(sum(float(p.ravel() @ p.ravel()) for p in previous)))
            if size > 0 or moved == 0:
                ratio = moved / size if size > 0 else 0.0
                if ratio < c.MIN_UPDATE_RATIO:
                    vanishing.append(f"{name} ({ratio:.2g})")
                elif ratio > c.MAX_UPDATE_RATIO:
                    exploding.append(f"{name} ({ratio:.2g})")
            step = np.concatenate(steps)[self._sample[name]].astype(np.float64)
            cosine = _cosine(step, self._last_step.get(name))
            self._last_step[name] = step
            if cosine is not None and cosine < c.MIN_UPDATE_COSINE:
                noisy.append(f"{name} ({cosine:.2f})")
        return _findings(vanishing, exploding, noisy)

    def _forget(self, name: str, current: list[np.ndarray]) -> None:
        size = sum(a.size for a in current)
        rng = np.random.default_rng(0)
        self._sample[name] = np.sort(rng.choice(size, min(size, c.UPDATE_SAMPLE), replace=False))
        self._last_step.pop(name, None)


def _cosine(step: np.ndarray, last: np.ndarray | None) -> float | None:
    if last is None:
        return None
    scale = float(np.linalg.norm(step) * np.linalg.norm(last))
    return float(step @ last) / scale if scale > 0 else None


def _findings(vanishing: list[str], exploding: list[str], noisy: list[str]) -> list[dict]:
    found = []
    parts = []
    if vanishing:
        parts.append(f"updates vanish (ratio below {c.MIN_UPDATE_RATIO:g}) in {', '.join(vanishing)}")
    if exploding:
        parts.append(f"updates explode (ratio above {c.MAX_UPDATE_RATIO:g}) in {', '.join(exploding)}")
    if parts:
        found.append(finding("K502", "; ".join(parts)))
    if noisy:
        found.append(
            finding(
                "K505",
                f"updates reverse direction from the last epoch (cosine below "
                f"{c.MIN_UPDATE_COSINE}) in {', '.join(noisy)}: lower the learning rate",
            )
        )
    return found
