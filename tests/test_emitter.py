"""The Keras callback in-process: which records a fit and an evaluate write, and what they hold."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0, Emitter
from gangplank_emitter.histogram import histogram


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    m = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fit_with_validation_then_evaluate(tmp_path, data) -> None:
    x, y = data
    m, path = model(), tmp_path / "deep" / "dir" / "m.jsonl"
    emitter = Emitter(file=path, histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0, job="unit")
    history = m.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, callbacks=[emitter], verbose=0)
    result = m.evaluate(x, y, callbacks=[emitter], verbose=0, return_dict=True)
    recs = records(path)
    assert [(r["event"], r["phase"]) for r in recs] == [
        ("start", "train"),
        ("epoch", "train"),
        ("epoch", "train"),
        ("end", "train"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
    ]
    start, e1, e2, _, _, evaluate, _ = recs
    assert start["job"] == "unit" and start["epochs"] == 2 and start["framework"].endswith("/jax")
    # Kepler's model checks that always run are all there; those that passed are marked fired: false.
    assert {c["code"]: c.get("fired", True) for c in start["checks"]} == {
        "K201": False,
        "K202": False,
        "K203": False,
        "K401": False,
        "K503": False,
    }
    assert start["params"] == {"total": m.count_params(), "trainable": m.count_params()}
    assert [e1["epoch"], e2["epoch"]] == [1, 2]
    assert e2["metrics"] == {k: v[-1] for k, v in history.history.items()}
    assert evaluate["metrics"] == result
    assert evaluate["weights"] == histogram([np.asarray(w) for w in m.trainable_weights], HISTOGRAM_WEIGHT_BUCKETS_1_0)
    assert len({r["run"] for r in recs}) == 1
    assert e2["elapsed_seconds"] >= e1["elapsed_seconds"] > 0


def test_metrics_filter_steps_and_no_histogram_by_default(tmp_path, data) -> None:
    x, y = data
    path = tmp_path / "m.jsonl"
    model().fit(
        x, y, epochs=1, batch_size=16, callbacks=[Emitter(file=path, metrics=["loss"], step_every=2)], verbose=0
    )
    recs = records(path)
    steps = [r for r in recs if r["event"] == "step"]
    assert [s["step"] for s in steps] == [2, 4, 6]
    epoch = next(r for r in recs if r["event"] == "epoch")
    assert list(epoch["metrics"]) == ["loss"] and "weights" not in epoch


def test_a_failed_write_warns_once_and_training_goes_on(tmp_path, data) -> None:
    x, y = data
    (tmp_path / "dir").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model().fit(x, y, epochs=2, callbacks=[Emitter(file=tmp_path / "dir")], verbose=0)
    ours = [w for w in caught if "gangplank_emitter" in str(w.message)]
    assert len(ours) == 1 and "training goes on" in str(ours[0].message)


def test_strict_emitter_raises_on_a_failed_write(tmp_path, data) -> None:
    x, y = data
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        model().fit(x, y, epochs=1, callbacks=[Emitter(file=tmp_path / "dir", ignore_exceptions=False)], verbose=0)


def test_no_batch_hook_unless_steps_are_asked_for() -> None:
    from keras.src.utils.python_utils import is_default

    assert is_default(Emitter().on_train_batch_end)
    assert not is_default(Emitter(step_every=10).on_train_batch_end)


def test_the_file_is_closed_after_fit_and_after_a_standalone_evaluate(tmp_path, data) -> None:
    x, y = data
    m, path = model(), tmp_path / "m.jsonl"
    emitter = Emitter(file=path)
    m.fit(x, y, epochs=1, callbacks=[emitter], verbose=0)
    assert emitter.run.writer._fd is None
    m.evaluate(x, y, callbacks=[emitter], verbose=0)
    assert emitter.run.writer._fd is None
    m.fit(x, y, epochs=1, callbacks=[emitter], verbose=0)
    assert emitter.run.writer._fd is None
    assert [r["event"] for r in records(path)] == [
        "start",
        "epoch",
        "end",
        "start",
        "evaluate",
        "end",
        "start",
        "epoch",
        "end",
    ]


def test_an_emitter_driven_without_fits_params(tmp_path) -> None:
    m, path = model(), tmp_path / "m.jsonl"
    emitter = Emitter(file=path, job="manual")
    emitter.set_model(m)
    assert emitter.params is None
    emitter.on_train_begin()
    emitter.on_epoch_end(0, {"loss": 0.5})
    emitter.on_train_end()
    start, epoch, end = records(path)
    assert (start["event"], start["job"], "epochs" in start) == ("start", "manual", False)
    assert (epoch["epoch"], epoch["metrics"], end["status"]) == (1, {"loss": 0.5}, "ok")


def test_two_emitters_in_one_process_share_one_exit_handler(tmp_path, data, monkeypatch) -> None:
    from gangplank_emitter import run as run_module

    registered = []
    monkeypatch.setattr(run_module.atexit, "register", registered.append)
    first, second = Emitter(file=tmp_path / "a.jsonl"), Emitter(file=tmp_path / "b.jsonl")
    assert registered == []
    first.set_model(model())
    second.set_model(first.model)
    first.on_train_begin()
    second.on_train_begin()
    assert {first.run, second.run} <= run_module._live
    first.on_train_end()
    assert first.run not in run_module._live and second.run in run_module._live
    run_module._end_live_runs()
    assert second.run not in run_module._live
    assert [(r["event"], r.get("status")) for r in records(tmp_path / "b.jsonl")][-1] == ("end", "interrupted")
    assert [r["event"] for r in records(tmp_path / "a.jsonl")] == ["start", "end"]
