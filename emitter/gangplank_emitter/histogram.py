"""Cumulative weight histograms with numpy: Prometheus ``le`` buckets, no per-weight Python.

Weights are compared with the bounds as float64 numbers. For float32 weights the bounds are
first rounded down to float32 (the largest float32 not above the bound), which gives the
same answer as a float64 comparison while keeping the arrays in float32.

Evenly spaced bounds (the shipped sets) are counted in one pass: each weight's bucket is
computed from its distance to the first bound, then counted with ``np.bincount``. Only the
weights that land within ``_NEAR`` of a step from a bound, where rounding could put them on
the wrong side, are placed by an exact comparison (``searchsorted``). Other bounds take one
comparison pass per bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# Gangplank 0.5.0's bucket bounds, so that existing dashboards keep working.
HISTOGRAM_WEIGHT_BUCKETS_1_0 = [round(-1.0 + 0.1 * i, 1) for i in range(21)]
HISTOGRAM_WEIGHT_BUCKETS_0_3 = [round(-0.30 + 0.05 * i, 2) for i in range(13)]

_BLOCK = 1 << 16
_NEAR = 1e-3  # in steps: far more than the rounding of the index, far less than a step
_MAX_EVEN = 254  # bounds the one-pass count takes, and how far outside them (in steps) the first may lie


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


def histogram(weights: Iterable[object], le: Sequence[float]) -> dict:
    """The protocol's ``weights`` object for arrays of weights and finite, sorted bounds."""
    bounds = np.asarray(le, dtype=np.float64)
    if bounds.ndim != 1 or not np.all(np.isfinite(bounds)) or np.any(np.diff(bounds) <= 0):
        raise ValueError("histogram bounds must be finite and strictly increasing")
    below = np.zeros(len(bounds), dtype=np.int64)
    step = _even_step(bounds)
    count = nonfinite = 0
    total = 0.0
    low, high = np.inf, -np.inf
    for array in weights:
        a = _as_float(array)
        if a.size == 0:
            continue
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
        thresholds = _thresholds(bounds, a.dtype)
        if step is None or not _representable(step, a.dtype):
            _count_per_bound(a, thresholds, below)
        else:
            _count_even(a, thresholds, bounds[0], step, below)
    return {
        "le": bounds.tolist(),
        "counts": [*below.tolist(), count],
        "count": count,
        "sum": total,
        "min": low if count else None,
        "max": high if count else None,
        "nonfinite": nonfinite,
    }


def _even_step(bounds: np.ndarray) -> float | None:
    """The step of bounds that are evenly spaced (within a millionth of it) and not too many or far out; else None."""
    n = len(bounds)
    if n < 2 or n > _MAX_EVEN:
        return None
    step = float(bounds[-1] - bounds[0]) / (n - 1)
    if max(abs(bounds[0]), abs(bounds[-1])) > _MAX_EVEN * step:
        return None
    progression = bounds[0] + step * np.arange(n)
    return step if float(np.max(np.abs(bounds - progression))) <= 1e-6 * step else None


def _representable(step: float, dtype: np.dtype) -> bool:
    """Whether ``dtype`` holds the step and its inverse with full precision (far from subnormal and overflow)."""
    info = np.finfo(dtype)
    return float(info.tiny) * 2**32 < step < float(info.max) / 2**32


def _count_per_bound(a: np.ndarray, thresholds: np.ndarray, below: np.ndarray) -> None:
    """Adds to ``below[i]`` the weights <= ``thresholds[i]``: one comparison pass per bound."""
    mask = np.empty(min(a.size, _BLOCK), dtype=bool)
    for start in range(0, a.size, _BLOCK):
        block = a[start : start + _BLOCK]
        m = mask[: block.size]
        for i, t in enumerate(thresholds):
            np.less_equal(block, t, out=m)
            below[i] += np.count_nonzero(m)


def _count_even(a: np.ndarray, thresholds: np.ndarray, first: float, step: float, below: np.ndarray) -> None:
    """``_count_per_bound`` for evenly spaced bounds, in one pass.

    A weight's bucket (the number of bounds below it) is ceil((w - first) / step), clipped to
    [0, n]: exact unless the weight lies within ``_NEAR`` of a step from a bound, and those
    few are placed by comparing them with the thresholds themselves.
    """
    n = len(thresholds)
    origin, scale = a.dtype.type(first), a.dtype.type(1.0 / step)
    index = np.empty(min(a.size, _BLOCK), dtype=a.dtype)
    off = np.empty_like(index)
    buckets = np.zeros(n + 1, dtype=np.int64)
    for start in range(0, a.size, _BLOCK):
        block = a[start : start + _BLOCK]
        x, d = index[: block.size], off[: block.size]
        with np.errstate(over="ignore", invalid="ignore"):  # a huge weight far outside the bounds: clipped below
            np.subtract(block, origin, out=x)
            np.multiply(x, scale, out=x)
            np.rint(x, out=d)
            np.subtract(x, d, out=d)
            np.abs(d, out=d)
            near = np.flatnonzero(d <= _NEAR)
        np.ceil(x, out=x)
        np.clip(x, 0, n, out=x)
        bucket = x.astype(np.intp)
        if near.size:
            bucket[near] = np.searchsorted(thresholds, block[near], side="left")
        buckets += np.bincount(bucket, minlength=n + 1)
    below += np.cumsum(buckets[:n])
