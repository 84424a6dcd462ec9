"""UpdateTracker: per-layer update ratios (K502) and reversing updates (K505)."""

from __future__ import annotations

import json

import keras
import numpy as np
from keras import layers
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from conftest import codes
from gangplank_emitter.checks import UpdateTracker, trainable_by_layer

RNG = np.random.default_rng(0)
KERNEL = RNG.standard_normal((20, 10))
BIAS = RNG.standard_normal(10)


def weights(scale=1.0, step=0.0):
    return {"dense": [KERNEL * scale + step, BIAS * scale + step]}


def test_first_epoch_has_nothing_to_compare():
    assert UpdateTracker().update(weights()) == []


def test_steady_updates_raise_nothing():
    tracker = UpdateTracker()
    assert [tracker.update(weights(step=0.01 * epoch)) for epoch in range(4)] == [[]] * 4


def test_frozen_layer_vanishes():
    tracker = UpdateTracker()
    tracker.update(weights())
    assert tracker.update(weights()) == [
        {
            "code": "K502",
            "name": "vanishing_or_exploding_updates",
            "severity": "warning",
            "message": "updates vanish (ratio below 1e-05) in dense (0)",
        }
    ]


def test_growing_weights_explode():
    tracker = UpdateTracker()
    tracker.update(weights())
    found = tracker.update(weights(scale=100.0))
    assert [(f["code"], f["message"]) for f in found] == [("K502", "updates explode (ratio above 10) in dense (99)")]


def test_non_finite_weights_explode():
    tracker = UpdateTracker()
    tracker.update(weights())
    broken = weights()
    broken["dense"][1] = np.full(10, np.nan)
    found = tracker.update(broken)
    assert [(f["code"], f["message"]) for f in found] == [
        ("K502", "updates explode (ratio above 10) in dense (non-finite weights)")
    ]


def test_reversing_updates_are_noisy():
    tracker = UpdateTracker()
    tracker.update(weights())
    assert tracker.update(weights(step=0.1)) == []
    found = tracker.update(weights())
    assert [(f["code"], f["message"]) for f in found] == [
        (
            "K505",
            "updates reverse direction from the last epoch (cosine below -0.5) in dense (-1.00): "
            "lower the learning rate",
        )
    ]


def test_changed_shapes_start_over():
    tracker = UpdateTracker()
    tracker.update(weights())
    assert tracker.update({"dense": [np.zeros((3, 3))]}) == []
    assert codes(tracker.update({"dense": [np.zeros((3, 3))]})) == ["K502"]


def test_layers_are_reported_together():
    tracker = UpdateTracker()
    tracker.update({"a": [KERNEL], "b": [BIAS]})
    found = tracker.update({"a": [KERNEL], "b": [BIAS * 50]})
    assert [(f["code"], f["message"]) for f in found] == [
        ("K502", "updates vanish (ratio below 1e-05) in a (0); updates explode (ratio above 10) in b (49)")
    ]


def test_real_fit_healthy_then_frozen_by_zero_learning_rate():
    data = load_digits()
    x = StandardScaler().fit_transform(data.data).astype(np.float32)
    net = keras.Sequential(
        [
            keras.Input((64,)),
            layers.Dense(16, activation="relu", name="hidden"),
            layers.Dense(10, activation="softmax", name="out"),
        ],
        name="net",
    )
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    grouped = trainable_by_layer(net)
    assert {name: [w.shape for w in ws] for name, ws in grouped.items()} == {
        "net/hidden": [(64, 16), (16,)],
        "net/out": [(16, 10), (10,)],
    }
    tracker = UpdateTracker()
    tracker.update(grouped)
    found = []
    for _ in range(2):
        net.fit(x, data.target, batch_size=32, epochs=1, verbose=0)
        found.append(tracker.update(trainable_by_layer(net)))
    assert found == [[], []]
    net.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    net.fit(x, data.target, batch_size=32, epochs=1, verbose=0)
    frozen = tracker.update(trainable_by_layer(net))
    assert [(f["code"], f["message"]) for f in frozen] == [
        ("K502", "updates vanish (ratio below 1e-05) in net/hidden (0), net/out (0)")
    ]


def test_emitter_reports_update_checks_in_epoch_records_when_asked(tmp_path):
    from gangplank_emitter import Emitter

    data = load_digits()
    x = StandardScaler().fit_transform(data.data).astype(np.float32)
    net = keras.Sequential(
        [
            keras.Input((64,)),
            layers.Dense(16, activation="relu", name="hidden"),
            layers.Dense(10, activation="softmax", name="out"),
        ],
        name="frozen",
    )
    net.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    net.fit(
        x,
        data.target,
        batch_size=32,
        epochs=2,
        verbose=0,
        callbacks=[Emitter(file=tmp_path / "u.jsonl", checks={"updates": True})],
    )
    net.fit(x, data.target, batch_size=32, epochs=1, verbose=0, callbacks=[Emitter(file=tmp_path / "off.jsonl")])
    epochs = [r for r in map(json.loads, (tmp_path / "u.jsonl").read_text().splitlines()) if r["event"] == "epoch"]
    assert [r.get("checks") for r in epochs] == [
        [
            {
                "code": "K502",
                "name": "vanishing_or_exploding_updates",
                "severity": "warning",
                "message": "updates vanish (ratio below 1e-05) in frozen/hidden (0), frozen/out (0)",
            }
        ]
    ] * 2
    off = [r for r in map(json.loads, (tmp_path / "off.jsonl").read_text().splitlines()) if r["event"] == "epoch"]
    assert [("checks" in r) for r in off] == [False]
