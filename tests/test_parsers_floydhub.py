"""FloydHub lines: golden values from the fixture, the errors users get, and arbitrary bytes."""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gangplank_sidecar.parsers.floydhub import Point, parse

FIXTURE = Path(__file__).parent / "fixtures" / "floydhub.log"
NAN, INF = math.nan, math.inf


def outcome(line: bytes) -> list[Point] | str:
    try:
        return parse(line)
    except ValueError as exc:
        return f"error: {exc}"


def test_fixture_golden() -> None:
    got = [outcome(line) for line in FIXTURE.read_bytes().split(b"\n")]
    expected = [
        [],
        [Point("accuracy", 0.985, None, None)],
        [Point("loss", 0.03, 1, None)],
        [Point("val_loss", NAN, 1, None)],
        [Point("top-5 acc", 1.0, 1, None)],
        [Point("loss", 1.0675e-04, 2, 200)],
        [Point("grad_norm", INF, None, 250)],
        [Point("val_loss", -INF, 2, None)],
        [Point("lr", -INF, None, None)],
        "error: bad FloydHub line: value must be a number",
        "error: bad FloydHub line: Expecting ',' delimiter: line 1 column 18 (char 17)",
        [],
        [],
        [Point("accuracy", 0.99, 3, None)],
        [Point("loss", 0.01, 3, None)],
    ]
    assert repr(got) == repr(expected)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"metric": 1, "value": 2}', "metric must be a non-empty string"),
        (b'{"metric": "", "value": 2}', "metric must be a non-empty string"),
        (b'{"metric": "a"}', "value must be a number"),
        (b'{"metric": "a", "value": true}', "value must be a number"),
        (b'{"metric": "a", "value": "nan"}', "value must be a number"),
        (b'{"metric": "a", "value": [1]}', "value must be a number"),
        (b'{"metric": "a", "value": 1, "epoch": 1.5}', "epoch must be a non-negative integer"),
        (b'{"metric": "a", "value": 1, "epoch": "3"}', "epoch must be a non-negative integer"),
        (b'{"metric": "a", "value": 1, "step": -1}', "step must be a non-negative integer"),
        (b'{"metric": "a", "value": 1, "step": false}', "step must be a non-negative integer"),
        (b'{"metric": "a", "value": 1} trailing', "Extra data: line 1 column 29 (char 28)"),
        (b'{"metric": "a", "value": 1', "Expecting ',' delimiter: line 1 column 27 (char 26)"),
        (b'{"metric": "\xff", "value": 1}', "not UTF-8"),
        (b'{"metric": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"metric": "a", "value": 1, "epoch": ' + b"9" * 5000 + b"}", "epoch must be a non-negative integer"),
        (b'{"metric": "a", "value": 1, "epoch": 12345678901234567890}', "epoch must be at most 2**53"),
        (b'{"metric": "a", "value": 1, "step": 9223372036854775808}', "step must be at most 2**53"),
    ],
)
def test_malformed_floydhub_line_is_a_clear_error(line: bytes, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse(line)
    assert str(caught.value) == f"bad FloydHub line: {message}"


@pytest.mark.parametrize(
    ("line", "point"),
    [
        (b'{"metric": "a", "value": 1e999}', Point("a", INF, None, None)),
        (b'{"metric": "a", "value": -1e999}', Point("a", -INF, None, None)),
        (b'{"metric": "a", "value": ' + b"9" * 400 + b"}", Point("a", INF, None, None)),
        (b'{"metric": "a", "value": -' + b"9" * 400 + b"}", Point("a", -INF, None, None)),
        (b'{"metric": "a", "value": ' + b"9" * 5000 + b"}", Point("a", INF, None, None)),
        (b'{"metric": "a", "value": ' + b"9" * 300 + b"}", Point("a", 1e300, None, None)),
        (b'{"metric": "a", "value": 5e-324, "epoch": 0}', Point("a", 5e-324, 0, None)),
        (b'  {"metric": "a", "value": Infinity, "extra": {"x": 1}}  \r', Point("a", INF, None, None)),
    ],
)
def test_huge_and_odd_values(line: bytes, point: Point) -> None:
    assert parse(line) == [point]


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\x00" * 10,
        b'{"gangplank": 1}',
        b'{"value": 1, "metric": "a"}',
        b'{ "metric": "a", "value": 1}',
        b"metric: 1",
    ],
)
def test_other_lines_are_not_ours(line: bytes) -> None:
    assert parse(line) == []


@given(st.binary(max_size=2000))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for line in (data, b'{"metric"' + data):
        try:
            points = parse(line)
        except ValueError:
            continue
        assert all(isinstance(p, Point) for p in points)


finite_or_not = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**30), 10**30)


@given(
    st.text(min_size=1, max_size=30),
    finite_or_not,
    st.none() | st.integers(0, 10**12),
    st.none() | st.integers(0, 10**12),
)
@settings(max_examples=300, deadline=None)
def test_json_dumps_round_trip(metric: str, value: float, epoch: int | None, step: int | None) -> None:
    record = (
        {"metric": metric, "value": value}
        | ({"epoch": epoch} if epoch is not None else {})
        | ({"step": step} if step is not None else {})
    )
    (point,) = parse(json.dumps(record).encode())
    assert (point.metric, point.epoch, point.step) == (metric, epoch, step)
    assert repr(point.value) == repr(float(value))


def test_long_lines_take_bounded_time() -> None:
    lines = [
        b'{"metric": "' + b"a" * 1_000_000 + b'", "value": 1}',
        b'{"metric": ' + b"[" * 1_000_000,
        b'{"metric": "a", "value": 0.' + b"1" * 1_000_000 + b"}",
    ]
    started = time.perf_counter()
    for line in lines:
        with contextlib.suppress(ValueError):
            parse(line)
    assert time.perf_counter() - started < 2.0
