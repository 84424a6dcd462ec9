"""A metric's values over the epochs, in a bounded number of buckets, for the sparklines.

A run may last thousands of epochs and a sidecar keeps up to ``FINISHED_KEPT`` runs for its
summary, so a curve never holds more than ``MAX_BUCKETS`` buckets: when it is full, each two
neighbours merge into one (their epoch range, sum, count, min and max), which keeps the shape,
the true extremes and the epoch of every value's bucket.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

MAX_BUCKETS = 128  # even: a full curve merges in pairs


class Bucket(NamedTuple):
    first: int
    last: int
    total: float
    size: int  # values in the bucket (``count`` would shadow tuple.count)
    low: float  # over the finite values; NaN when there are none
    high: float
    nonfinite: int

    @staticmethod
    def of(epoch: int, value: float) -> Bucket:
        # tuple.__new__: one is built per value, and Bucket(...)'s argument handling (or _make's checks) would
        # double its cost
        if math.isfinite(value):
            return _new_bucket(Bucket, (epoch, epoch, value, 1, value, value, 0))
        return _new_bucket(Bucket, (epoch, epoch, 0.0, 1, math.nan, math.nan, 1))

    def merge(self, other: Bucket) -> Bucket:
        return Bucket(
            self.first,
            other.last,
            self.total + other.total,
            self.size + other.size,
            _pick(min, self.low, other.low),
            _pick(max, self.high, other.high),
            self.nonfinite + other.nonfinite,
        )

    @property
    def mean(self) -> float:
        """The mean of the finite values, NaN when any value was not finite (a divergence shows)."""
        finite = self.size - self.nonfinite
        return self.total / finite if finite and not self.nonfinite else math.nan


_new_bucket = tuple.__new__  # a Bucket without NamedTuple's Python-level __new__


def _merged_with(b: Bucket, epoch: int, value: float) -> Bucket:
    """``b.merge(Bucket.of(epoch, value))`` without the bucket in between: every epoch of a long run comes here."""
    first, _, total, size, low, high, nonfinite = b
    if value - value != 0.0:  # NaN or infinite
        return _new_bucket(Bucket, (first, epoch, total + 0.0, size + 1, low, high, nonfinite + 1))
    low = value if value < low or low != low else low  # low and high are NaN (!= themselves) before a finite value
    high = value if value > high or high != high else high
    return _new_bucket(Bucket, (first, epoch, total + value, size + 1, low, high, nonfinite))


def _pick(choose: Callable[[float, float], float], a: float, b: float) -> float:
    if math.isnan(a):
        return b
    return a if math.isnan(b) else choose(a, b)


class Curve:
    """The (epoch, value) points of the epochs that measured a metric, appended in epoch order.

    The same epoch again replaces its value (text formats bring an epoch's rows one by one):
    the last bucket is rebuilt from ``_before``, that bucket as it was before the epoch came.
    """

    __slots__ = ("_before", "buckets", "span")

    def __init__(self) -> None:
        self.buckets: list[Bucket] = []
        self.span = 1  # values per bucket; doubles at each merge
        self._before: Bucket | None = None  # the last bucket without its latest epoch; None: that epoch alone

    @classmethod
    def of(cls, points: list[tuple[int, float]]) -> Curve:
        curve = cls()
        for epoch, value in points:
            curve.add(epoch, value)
        return curve

    def add(self, epoch: int, value: float) -> None:
        """A value of ``epoch``, which is the latest epoch or a later one."""
        buckets = self.buckets
        if buckets:
            last = buckets[-1]
            if last[1] == epoch:  # the same epoch again
                before = self._before
                buckets[-1] = Bucket.of(epoch, value) if before is None else _merged_with(before, epoch, value)
                return
            if last[3] < self.span:
                self._before = last
                buckets[-1] = _merged_with(last, epoch, value)
                return
            if len(buckets) == MAX_BUCKETS:  # every bucket is full: merge them in pairs
                buckets = self.buckets = [a.merge(b) for a, b in zip(buckets[::2], buckets[1::2])]
                self.span *= 2
        self._before = None
        buckets.append(Bucket.of(epoch, value))

    def columns(self, width: int) -> list[Bucket]:
        """At most ``width`` buckets, each the merge of consecutive ones."""
        return self.buckets if len(self.buckets) <= width else merged(self.buckets, width)

    def __deepcopy__(self, memo: dict) -> Curve:
        """Buckets are immutable: a snapshot copies one list, not every number."""
        copy = Curve()
        copy.buckets, copy.span, copy._before = list(self.buckets), self.span, self._before
        return copy


def merged(buckets: list[Bucket], width: int) -> list[Bucket]:
    """``width`` buckets of consecutive ones, as even as the counts allow."""
    n = len(buckets)
    out: list[Bucket] = []
    for i in range(width):
        group = buckets[i * n // width : (i + 1) * n // width]
        if group:
            bucket = group[0]
            for other in group[1:]:
                bucket = bucket.merge(other)
            out.append(bucket)
    return out
