"""The torch histogram equals the numpy path, bucket for bucket.

``device_histogram`` is the torch kernel used for tensors on an accelerator (run here on CPU
tensors); ``histogram`` sends host tensors to numpy on a view of their memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0
from gangplank_emitter.histogram import histogram as numpy_histogram
from gangplank_emitter.torch_histogram import device_histogram, histogram, merge

finite64 = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
bounds_st = st.one_of(
    st.just(HISTOGRAM_WEIGHT_BUCKETS_1_0),
    st.just(HISTOGRAM_WEIGHT_BUCKETS_0_3),
    st.lists(finite64, min_size=1, max_size=12, unique=True).map(sorted),
)


def near(bounds: list[float], dtype: type) -> list[float]:
    """Each bound as a value of ``dtype`` and the values of ``dtype`` just around it."""
    out = []
    for b in bounds:
        x = dtype(b)
        out += [x, np.nextafter(x, dtype(-np.inf)), np.nextafter(x, dtype(np.inf))]
    return [float(v) for v in out]


@st.composite
def case(draw: st.DrawFn) -> tuple[list[float], list[np.ndarray]]:
    bounds = draw(bounds_st)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    pool = near(bounds, dtype) + list(bounds) + [math.nan, math.inf, -math.inf, 0.0, -0.0]
    values = st.one_of(st.sampled_from(pool), st.floats(width=32 if dtype is np.float32 else 64))
    arrays = draw(st.lists(st.lists(values, max_size=40), min_size=1, max_size=4))
    return bounds, [np.asarray(a, dtype=dtype) for a in arrays]


def brute_force(arrays: list[np.ndarray], bounds: list[float]) -> list[int]:
    """Cumulative counts by comparing each finite weight with each bound as Python floats (float64)."""
    finite = [float(x) for a in arrays for x in a.tolist() if math.isfinite(x)]
    return [sum(x <= b for x in finite) for b in bounds] + [len(finite)]


@settings(max_examples=300, deadline=None)
@given(case())
def test_torch_equals_numpy_bucket_for_bucket(drawn: tuple[list[float], list[np.ndarray]]) -> None:
    bounds, arrays = drawn
    tensors = [torch.from_numpy(a) for a in arrays]
    want = numpy_histogram(arrays, bounds)
    assert want["counts"] == brute_force(arrays, bounds)
    half = len(tensors) // 2
    merged = merge(device_histogram(tensors[:half], bounds), device_histogram(tensors[half:], bounds))
    scale = sum(abs(float(x)) for a in arrays for x in a.tolist() if math.isfinite(x))
    for got in (device_histogram(tensors, bounds), histogram(tensors, bounds), merged):
        for key in ("le", "counts", "count", "min", "max", "nonfinite"):
            assert got[key] == want[key], key
        assert got["sum"] == want["sum"] or abs(got["sum"] - want["sum"]) <= 1e-12 * scale  # equal when both overflow


def test_a_float32_weight_equal_to_a_bound_counts_in_it_and_its_neighbours_do_not() -> None:
    """0.1 is not a float32: float32(0.1) > 0.1, so it is above the bound; the float32 just below is in."""
    below = np.nextafter(np.float32(0.1), np.float32(0))
    weights = torch.tensor([np.float32(0.1), below, 0.0, -1.0], dtype=torch.float32)
    got = device_histogram([weights], [-1.0, 0.0, 0.1])
    assert got["counts"] == [1, 2, 3, 4]
    exact = torch.tensor([0.1, -1.0, 0.0], dtype=torch.float64)
    assert device_histogram([exact], [-1.0, 0.0, 0.1])["counts"] == [1, 2, 3, 3]


def test_nonfinite_weights_are_in_no_bucket() -> None:
    weights = torch.tensor([math.nan, math.inf, -math.inf, 0.5, -0.5])
    got = device_histogram([weights, torch.empty(0)], [0.0])
    assert got == {"le": [0.0], "counts": [1, 2], "count": 2, "sum": 0.0, "min": -0.5, "max": 0.5, "nonfinite": 3}
    only_nan = device_histogram([torch.tensor([math.nan])], [0.0])
    assert (only_nan["counts"], only_nan["min"], only_nan["nonfinite"]) == ([0, 0], None, 1)


def test_half_precision_and_integer_tensors_widen_like_numpy() -> None:
    half = torch.tensor([0.1, -0.3, 0.3, 2.0], dtype=torch.float16)
    ints = torch.tensor([-1, 0, 1, 5])
    for tensor in (half, ints):
        want = numpy_histogram([tensor.numpy()], HISTOGRAM_WEIGHT_BUCKETS_0_3)
        assert (
            device_histogram([tensor], HISTOGRAM_WEIGHT_BUCKETS_0_3)
            == histogram([tensor], HISTOGRAM_WEIGHT_BUCKETS_0_3)
            == want
        )
    brain = torch.tensor([0.1, -0.3, 0.3, 2.0], dtype=torch.bfloat16)  # numpy has no bfloat16: widened to float32
    want = numpy_histogram([brain.float().numpy()], HISTOGRAM_WEIGHT_BUCKETS_0_3)
    assert (
        device_histogram([brain], HISTOGRAM_WEIGHT_BUCKETS_0_3)
        == histogram([brain], HISTOGRAM_WEIGHT_BUCKETS_0_3)
        == want
    )


def test_parameters_with_gradients_are_counted_without_changing_them() -> None:
    layer = torch.nn.Linear(30, 20)
    before = [p.detach().clone() for p in layer.parameters()]
    want = numpy_histogram([p.detach().numpy() for p in layer.parameters()], HISTOGRAM_WEIGHT_BUCKETS_1_0)
    for count in (device_histogram, histogram):
        got = count(layer.parameters(), HISTOGRAM_WEIGHT_BUCKETS_1_0)
        assert got["counts"] == want["counts"] and got["count"] == 30 * 20 + 20
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        device_histogram([torch.zeros(3)], [0.0, 0.0])


def test_a_tensor_is_counted_in_blocks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import gangplank_emitter.torch_histogram as module

    monkeypatch.setattr(module, "_BLOCK", 7)  # 16M elements in real use: here 103 values make 15 blocks
    values = np.random.default_rng(3).normal(0, 0.5, 103)
    for dtype in (torch.float16, torch.float32, torch.float64):
        tensor = torch.tensor(values).to(dtype)
        want = numpy_histogram(
            [tensor.float().numpy() if dtype == torch.float16 else tensor.numpy()], HISTOGRAM_WEIGHT_BUCKETS_0_3
        )
        assert device_histogram([tensor], HISTOGRAM_WEIGHT_BUCKETS_0_3) == {
            **want,
            "sum": pytest.approx(want["sum"], rel=1e-12),
        }
    mask = torch.tensor([True, False, True])
    assert (
        device_histogram([mask], [0.0, 1.0])["counts"]
        == numpy_histogram([mask.numpy()], [0.0, 1.0])["counts"]
        == [1, 3, 3]
    )
