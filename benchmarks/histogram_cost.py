"""The emitter's weight histogram, one array and a model's many: beside a plain numpy count.

    .venv/bin/python benchmarks/histogram_cost.py [--repeat 30]

float32 weights (normal, sd 0.3) over ``HISTOGRAM_WEIGHT_BUCKETS_1_0`` (21 bounds), as one
array and split into 20, 100 and 400 arrays (a model's kernels, biases and norms). The
reference is what one would write first: every array to float64, ``np.searchsorted`` on the
bounds, ``np.bincount``, a cumulative sum (exact ``le`` membership too). Best of ``--repeat``
(the machine is shared: the best run is the one the least disturbed); the counts are asserted equal.
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0
from gangplank_emitter.histogram import histogram

LE = HISTOGRAM_WEIGHT_BUCKETS_1_0


def reference(arrays: list[np.ndarray]) -> list[int]:
    bounds = np.asarray(LE)
    buckets = np.zeros(len(LE) + 1, dtype=np.int64)
    for a in arrays:
        buckets += np.bincount(np.searchsorted(bounds, a.astype(np.float64), side="left"), minlength=len(LE) + 1)
    return np.cumsum(buckets).tolist()


def best(call, repeat: int) -> float:
    return min(timeit.repeat(call, number=1, repeat=repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'weights':>10} {'arrays':>7} {'emitter':>10} {'reference':>10} {'ratio':>7}")
    for size in (100_000, 1_000_000, 4_000_000):
        weights = rng.normal(0, 0.3, size).astype(np.float32)
        for parts in (1, 20, 100, 400):
            arrays = np.array_split(weights, parts)
            assert histogram(arrays, LE)["counts"] == reference(arrays)
            repeat = max(3, args.repeat * 100_000 // size)
            ours = best(lambda arrays=arrays: histogram(arrays, LE), repeat)
            theirs = best(lambda arrays=arrays: reference(arrays), max(3, repeat // 4))
            print(f"{size:>10,} {parts:>7} {ours * 1e6:>8.0f}us {theirs * 1e6:>8.0f}us {theirs / ours:>6.1f}x")


if __name__ == "__main__":
    main()
