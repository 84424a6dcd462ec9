"""Model checks on tiny compiled Keras models: each fires on a made case, none on healthy digits."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from keras import initializers, layers, losses
from sklearn.datasets import load_digits

from conftest import codes
from gangplank_emitter.checks import inspect_data, model_checks, take_inspected


@pytest.fixture(autouse=True)
def forget_inspected():
    take_inspected()
    yield
    take_inspected()


def model(*stack, loss="sparse_categorical_crossentropy", inputs=64):
    built = keras.Sequential([keras.Input((inputs,)), *stack])
    built.compile(optimizer="adam", loss=loss)
    return built


def healthy():
    return model(
        layers.Dense(16, activation="relu", name="hidden"),
        layers.Dense(8, activation="relu", name="hidden2"),
        layers.Dense(10, activation="softmax", name="out"),
    )


def test_healthy_digits_model_raises_nothing(digits):
    x, y, xv, yv, _, _ = digits
    assert inspect_data(x, y, batch_size=32, validation_data=(xv, yv)) == []
    net = healthy()
    assert model_checks(net) == []
    net.fit(x, y, batch_size=32, epochs=1, validation_data=(xv, yv), verbose=0)
    assert model_checks(net, samples=len(x)) == []


@pytest.mark.parametrize(
    "initializer, code, text",
    [
        (initializers.RandomNormal(stddev=1e-3, seed=0), "K201", "median norm below 0.1 in hidden (0.00"),
        (initializers.Zeros(), "K201", "median norm below 0.1 in hidden (0)"),
        (initializers.RandomNormal(stddev=1.0, seed=0), "K202", "median norm above 3.0 in hidden (7.78)"),
    ],
)
def test_initial_weight_scale(initializer, code, text):
    net = model(
        layers.Dense(16, activation="relu", kernel_initializer=initializer, name="hidden"),
        layers.Dense(10, activation="softmax", name="out"),
    )
    found = model_checks(net)
    assert codes(found) == [code]
    assert text in found[0]["message"]


def test_fixed_range_uniform_initialiser():
    net = model(
        layers.Dense(16, activation="relu", kernel_initializer="random_uniform", name="hidden"),
        layers.Dense(10, activation="softmax", name="out"),
    )
    assert model_checks(net) == [
        {
            "code": "K203",
            "name": "uniform_weight_initialisation",
            "severity": "info",
            "message": "hidden use a fixed-range RandomUniform initialiser: use glorot_uniform, he_normal or another "
            "fan-in scaled one",
        }
    ]


def test_raw_inputs_do_not_fit_the_initialiser(digits):
    _, y, _, _, _, _ = digits
    raw = load_digits().data.astype(np.float32)[: len(y)]
    assert codes(inspect_data(raw, y)) == ["K303"]
    found = model_checks(healthy())
    assert codes(found) == ["K204"]
    assert found[0]["message"].startswith("inputs have mean square 6")
    assert found[0]["message"].endswith("but hidden's GlorotUniform assumes about 1: normalise the inputs")


def test_rescaling_layer_makes_raw_inputs_fit(digits):
    _, y, _, _, _, _ = digits
    inspect_data(load_digits().data.astype(np.float32)[: len(y)], y)
    net = model(
        layers.Rescaling(1 / 16),
        layers.Dense(16, activation="relu", name="hidden"),
        layers.Dense(8, activation="relu"),
        layers.Dense(10, activation="softmax"),
    )
    assert model_checks(net) == []


def test_sigmoid_in_hidden_layer():
    net = model(
        layers.Dense(16, activation="sigmoid", name="hidden"),
        layers.Dense(16, name="linear_hidden"),
        layers.Activation("sigmoid", name="squash"),
        layers.Dense(10, activation="softmax", name="out"),
    )
    found = model_checks(net)
    assert codes(found) == ["K401"]
    assert found[0]["message"] == "sigmoid activation in hidden layer hidden, squash: use relu or tanh"


def test_sigmoid_output_is_fine():
    net = model(layers.Dense(16, activation="relu"), layers.Dense(1, activation="sigmoid"), loss="binary_crossentropy")
    assert model_checks(net) == []


def test_tanh_output_with_zero_one_labels():
    x = np.random.default_rng(0).standard_normal((200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    inspect_data(x, y)
    net = model(layers.Dense(8, activation="relu"), layers.Dense(1, activation="tanh"), loss="mse", inputs=4)
    assert [(f["code"], f["message"]) for f in model_checks(net, samples=10_000)] == [
        ("K402", "labels are coded 0/1 for a tanh output: code them -1/1")
    ]
    inspect_data(x, 2 * y - 1)
    assert model_checks(net, samples=10_000) == []


@pytest.mark.parametrize(
    "output, loss, text",
    [
        (
            layers.Dense(10, activation="softmax"),
            "binary_crossentropy",
            "softmax output with binary_crossentropy (from_logits=False): use a sigmoid output",
        ),
        (
            layers.Dense(10, activation="sigmoid"),
            "categorical_crossentropy",
            "sigmoid output with categorical_crossentropy (from_logits=False): use a softmax output",
        ),
        (
            layers.Dense(10),
            "sparse_categorical_crossentropy",
            "linear output with sparse_categorical_crossentropy (from_logits=False): use a softmax output, "
            "or a linear one with from_logits=True",
        ),
        (
            layers.Dense(10, activation="softmax"),
            losses.SparseCategoricalCrossentropy(from_logits=True),
            "softmax output feeds sparse_categorical_crossentropy built with from_logits=True",
        ),
        (layers.Dense(1, activation="softmax"), "mse", "softmax over one unit always outputs 1: use sigmoid"),
    ],
)
def test_last_activation_against_loss(output, loss, text):
    found = model_checks(model(layers.Dense(16, activation="relu"), output, loss=loss))
    assert codes(found) == ["K403"]
    assert found[0]["message"].startswith(text)


def test_linear_output_with_from_logits_is_fine():
    net = model(
        layers.Dense(16, activation="relu"),
        layers.Dense(10),
        loss=losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    assert model_checks(net) == []


@pytest.mark.parametrize(
    "labels, output, loss, text",
    [
        (
            np.arange(200) % 10,
            layers.Dense(10, activation="softmax"),
            "categorical_crossentropy",
            "categorical_crossentropy needs one column per output (10), the labels have 1: "
            "use sparse_categorical_crossentropy for integer labels",
        ),
        (
            np.eye(10)[np.arange(200) % 10],
            layers.Dense(10, activation="softmax"),
            "sparse_categorical_crossentropy",
            "sparse_categorical_crossentropy needs one integer class per row, the labels are onehot: "
            "use categorical_crossentropy for one-hot labels",
        ),
        (
            np.arange(200) % 10,
            layers.Dense(5, activation="softmax"),
            "sparse_categorical_crossentropy",
            "class labels run from 0 to 9, outside the 5 outputs",
        ),
        (
            np.arange(200) % 3 - 1.0,
            layers.Dense(1, activation="sigmoid"),
            "binary_crossentropy",
            "labels run from -1 to 1, outside the sigmoid output's range [0, 1]",
        ),
        (
            np.linspace(-5, 5, 200),
            layers.Dense(1, activation="relu"),
            "mse",
            "labels run from -5 to 5, outside the relu output's range [0, inf]",
        ),
    ],
)
def test_label_coding_against_last_activation(labels, output, loss, text):
    x = np.random.default_rng(0).permutation(np.random.default_rng(1).standard_normal((200, 4)).astype(np.float32))
    inspect_data(x, np.random.default_rng(2).permutation(labels))
    found = model_checks(model(layers.Dense(8, activation="relu"), output, loss=loss, inputs=4), samples=10_000)
    assert [(f["code"], f["message"]) for f in found] == [("K403", text)]


def test_more_parameters_than_samples():
    found = model_checks(healthy(), samples=1000)
    assert [(f["code"], f["severity"], f["message"]) for f in found] == [
        (
            "K501",
            "info",
            "1266 trainable parameters for 1000 training rows: use a smaller model, more data or regularisation",
        )
    ]
    assert model_checks(healthy(), samples=1266) == []


@pytest.mark.parametrize(
    "stack, text",
    [
        (
            [layers.Dense(16, activation="relu"), layers.Dense(10), layers.BatchNormalization(name="bn")],
            "bn normalises the model's output",
        ),
        (
            [
                layers.Dense(16, activation="relu"),
                layers.BatchNormalization(name="bn1"),
                layers.BatchNormalization(name="bn2"),
                layers.Dense(10, activation="softmax"),
            ],
            "bn2 directly follows bn1",
        ),
    ],
)
def test_batchnorm_position(stack, text):
    found = model_checks(model(*stack))
    assert [(f["code"], f["message"]) for f in found] == [("K503", text)]


def test_batchnorm_after_softmax_in_a_functional_model():
    inputs = keras.Input((64,))
    hidden = layers.Dense(16, activation="relu")(inputs)
    probabilities = layers.Dense(10, activation="softmax", name="probs")(hidden)
    outputs = layers.Dense(10, activation="softmax")(layers.BatchNormalization(name="bn")(probabilities))
    net = keras.Model(inputs, outputs)
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert [(f["code"], f["message"]) for f in model_checks(net)] == [("K503", "bn follows softmax output probs")]


def test_batchnorm_between_layers_is_fine():
    net = model(
        layers.Dense(16), layers.BatchNormalization(), layers.Activation("relu"), layers.Dense(10, activation="softmax")
    )
    assert model_checks(net) == []


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_emitter_puts_model_and_data_findings_into_start(digits, tmp_path):
    from gangplank_emitter import Emitter, inspect_data

    x, y, _, _, _, _ = digits
    order = np.argsort(y, kind="stable")
    inspect_data(x[order], y[order], batch_size=32)
    net = model(
        layers.Dense(16, activation="sigmoid", name="hidden"),
        layers.Dense(8, activation="relu"),
        layers.Dense(10, activation="softmax"),
    )
    net.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[Emitter(file=tmp_path / "a.jsonl")])
    start = records(tmp_path / "a.jsonl")[0]
    assert [(f["code"], f["name"]) for f in start["checks"] if f.get("fired", True)] == [
        ("K401", "sigmoid_in_hidden_layer"),
        ("K102", "data_not_shuffled"),
    ]
    # what always runs and passed is there too, as fired: false (exported as 0 by the sidecar)
    assert [f["code"] for f in start["checks"] if not f.get("fired", True)] == [
        "K201",
        "K202",
        "K203",
        "K503",
        "K301",
        "K302",
        "K303",
    ]
    assert take_inspected() == []
    net.fit(
        x,
        y,
        batch_size=32,
        epochs=1,
        verbose=0,
        callbacks=[Emitter(file=tmp_path / "b.jsonl", checks={"ignore": ["K401"]})],
    )
    assert [(f["code"], f["fired"]) for f in records(tmp_path / "b.jsonl")[0]["checks"]] == [
        ("K201", False),
        ("K202", False),
        ("K203", False),
        ("K503", False),
    ]
    inspect_data(x[order], y[order], batch_size=32)
    net.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[Emitter(file=tmp_path / "c.jsonl", checks=False)])
    assert "checks" not in records(tmp_path / "c.jsonl")[0]
    assert [f["code"] for f in take_inspected()] == ["K102"]


def test_emitter_on_healthy_digits_reports_no_checks(digits, tmp_path):
    from gangplank_emitter import Emitter, inspect_data

    x, y, xv, yv, _, _ = digits
    assert inspect_data(x, y, batch_size=32, validation_data=(xv, yv)) == []
    healthy().fit(
        x,
        y,
        batch_size=32,
        epochs=2,
        validation_data=(xv, yv),
        verbose=0,
        callbacks=[Emitter(file=tmp_path / "h.jsonl", checks={"updates": True})],
    )
    start, *rest = records(tmp_path / "h.jsonl")
    assert [(f["code"], f["fired"]) for f in start["checks"]] == [
        ("K201", False),
        ("K202", False),
        ("K203", False),
        ("K401", False),
        ("K503", False),
        ("K102", False),
        ("K301", False),
        ("K302", False),
        ("K303", False),
    ]
    assert [("checks" in r) for r in rest] == [False, False, False]
