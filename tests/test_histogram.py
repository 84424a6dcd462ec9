"""The emitter's numpy histogram against a brute-force count and against Gangplank 0.5.0."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0
from gangplank_emitter.histogram import histogram

# Weights-like magnitudes: the sum is accumulated in float64 (numpy's pairwise sum), which is not
# compensated, so values of 1e300 and 1 would cancel differently than math.fsum.
nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])
floats32 = hnp.arrays(np.float32, st.integers(0, 300), elements=st.one_of(st.floats(-1e6, 1e6, width=32), nonfinite))
floats64 = hnp.arrays(np.float64, st.integers(0, 300), elements=st.one_of(st.floats(-1e6, 1e6), nonfinite))
bounds = st.lists(st.floats(-2, 2, allow_nan=False), min_size=1, max_size=12, unique=True).map(sorted)


def brute_force(arrays: list[np.ndarray], le: list[float]) -> dict:
    finite = [float(x) for a in arrays for x in a.ravel() if math.isfinite(float(x))]
    return {
        "counts": [sum(1 for x in finite if x <= b) for b in le] + [len(finite)],
        "count": len(finite),
        "nonfinite": sum(a.size for a in arrays) - len(finite),
        "min": min(finite, default=None),
        "max": max(finite, default=None),
        "sum": math.fsum(finite),
    }


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(floats32, floats64), max_size=4), bounds)
def test_counts_equal_brute_force(arrays: list[np.ndarray], le: list[float]) -> None:
    # Values equal to a bound must land in that bound's bucket: put some there on purpose.
    arrays = [*arrays, np.asarray(le, dtype=np.float64), np.asarray(le, dtype=np.float32)]
    got, want = histogram(arrays, le), brute_force(arrays, le)
    assert got["le"] == le
    for key in ("counts", "count", "nonfinite", "min", "max"):
        assert got[key] == want[key], key
    assert got["sum"] == pytest.approx(want["sum"], rel=1e-9, abs=1e-6)


def test_bound_semantics_in_float64() -> None:
    """np.float32(0.1) is 0.10000000149 > 0.1: above the bound, as Prometheus would say."""
    h = histogram([np.float32([0.1, -0.1, 0.0, -0.0])], [-0.1, 0.0, 0.1])
    assert h["counts"] == [1, 3, 3, 4]


def test_sum_overflow_is_infinite_not_nonfinite_weights() -> None:
    h = histogram([np.array([1e308, 1e308])], [0.0])
    assert h["sum"] == math.inf and h["nonfinite"] == 0 and h["counts"] == [0, 2]


def test_empty_and_all_nonfinite() -> None:
    h = histogram([np.array([]), np.array([np.nan, np.inf, -np.inf])], [0.0])
    assert h == {"le": [0.0], "counts": [0, 0], "count": 0, "sum": 0.0, "min": None, "max": None, "nonfinite": 3}


def test_other_dtypes_and_shapes() -> None:
    h = histogram([np.array([[1, 2], [3, 4]], dtype=np.int64), np.float16([0.5, 2.5]), [[-1.0]]], [0.0, 1.0, 2.0])
    assert h["counts"] == [1, 3, 4, 7] and h["sum"] == 12.0


def test_blocks_larger_than_one_pass() -> None:
    w = np.random.default_rng(0).normal(0, 0.3, 600_000).astype(np.float32)
    w64 = w.astype(np.float64)
    h = histogram([w], HISTOGRAM_WEIGHT_BUCKETS_0_3)
    assert h["counts"] == [int(np.count_nonzero(w64 <= b)) for b in HISTOGRAM_WEIGHT_BUCKETS_0_3] + [w.size]


@pytest.mark.parametrize("le", [[], [1.0, 0.0], [0.0, 0.0], [0.0, math.inf], [math.nan]])
def test_bad_bounds_are_refused(le: list[float]) -> None:
    with pytest.raises(ValueError, match="bounds"):
        histogram([np.zeros(3)], le) if le else histogram([np.zeros(3)], np.zeros((2, 2)))


def gangplank_counts(weights: np.ndarray, le: list[float]) -> list[float]:
    """What Gangplank 0.5.0's exporter pushes for these weights (its Histogram, fed one by one)."""
    import gangplank
    from prometheus_client import CollectorRegistry, Histogram

    assert gangplank.HISTOGRAM_WEIGHT_BUCKETS_1_0  # the reference peer is really installed
    h = Histogram("gangplank_train_model_weights", "model trainable weights", buckets=le, registry=CollectorRegistry())
    for w in weights.tolist():
        h.observe(w)
    return [s.value for s in h.collect()[0].samples if s.name.endswith("_bucket")]


