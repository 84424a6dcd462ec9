"""Cumulative weight histograms with numpy: Prometheus ``le`` buckets, no per-weight Python.

Weights are compared with the bounds as float64 numbers. For float32 weights the bounds are
first rounded down to float32 (the largest float32 not above the bound), which gives the
same answer as a float64 comparison while keeping the arrays in float32.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

# Gangplank 0.5.0's bucket bounds, so that existing dashboards keep working.
HISTOGRAM_WEIGHT_BUCKETS_1_0 = [round(-1.0 + 0.1 * i, 1) for i in range(21)]
HISTOGRAM_WEIGHT_BUCKETS_0_3 = [round(-0.30 + 0.05 * i, 2) for i in range(13)]

_BLOCK = 1 << 18


def _thresholds(le: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Per bound, the largest value of ``dtype`` that is <= the bound."""
    if dtype == np.float64:
        return le
    down = le.astype(dtype)
    above = down.astype(np.float64) > le
    down[above] = np.nextafter(down[above], dtype.type(-np.inf))
    return down


def _as_float(array: object) -> np.ndarray:
    a = np.asarray(array).ravel()
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32 if a.dtype.kind == "f" and a.dtype.itemsize < 4 else np.float64)
    return a


def _batches(weights: Iterable[object]) -> Iterator[np.ndarray]:
    """The weights as float arrays of at least ``_BLOCK`` values where they allow it.

    A model is many arrays, most of them small (a bias, a norm's scale): each costs a few dozen
    numpy calls, so arrays of one dtype smaller than ``_BLOCK`` are packed together (a copy of
    at most ``_BLOCK`` values at a time); a larger array is counted where it lies.
    """
    pending: dict[np.dtype, list[np.ndarray]] = {}
    sizes: dict[np.dtype, int] = {}
    for array in weights:
        a = _as_float(array)
        if a.size >= _BLOCK:
            yield a
        elif a.size:
            pending.setdefault(a.dtype, []).append(a)
            sizes[a.dtype] = sizes.get(a.dtype, 0) + a.size
            if sizes[a.dtype] >= _BLOCK:
                yield np.concatenate(pending.pop(a.dtype))
                sizes[a.dtype] = 0
    for group in pending.values():
        yield group[0] if len(group) == 1 else np.concatenate(group)


def histogram(weights: Iterable[object], le: Sequence[float]) -> dict:
    """The protocol's ``weights`` object for arrays of weights and finite, sorted bounds."""
    bounds = np.asarray(le, dtype=np.float64)
    if bounds.ndim != 1 or not np.all(np.isfinite(bounds)) or np.any(np.diff(bounds) <= 0):
        raise ValueError("histogram bounds must be finite and strictly increasing")
    below = np.zeros(len(bounds), dtype=np.int64)
    count = nonfinite = 0
    total = 0.0
    low, high = np.inf, -np.inf
    thresholds: dict[np.dtype, np.ndarray] = {}
    for a in _batches(weights):
        with np.errstate(invalid="ignore", over="ignore"):
            s = float(np.sum(a, dtype=np.float64))
        if not np.isfinite(s):
            finite = np.isfinite(a)
            nonfinite += int(a.size - np.count_nonzero(finite))
            a = a[finite]
            if a.size == 0:
                continue
            with np.errstate(over="ignore"):
                s = float(np.sum(a, dtype=np.float64))
        total += s
        count += a.size
        low, high = min(low, float(a.min())), max(high, float(a.max()))
        if a.dtype not in thresholds:
            thresholds[a.dtype] = _thresholds(bounds, a.dtype)
        mask = np.empty(min(a.size, _BLOCK), dtype=bool)
        for start in range(0, a.size, _BLOCK):
            block = a[start : start + _BLOCK]
            m = mask[: block.size]
            for i, t in enumerate(thresholds[a.dtype]):
                np.less_equal(block, t, out=m)
                below[i] += np.count_nonzero(m)
    return {
        "le": bounds.tolist(),
        "counts": [*below.tolist(), count],
        "count": count,
        "sum": total,
        "min": low if count else None,
        "max": high if count else None,
        "nonfinite": nonfinite,
    }
