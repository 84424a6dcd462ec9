"""Keras progress logs: golden values from captured Keras 3 logs and Keras 2 logs, and hostile bytes.

The keras3_*.log fixtures are bytes Keras 3.15 (jax) wrote, made by make_keras_fixtures.py.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gangplank_sidecar.parsers.keras_log import MAX_RESULT, EpochHeader, Result, parse

FIXTURES = Path(__file__).parent / "fixtures"
NAN, INF = math.nan, math.inf

DIGITS_EPOCHS = [
    EpochHeader(1, 3),
    Result(
        {
            "accuracy": 0.1908,
            "loss": 2.216,
            "top3": 0.485,
            "val_accuracy": 0.3233,
            "val_loss": 2.0093,
            "val_top3": 0.6833,
        }
    ),
    EpochHeader(2, 3),
    Result(
        {
            "accuracy": 0.3883,
            "loss": 1.8787,
            "top3": 0.7583,
            "val_accuracy": 0.5533,
            "val_loss": 1.6846,
            "val_top3": 0.9033,
        }
    ),
    EpochHeader(3, 3),
    Result(
        {
            "accuracy": 0.6592,
            "loss": 1.5191,
            "top3": 0.9408,
            "val_accuracy": 0.8033,
            "val_loss": 1.3111,
            "val_top3": 0.9533,
        }
    ),
    Result({"accuracy": 0.7037, "loss": 1.4378, "top3": 0.8889}),
]
DIGITS_EPOCH = [
    Result({"accuracy": 0.2273, "loss": 2.1655, "top3": 0.5313}),
    Result({"accuracy": 0.33, "loss": 1.9772, "top3": 0.697}),
]
GOLDEN = {
    "keras3_verbose1_epochs3": DIGITS_EPOCHS,
    "keras3_verbose2_epochs3": DIGITS_EPOCHS,
    "keras3_verbose1_epochs1": DIGITS_EPOCH,
    "keras3_verbose2_epochs1": DIGITS_EPOCH,
    "keras3_verbose1_tiny": [
        EpochHeader(1, 2),
        Result({"loss": 1.4076e-05, "mae": 0.0031, "val_loss": 8.3757e-06, "val_mae": 0.0025}),
        EpochHeader(2, 2),
        Result({"loss": 8.1886e-06, "mae": 0.0025, "val_loss": 7.5129e-06, "val_mae": 0.0024}),
        Result({"loss": 7.8878e-06, "mae": 0.0024}),
    ],
    "keras3_verbose2_nan": [
        EpochHeader(1, 2),
        Result({"loss": NAN, "mae": NAN, "val_loss": NAN, "val_mae": NAN}),
        EpochHeader(2, 2),
        Result({"loss": NAN, "mae": NAN, "val_loss": NAN, "val_mae": NAN}),
        Result({"loss": NAN, "mae": NAN}),
    ],
    "keras2_verbose1": [
        EpochHeader(1, 2),
        Result({"loss": 0.9121, "acc": 0.7538, "val_loss": 0.4582, "val_acc": 0.881}),
        EpochHeader(2, 2),
        Result({"loss": 0.3397, "acc": 0.91, "val_loss": 0.2875, "val_acc": 0.925}),
    ],
    "keras2_verbose2": [
        EpochHeader(1, 2),
        Result({"loss": 0.4097, "acc": 0.8078, "val_loss": 0.4582, "val_acc": 0.781}),
        EpochHeader(2, 2),
        Result({"loss": 0.357, "acc": 0.8391, "val_loss": NAN, "val_acc": 0.7954}),
    ],
    "tfkeras_verbose1": [
        EpochHeader(1, 2),
        Result({"loss": 0.295, "accuracy": 0.915, "val_loss": 0.147, "val_accuracy": 0.9563, "lr": 0.001}),
        EpochHeader(2, 2),
        Result({"loss": 0.1415, "accuracy": 0.9581, "val_loss": 0.1068, "val_accuracy": 0.9675, "lr": 1e-04}),
        Result({"loss": 0.0733, "accuracy": 0.9775}),
    ],
    "tfkeras_verbose2": [
        EpochHeader(1, 2),
        Result({"loss": 0.295, "accuracy": 0.915, "val_loss": 0.147, "val_accuracy": 0.9563, "lr": 0.001}),
        EpochHeader(2, 2),
        Result({"loss": 1.0675e-04, "accuracy": 1.0, "val_loss": INF, "val_accuracy": 0.9675, "lr": 1e-04}),
        Result({"loss": 0.0733, "accuracy": 0.9775}),
    ],
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_fixture_golden(name: str) -> None:
    data = (FIXTURES / f"{name}.log").read_bytes()
    got = [item for line in data.split(b"\n") for item in parse(line)]
    assert repr(got) == repr(GOLDEN[name])


def test_verbose1_fixtures_are_raw_terminal_bytes() -> None:
    data = (FIXTURES / "keras3_verbose1_epochs3.log").read_bytes()
    assert (data.count(b"Epoch "), data.count(b"\n"), data.count(b"\r"), data.count(b"\x08")) == (3, 7, 10, 439)
    assert data.count("━".encode()) == 200 and data.count(b"\x1b[32m") == 7


BAR = "\x1b[1m75/75\x1b[0m \x1b[32m" + "━" * 20 + "\x1b[0m\x1b[37m\x1b[0m \x1b[1m0s\x1b[0m 668us/step"


@pytest.mark.parametrize(
    ("line", "items"),
    [
        (b"Epoch 3/10", [EpochHeader(3, 10)]),
        (b"Epoch 3/10\r", [EpochHeader(3, 10)]),
        (b"Epoch 3/10 now", []),
        (
            f"{BAR} - loss: 1.0675e-04 - acc: -inf - top-5: inf".encode(),
            [Result({"loss": 1.0675e-04, "acc": -INF, "top-5": INF})],
        ),
        (f"{BAR} - loss: 0.5 - acc: 0.25      \r".encode(), [Result({"loss": 0.5, "acc": 0.25})]),
        (f"{BAR} - loss: 0.5\x08\x08\x08\r{BAR} - loss: 0.25".encode(), [Result({"loss": 0.25})]),
        # a bar still running, or cut short by a protocol record, is no result
        ("\x1b[1m74/75\x1b[0m ━━━ \x1b[1m0s\x1b[0m 1ms/step - loss: 0.5".encode(), []),
        (f'{BAR} - loss: 0.5{{"gangplank": 1, "event": "epoch"}}'.encode(), []),
        (b"    12/Unknown 2s 3ms/step - loss: 0.5", []),
        (b" 32/800 [>.....] - ETA: 5s - loss: 2.3019", []),
        (b"800/800 [======] - 0s 45us/step", []),
        (b"800/800 [======] - 0s 45us/step - loss: 0.5 - lr: 1e-3", [Result({"loss": 0.5, "lr": 0.001})]),
        (b"60000/60000 [======] - 5s 83us/sample - loss: 0.5", [Result({"loss": 0.5})]),
        (b"loss: 0.5", []),
        (b" - loss: 0.5", []),
        (b"Step 3 - loss: 0.5", []),
        (b"1/2 - 3s - loss: 0.5", []),
        (b" - 3s - loss: 0.5 - note: fine", []),
        (b" - 3s - loss: 0.5.5", []),
        (b"", []),
    ],
)
def test_lines(line: bytes, items: list) -> None:
    assert repr(parse(line)) == repr(items)


def test_results_longer_than_the_cap_are_not_parsed() -> None:
    metrics = "".join(f" - metric_{i:05d}: 0.{i:04d}" for i in range(2800))
    line = f"75/75 - 0s - 511us/step{metrics}".encode()
    assert len(line) <= MAX_RESULT < len(line + b" - extra: 1.0" * 600)
    (result,) = parse(line)
    assert (len(result.metrics), result.metrics["metric_02799"]) == (2800, 0.2799)
    assert parse(line + b" - extra: 1.0" * 600) == []


def keras3_value(value: float) -> str:
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


keys = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
values = st.floats(allow_nan=True, allow_infinity=True, width=32)


@given(st.dictionaries(keys, values, min_size=1, max_size=8), st.sampled_from(["k3v1", "k3v2", "k2v1", "k2v2", "tfv2"]))
@settings(max_examples=300, deadline=None)
def test_formatted_results_round_trip(metrics: dict[str, float], style: str) -> None:
    shown = {key: keras3_value(value) for key, value in metrics.items()}
    text = "".join(f" - {key}: {value}" for key, value in shown.items())
    line = {
        "k3v1": f"\x1b[1m 1/75\x1b[0m ━ \x1b[1m9s\x1b[0m 1s/step - loss: 1.0\x08\x08\r{BAR}{text}   ",
        "k3v2": f"75/75 - 0s - 511us/step{text}",
        "k2v1": f"\r60000/60000 [==============================] - 20s 333us/step{text}",
        "k2v2": f" - 20s{text}",
        "tfv2": f"1875/1875 - 4s{text} - 4s/epoch - 2ms/step",
    }[style]
    assert repr(parse(line.encode())) == repr([Result({key: float(value) for key, value in shown.items()})])


fragments = st.sampled_from(
    [
        b"\r",
        b"\x08",
        b"\x1b[1m",
        b"\x1b[0m",
        "━".encode(),
        b" - ",
        b": ",
        b"loss",
        b"0.5",
        b"1e-4",
        b"nan",
        b"75/75",
        b"[==>..]",
        b"3s",
        b"1ms/step",
        b"Epoch 1/2",
        b"\n",
        b"\x00",
        b"\xff",
        b'{"gangplank":',
        b" ",
    ]
)


@given(st.lists(fragments | st.binary(max_size=8), max_size=60))
@settings(max_examples=1000, deadline=None)
def test_arbitrary_bytes_never_crash(parts: list[bytes]) -> None:
    items = parse(b"".join(parts))
    assert all(isinstance(item, (EpochHeader, Result)) for item in items)


@pytest.mark.parametrize(
    "line",
    [
        b" - " * 400_000,
        b"\r" * 1_000_000,
        b"\x1b[" * 500_000,
        b"\x08" * 1_000_000,
        b"75/75 " + "━".encode() * 300_000,
        b"75/75 - 3s" + b" - loss: 0.5" * 90_000,
        b"75/75 - 3s - loss: 0." + b"5" * 1_000_000,
        b"75/75 [" + b"=" * 1_000_000 + b"] - 3s - loss: 0.5",
        b"Epoch " + b"9" * 1_000_000 + b"/2",
    ],
)
def test_long_lines_take_bounded_time(line: bytes) -> None:
    started = time.perf_counter()
    parse(line)
    assert time.perf_counter() - started < 1.0