def test_bucket_constants_are_gangplanks() -> None:
    import gangplank

    assert HISTOGRAM_WEIGHT_BUCKETS_1_0 == gangplank.HISTOGRAM_WEIGHT_BUCKETS_1_0
    assert HISTOGRAM_WEIGHT_BUCKETS_0_3 == gangplank.HISTOGRAM_WEIGHT_BUCKETS_0_3


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(np.float32, st.integers(0, 200), elements=st.floats(-1.5, 1.5, width=32)),
    st.sampled_from([HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0]),
)
def test_counts_equal_gangplank(weights: np.ndarray, le: list[float]) -> None:
    # On the bounds themselves too; Gangplank sees the weights as float64 (see README).
    weights = np.concatenate([weights, np.float32(le)])
    assert histogram([weights], le)["counts"] == gangplank_counts(weights, le)


@st.composite
def even_bounds(draw) -> list[float]:
    """Evenly spaced bounds as people write them (rounded decimals) or as a float progression."""
    n = draw(st.integers(2, 40))
    step = draw(st.sampled_from([0.05, 0.1, 0.25, 1.0, 1e-3, 0.3, 7.0]))
    first = draw(st.integers(-n, 2)) * step
    digits = draw(st.sampled_from([None, 2, 3, 6]))
    bounds = [first + i * step if digits is None else round(first + i * step, digits) for i in range(n)]
    return sorted(set(bounds))


@st.composite
def weights_near(draw, le: list[float]) -> list[np.ndarray]:
    """Weights on the bounds, a few ulps either side of them, tiny, huge and random."""
    picks = [le[i] for i in draw(st.lists(st.integers(0, len(le) - 1), max_size=30))]
    values = []
    for bound in picks:
        for dtype in (np.float64, np.float32):
            v = dtype(bound)
            for _ in range(draw(st.integers(0, 3))):
                v = np.nextafter(v, dtype(draw(st.sampled_from([-np.inf, np.inf]))))
            values.append((dtype, v))
    extra = draw(
        st.lists(
            st.one_of(
                st.floats(-3 * abs(le[-1]) - 3, 3 * abs(le[-1]) + 3),
                st.sampled_from([0.0, -0.0, 1e-30, -1e-30, 1e-45, 3e38, -3e38, 1e300, math.inf, math.nan]),
            ),
            max_size=30,
        )
    )
    values += [(np.float64, np.float64(x)) for x in extra] + [
        (np.float32, np.float32(x)) for x in extra if abs(x) < 3e38 or not math.isfinite(x)
    ]
    return [np.array([v for d, v in values if d is dtype], dtype=dtype) for dtype in (np.float64, np.float32)]


@settings(max_examples=400, deadline=None)
@given(even_bounds().flatmap(lambda le: st.tuples(st.just(le), weights_near(le))))
def test_evenly_spaced_bounds_count_exactly_at_the_bounds(case) -> None:
    le, arrays = case
    got, want = histogram(arrays, le), brute_force(arrays, le)
    for key in ("counts", "count", "nonfinite"):
        assert got[key] == want[key], key


def test_the_shipped_bounds_count_a_large_array_exactly() -> None:
    w = np.random.default_rng(1).normal(0, 0.5, 300_000).astype(np.float32)
    w[:21] = np.float32(HISTOGRAM_WEIGHT_BUCKETS_1_0)  # and some on the bounds themselves
    w64 = w.astype(np.float64)
    expected = [int(np.count_nonzero(w64 <= b)) for b in HISTOGRAM_WEIGHT_BUCKETS_1_0] + [w.size]
    assert histogram([w], HISTOGRAM_WEIGHT_BUCKETS_1_0)["counts"] == expected
    assert histogram([w64], HISTOGRAM_WEIGHT_BUCKETS_1_0)["counts"] == expected


@settings(max_examples=200, deadline=None)
@given(
    even_bounds().flatmap(lambda le: st.tuples(st.just(le), weights_near(le))),
    st.lists(st.integers(0, 40), max_size=12),
    st.sampled_from([1, 3, 16, 64]),
)
def test_many_small_arrays_packed_together_count_as_one(case, cuts: list[int], block: int) -> None:
    """Arrays smaller than a block are packed per dtype (here with tiny blocks, so packs fill, flush and
    mix with arrays counted in place): the same counts as the whole, on the bounds, their float32
    neighbours, +-0, subnormals, NaN and infinities."""
    import gangplank_emitter.histogram as module

    le, (w64, w32) = case
    pieces: list[np.ndarray] = []
    for whole in (w64, w32, np.float16(w32[np.abs(w32) < 6e4]), np.int64(np.arange(len(cuts)) - 3)):
        edges = sorted({min(c, whole.size) for c in cuts} | {0, whole.size})
        pieces += [whole[a:b] for a, b in zip(edges, edges[1:])]
    pieces = pieces[::2] + pieces[1::2]  # dtypes interleaved
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_BLOCK", block)
        got = histogram(iter(pieces), le)
    want = brute_force(pieces, le)
    for key in ("counts", "count", "nonfinite", "min", "max"):  # not the sum: 3e38 - 3e38 cancels as it may
        assert got[key] == want[key], key
