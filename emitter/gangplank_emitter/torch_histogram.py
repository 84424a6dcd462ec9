"""Cumulative weight histograms of torch tensors, counted on the tensors' own device.

Only the bucket counts, the sum, min and max (and the non-finite count) leave the device, so a
GPU model is never copied to the host. The answer is the numpy path's (``histogram.histogram``):
weights are compared with the bounds as float64 numbers, a weight equal to a bound counts in
that bound's bucket. For a float32 tensor each bound is first rounded down to the largest
float32 not above it, so that ``w <= t32`` holds exactly when ``float64(w) <= bound``.

Tensors already in host memory are counted by the numpy path on a view of their memory (no copy):
torch's CPU ``bucketize`` is a scalar binary search, several times slower than numpy's passes
(benchmarks/emitter_torch.py), while on an accelerator it is the fast way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from gangplank_emitter.histogram import histogram as numpy_histogram

_BLOCK = 1 << 24


def _thresholds(bounds: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Per bound, the largest value of ``dtype`` (float32 or float64) that is <= the bound."""
    if dtype == torch.float64:
        return torch.tensor(bounds, dtype=dtype, device=device)
    down = bounds.astype(np.float32)
    above = down.astype(np.float64) > bounds
    down[above] = np.nextafter(down[above], np.float32(-np.inf))
    return torch.tensor(down, dtype=dtype, device=device)


def _compared_as(dtype: torch.dtype) -> torch.dtype:
    """float32 and float64 as they are; narrower floats widened to float32, anything else to float64."""
    if dtype in (torch.float32, torch.float64):
        return dtype
    return torch.float32 if dtype.is_floating_point else torch.float64


def _stats(t: torch.Tensor, thresholds: torch.Tensor) -> list[float]:
    """[sum, min, max, bucket counts...] of a non-empty 1-D tensor, in one transfer to the host.

    Bucketed by blocks, so that the temporaries (the indices, a widened copy of a half-precision
    block) stay small beside a large embedding."""
    counts = torch.zeros(len(thresholds) + 1, dtype=torch.int64, device=t.device)
    for start in range(0, t.numel(), _BLOCK):
        block = t[start : start + _BLOCK].to(thresholds.dtype)
        counts += torch.bincount(torch.bucketize(block, thresholds, out_int32=True), minlength=len(thresholds) + 1)
    low, high = torch.aminmax(t)
    head = torch.stack([t.sum(dtype=torch.float64), low.double(), high.double()])
    return torch.cat([head, counts.double()]).tolist()


def histogram(tensors: Iterable[torch.Tensor], le: Sequence[float]) -> dict:
    """The protocol's ``weights`` object for tensors and finite, strictly increasing bounds."""
    on_host: list[torch.Tensor] = []
    on_device: list[torch.Tensor] = []
    for tensor in tensors:
        (on_host if tensor.device.type == "cpu" else on_device).append(tensor)
    if not on_device:
        return numpy_histogram((_host_view(t) for t in on_host), le)
    if not on_host:
        return device_histogram(on_device, le)
    return merge(numpy_histogram((_host_view(t) for t in on_host), le), device_histogram(on_device, le))


def _host_view(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor's memory as a numpy array; only types numpy lacks (bfloat16) are converted."""
    t = tensor.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy()


def merge(a: dict, b: dict) -> dict:
    """Two histograms over the same bounds as one."""
    mins = [x for x in (a["min"], b["min"]) if x is not None]
    maxs = [x for x in (a["max"], b["max"]) if x is not None]
    return {
        "le": a["le"],
        "counts": [x + y for x, y in zip(a["counts"], b["counts"])],
        "count": a["count"] + b["count"],
        "sum": a["sum"] + b["sum"],
        "min": min(mins) if mins else None,
        "max": max(maxs) if maxs else None,
        "nonfinite": a["nonfinite"] + b["nonfinite"],
    }


def device_histogram(tensors: Iterable[torch.Tensor], le: Sequence[float]) -> dict:
    """Counted with torch wherever the tensors are: ``bucketize`` and ``bincount``, one transfer per tensor."""
    bounds = np.asarray(le, dtype=np.float64)
    if bounds.ndim != 1 or not np.all(np.isfinite(bounds)) or np.any(np.diff(bounds) <= 0):
        raise ValueError("histogram bounds must be finite and strictly increasing")
    below = np.zeros(len(bounds) + 1, dtype=np.int64)
    count = nonfinite = 0
    total = 0.0
    low, high = math.inf, -math.inf
    cache: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
    with torch.no_grad():
        for tensor in tensors:
            t = tensor.detach().reshape(-1)
            if t.numel() == 0:
                continue
            if t.dtype == torch.bool:
                t = t.double()
            key = (_compared_as(t.dtype), t.device)
            if key not in cache:
                cache[key] = _thresholds(bounds, *key)
            stats = _stats(t, cache[key])
            if not math.isfinite(stats[0]):
                finite = torch.isfinite(t)
                kept = int(finite.sum())
                nonfinite += t.numel() - kept
                if kept == 0:
                    continue
                t = t[finite]
                stats = _stats(t, cache[key])
            total += stats[0]
            low, high = min(low, stats[1]), max(high, stats[2])
            below += np.asarray(stats[3:], dtype=np.int64)
            count += t.numel()
    cumulative = np.cumsum(below)
    return {
        "le": bounds.tolist(),
        "counts": cumulative.tolist(),
        "count": count,
        "sum": total,
        "min": low if count else None,
        "max": high if count else None,
        "nonfinite": nonfinite,
    }
