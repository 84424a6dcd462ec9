"""Text formats in the per-stream interpreter: which run and phase each FloydHub point or Keras result goes to."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gangplank_sidecar import parsers
from gangplank_sidecar.aggregation.interpret import Interpreter
from gangplank_sidecar.aggregation.state import RunState, Store
from gangplank_sidecar.pipeline import Pipeline
from gangplank_sidecar.selfmetrics import SelfMetrics

FIXTURES = Path(__file__).parent / "fixtures"


def feed(lines: list[bytes], fmt: str = "auto") -> tuple[Store, list[str]]:
    store, reports = Store(), []
    interpreter = Interpreter(store, "stdin", None, reports.append)
    for line in lines:
        for item in parsers.parse(line, fmt)[1]:
            interpreter.apply(item)
    return store, reports


def runs(store: Store) -> list[tuple[str, str, int | None, int | None, str | None, dict[str, float]]]:
    """Every series (finished ones first) as (run, phase, epoch, step, status, metrics); run ids
    are replaced by the order they first appear in."""
    ids: dict[str, str] = {}
    out = []
    for s in store.all_runs():
        run = ids.setdefault(s.run, f"run{len(ids) + 1}")
        out.append((run, s.phase, s.epoch, s.step, s.status, s.metrics))
    return out


def test_keras3_fit_then_evaluate_is_one_run_in_two_phases() -> None:
    store, _ = feed((FIXTURES / "keras3_verbose1_epochs3.log").read_bytes().split(b"\n"))
    assert runs(store) == [
        (
            "run1",
            "train",
            3,
            None,
            "ok",
            {
                "accuracy": 0.6592,
                "loss": 1.5191,
                "top3": 0.9408,
                "val_accuracy": 0.8033,
                "val_loss": 1.3111,
                "val_top3": 0.9533,
            },
        ),
        ("run1", "test", None, None, "ok", {"accuracy": 0.7037, "loss": 1.4378, "top3": 0.8889}),
    ]
    (train,) = [s for s in store.all_runs() if s.phase == "train"]
    assert (train.planned_epochs, train.best["loss"], train.best["accuracy"]) == (3, (1.5191, 3), (0.6592, 3))


def test_one_epoch_without_header_is_training_and_the_next_result_an_evaluate() -> None:
    store, _ = feed((FIXTURES / "keras3_verbose2_epochs1.log").read_bytes().split(b"\n"))
    assert runs(store) == [
        ("run1", "train", 1, None, "ok", {"accuracy": 0.2273, "loss": 2.1655, "top3": 0.5313}),
        ("run1", "test", None, None, "ok", {"accuracy": 0.33, "loss": 1.9772, "top3": 0.697}),
    ]


def test_val_keys_mean_training_even_after_training_ended() -> None:
    lines = [b"7/7 - 0s - loss: 0.5", b"7/7 - 0s - loss: 0.4 - val_loss: 0.3", b"7/7 - 0s - loss: 0.2"]
    store, _ = feed(lines)
    assert runs(store) == [
        ("run1", "train", 1, None, "ok", {"loss": 0.5}),
        ("run2", "train", 1, None, "ok", {"loss": 0.4, "val_loss": 0.3}),
        ("run2", "test", None, None, "ok", {"loss": 0.2}),
    ]


def test_a_second_fit_starts_a_new_run() -> None:
    lines = [
        b"Epoch 1/2",
        b"7/7 - 0s - loss: 0.9",
        b"Epoch 2/2",
        b"7/7 - 0s - loss: 0.8",
        b"7/7 - 0s - loss: 0.85",
        b"Epoch 1/3",
        b"7/7 - 0s - loss: 0.7",
        b"Epoch 2/3",
        b"7/7 - 0s - loss: 0.6",
        # interrupted, then fit again from the start
        b"Epoch 1/3",
        b"7/7 - 0s - loss: 0.5",
    ]
    store, _ = feed(lines)
    assert runs(store) == [
        ("run1", "train", 2, None, "ok", {"loss": 0.8}),
        ("run2", "train", 2, None, None, {"loss": 0.6}),
        ("run3", "train", 1, None, None, {"loss": 0.5}),
        ("run1", "test", None, None, "ok", {"loss": 0.85}),
    ]


def test_floydhub_points_build_up_epochs_and_steps() -> None:
    lines = [
        b'{"metric": "loss", "value": 0.9, "step": 10}',
        b'{"metric": "loss", "value": 0.8, "epoch": 1}',
        b'{"metric": "accuracy", "value": 0.5, "epoch": 1}',
        b'{"metric": "loss", "value": 0.7, "step": 20}',
        b'{"metric": "loss", "value": 0.6, "epoch": 2}',
        b'{"metric": "val loss", "value": 0.65, "epoch": 2}',
        b'{"metric": "val_loss", "value": 0.66, "epoch": 2}',
        # the numbering starts over: a new run
        b'{"metric": "loss", "value": 1.0, "epoch": 1}',
        b'{"metric": "loss", "value": 2.0, "step": 5}',
        b'{"metric": "loss", "value": 3.0, "step": 4}',
    ]
    store, reports = feed(lines)
    assert runs(store) == [
        ("run1", "train", 2, 20, None, {"loss": 0.6, "accuracy": 0.5, "val loss": 0.65, "val_loss": 0.66}),
        ("run2", "train", 1, 5, None, {"loss": 2.0}),
        ("run3", "train", None, 4, None, {"loss": 3.0}),
    ]
    assert reports == ["metric key 'val_loss' collides with another key; exported as gangplank_train_val_loss_2"]
    first: RunState = store.all_runs()[0]
    assert first.names.map(["val loss", "val_loss"]) == {"val loss": "val_loss", "val_loss": "val_loss_2"}


def test_once_a_stream_has_protocol_records_its_text_is_not_metrics() -> None:
    start = b'{"gangplank": 1, "event": "start", "run": "r1", "phase": "train", "time": 1.0, "params": {"total": 10}}'
    epoch = (
        b'\r\x1b[1m6/7\x1b[0m - loss: 0.51{"gangplank": 1, "event": "epoch", "run": "r1", "phase": "train", "time": '
        b"2.0,"
        b' "epoch": 1, "elapsed_seconds": 1.5, "metrics": {"loss": 0.51234}, "params": {"total": 10}}'
    )
    lines = [
        start,
        b"Epoch 1/1",
        epoch,
        b"\x08\x08\r7/7 - 0s - loss: 0.5123 - val_loss: 0.4",
        b'{"metric": "loss", "value": 9}',
    ]
    store, _ = feed(lines)
    assert runs(store) == [("run1", "train", 1, None, None, {"loss": 0.51234})]


def test_forced_formats_only_read_their_own_lines() -> None:
    lines = [b'{"metric": "loss", "value": 0.9, "epoch": 1}', b"Epoch 1/1", b"7/7 - 0s - loss: 0.5"]
    assert runs(feed(lines, "floydhub")[0]) == [("run1", "train", 1, None, None, {"loss": 0.9})]
    assert runs(feed(lines, "keras")[0]) == [("run1", "train", 1, None, "ok", {"loss": 0.5})]
    assert runs(feed(lines, "gangplank")[0]) == []


def test_text_records_are_stamped_with_the_time_they_were_read() -> None:
    before = time.time()
    store, _ = feed([b'{"metric": "loss", "value": 0.5, "epoch": 1}', b"Epoch 1/1", b"7/7 - 0s - loss: 0.5"])
    after = time.time()
    floyd, keras = store.all_runs()
    assert before <= floyd.started <= floyd.time <= keras.started <= keras.time <= after
    assert floyd.time > floyd.started


def test_floydhub_checks_see_each_epoch_whole() -> None:
    """Checked when a later epoch begins (on the whole epoch before it) and whenever the state is looked at."""
    lines = [
        json.dumps({"metric": key, "value": value, "epoch": epoch}).encode()
        for epoch, loss, val_loss in [(1, 1.0, "NaN"), (2, 0.5, 0.5), (3, 0.25, "Infinity")]
        for key, value in (("loss", loss), ("val_loss", val_loss))
    ]
    store, _ = feed(lines[:2])
    assert store.all_runs()[0].checks["non_finite"].message == "non-finite val_loss=NaN at epoch 1"
    store, _ = feed(lines[:3])  # epoch 2's val_loss is not in yet, and epoch 1's NaN is not carried into it
    assert "non_finite" not in store.all_runs()[0].failed_checks
    store, _ = feed(lines[:4])
    assert "non_finite" not in store.all_runs()[0].failed_checks
    store, _ = feed(lines)
    (series,) = store.all_runs()
    assert (series.failed_checks, series.checks["non_finite"].message) == (
        {"non_finite"},
        "non-finite val_loss=Infinity at epoch 3",
    )


def test_after_protocol_records_a_stream_counts_its_text_as_other() -> None:
    selfmetrics = SelfMetrics()
    pipeline = Pipeline(Store(), selfmetrics, lambda message: None)
    start = b'{"gangplank": 1, "event": "start", "run": "r1", "phase": "train", "time": 1.0, "params": {"total": 10}}'
    for line in [
        b'{"metric": "loss", "value": 9}',
        b"Epoch 1/1",
        start,
        b'{"metric": "loss", "value": 9}',
        b"Epoch 1/1",
    ]:
        pipeline.feed("stdin", line)
    assert {fmt: n for fmt, n in selfmetrics.lines.by_format.items() if n} == {
        "gangplank": 1,
        "floydhub": 1,
        "keras": 1,
        "other": 2,
    }
