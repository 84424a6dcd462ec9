"""Model checks (Kepler K2xx, K4xx, K5xx) on a compiled Keras 3 model, before training.

Only attributes are read (layers, activations, initialisers, the compiled loss)
and each kernel once, so keras itself is never imported here. Label and input
facts come from the last `inspect_data()` in this process, when there was one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import catalogue as c
from .catalogue import finding
from .data import LabelInfo, kept

_BINARY = {"binary_crossentropy", "bce", "binary_focal_crossentropy"}
_CATEGORICAL = {"categorical_crossentropy", "cce", "categorical_focal_crossentropy"}
_SPARSE = {"sparse_categorical_crossentropy"}
_PROBABILITIES = {"sigmoid", "softmax"}
# Output range of each activation, for targets that a regression loss compares directly.
_RANGES: dict[str | None, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "relu": (0.0, np.inf),
    "softplus": (0.0, np.inf),
    "exponential": (0.0, np.inf),
}
_ACTIVATION_LAYERS = {"Softmax": "softmax", "ReLU": "relu"}
_RESCALING_LAYERS = {"Normalization", "Rescaling", "BatchNormalization", "LayerNormalization"}


def model_checks(model: Any, samples: int | None = None) -> list[dict]:
    """Run the model checks; `samples` (training rows) defaults to what inspect_data() saw."""
    facts = kept()
    if samples is None and facts is not None:
        samples = facts.samples
    layers = _layers(model)
    outputs = _output_layers(model, layers)
    kernels = [(layer, _kernel(layer)) for layer in layers if getattr(layer, "trainable", True)]
    kernels = [(layer, kernel) for layer, kernel in kernels if kernel is not None]
    found = _weight_scale(kernels) + _uniform(kernels)
    if facts is not None and facts.input_mean_square is not None:
        found += _initialiser_fit(layers, facts.input_mean_square)
    found += _sigmoid_hidden(layers, outputs)
    if len(outputs) == 1:
        found += _last_activation(model, outputs[0], facts.labels if facts is not None else None)
    found += _batchnorm(layers, outputs)
    if samples:
        found += _parameters(model, samples)
    return found


def _layers(model: Any) -> list:
    """Every layer, nested models flattened, in the model's order."""
    flat = []
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers"):
            flat += _layers(layer)
        else:
            flat.append(layer)
    return flat


def _output_layers(model: Any, layers: list) -> list:
    outputs = [
        t._keras_history.operation for t in getattr(model, "outputs", None) or [] if hasattr(t, "_keras_history")
    ]
    return outputs or layers[-1:]


def _parents(layers: list, layer: Any) -> list:
    nodes = getattr(layer, "_inbound_nodes", None) or []
    parents = [p.operation for node in nodes for p in getattr(node, "parent_nodes", [])]
    if parents or layer not in layers:
        return parents
    at = layers.index(layer)
    return layers[at - 1 : at] if at else []


def _activation(layer: Any) -> str | None:
    function = getattr(layer, "activation", None)
    if function is not None:
        return getattr(function, "__name__", None)
    return _ACTIVATION_LAYERS.get(type(layer).__name__)


def _kernel(layer: Any) -> np.ndarray | None:
    kernel = getattr(layer, "kernel", None)
    if kernel is None or len(kernel.shape) < 2:
        return None
    return np.asarray(kernel)


def _weight_scale(kernels: list) -> list[dict]:
    """K201, K202: median L2 norm of the weights going into one unit."""
    small, large = [], []
    for layer, kernel in kernels:
        flat = kernel.reshape(-1, kernel.shape[-1])
        norm = float(np.median(np.sqrt(np.einsum("ij,ij->j", flat, flat))))
        if norm < c.MIN_UNIT_NORM:
            small.append(f"{layer.name} ({norm:.3g})")
        elif norm > c.MAX_UNIT_NORM:
            large.append(f"{layer.name} ({norm:.3g})")
    found = []
    if small:
        found.append(
            finding(
                "K201",
                f"weights into a unit have median norm below {c.MIN_UNIT_NORM} in "
                f"{', '.join(small)}: signals vanish; use a fan-in scaled initialiser",
            )
        )
    if large:
        found.append(
            finding(
                "K202",
                f"weights into a unit have median norm above {c.MAX_UNIT_NORM} in "
                f"{', '.join(large)}: signals explode; use a fan-in scaled initialiser",
            )
        )
    return found


def _uniform(kernels: list) -> list[dict]:
    """K203: RandomUniform ignores fan-in (glorot_uniform and he_uniform are scaled, so fine)."""
    names = [
        layer.name
        for layer, _ in kernels
        if type(getattr(layer, "kernel_initializer", None)).__name__ == "RandomUniform"
    ]
    if not names:
        return []
    return [
        finding(
            "K203",
            f"{', '.join(names)} use a fixed-range RandomUniform initialiser: "
            "use glorot_uniform, he_normal or another fan-in scaled one",
        )
    ]


def _initialiser_fit(layers: list, mean_square: float) -> list[dict]:
    """K204: variance-scaling initialisers assume inputs of about unit mean square."""
    for layer in layers:
        if type(layer).__name__ in _RESCALING_LAYERS:
            return []
        initialiser = getattr(layer, "kernel_initializer", None)
        if initialiser is None:
            continue
        scaled = any(cls.__name__ == "VarianceScaling" for cls in type(initialiser).__mro__)
        if not scaled or c.MIN_INPUT_MEAN_SQUARE <= mean_square <= c.MAX_INPUT_MEAN_SQUARE:
            return []
        return [
            finding(
                "K204",
                f"inputs have mean square {mean_square:.3g} but {layer.name}'s "
                f"{type(initialiser).__name__} assumes about 1: normalise the inputs",
            )
        ]
    return []


def _sigmoid_hidden(layers: list, outputs: list) -> list[dict]:
    """K401: sigmoid saturates and is not centred, so hidden layers learn slowly."""
    names = [
        layer.name for layer in layers if layer not in outputs and _activation(layer) in {"sigmoid", "hard_sigmoid"}
    ]
    if not names:
        return []
    return [finding("K401", f"sigmoid activation in hidden layer {', '.join(names)}: use relu or tanh")]


def _loss(model: Any) -> tuple[str | None, bool]:
    """The compiled loss's function name and from_logits, for a single-output model."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, dict):
        loss = list(loss.values())
    if isinstance(loss, (list, tuple)):
        if len(loss) != 1:
            return None, False
        loss = loss[0]
    if isinstance(loss, str):
        return loss, False
    function = getattr(loss, "fn", loss)
    return getattr(function, "__name__", None), bool(getattr(loss, "from_logits", False))


def _last_activation(model: Any, output: Any, labels: LabelInfo | None) -> list[dict]:
    """K402, K403: the output activation against the loss and the label coding."""
    activation = _activation(output)
    loss, from_logits = _loss(model)
    shape = getattr(output, "output", None)
    units = shape.shape[-1] if shape is not None and len(shape.shape) else None
    problems = _against_loss(activation, loss, from_logits, units)
    if labels is not None:
        problems += _against_labels(activation, loss, units, labels)
    found = []
    if activation == "tanh" and labels is not None and _tanh_labels(labels):
        found.append(finding("K402", _tanh_labels(labels)))
    if problems:
        found.append(finding("K403", "; ".join(problems)))
    return found


def _against_loss(activation: str | None, loss: str | None, from_logits: bool, units: int | None) -> list[str]:
    problems = []
    if activation == "softmax" and units == 1:
        problems.append("softmax over one unit always outputs 1: use sigmoid")
    if activation is None or loss is None:
        return problems
    if loss in _BINARY | _CATEGORICAL | _SPARSE:
        if from_logits and activation in _PROBABILITIES:
            problems.append(
                f"{activation} output feeds {loss} built with from_logits=True: drop the activation or from_logits"
            )
        wanted = "sigmoid" if loss in _BINARY else "softmax"
        if not from_logits and activation != wanted:
            problems.append(
                f"{activation} output with {loss} (from_logits=False): use a {wanted} output, "
                "or a linear one with from_logits=True"
            )
    return problems


def _against_labels(activation: str | None, loss: str | None, units: int | None, labels: LabelInfo) -> list[str]:
    if loss in _SPARSE:
        if labels.kind != "classes":
            return [
                f"{loss} needs one integer class per row, the labels are {labels.kind}: "
                "use categorical_crossentropy for one-hot labels"
            ]
        if labels.low < 0 or (units is not None and labels.high > units - 1):
            return [f"class labels run from {labels.low:g} to {labels.high:g}, outside the {units} outputs"]
        return []
    if loss in _CATEGORICAL:
        if labels.width != units:
            return [
                f"{loss} needs one column per output ({units}), the labels have {labels.width}: "
                "use sparse_categorical_crossentropy for integer labels"
            ]
        return []
    if activation == "tanh" and loss not in _BINARY:
        return []
    low, high = (0.0, 1.0) if loss in _BINARY else _RANGES.get(activation, (-np.inf, np.inf))
    if labels.low < low or labels.high > high:
        return [
            f"labels run from {labels.low:g} to {labels.high:g}, outside the {activation} "
            f"output's range [{low:g}, {high:g}]"
        ]
    return []


def _tanh_labels(labels: LabelInfo) -> str:
    """K402's message, or '' when the labels suit a tanh output."""
    if labels.low < -1 or labels.high > 1:
        return f"labels run from {labels.low:g} to {labels.high:g}, outside tanh's [-1, 1]"
    if labels.binary and labels.low == 0 and labels.high == 1:
        return "labels are coded 0/1 for a tanh output: code them -1/1"
    return ""


def _batchnorm(layers: list, outputs: list) -> list[dict]:
    """K503: batch normalisation that undoes or repeats work instead of helping."""
    problems = []
    for layer in layers:
        if not type(layer).__name__.startswith("BatchNormalization"):
            continue
        if layer in outputs:
            problems.append(f"{layer.name} normalises the model's output")
        for parent in _parents(layers, layer):
            if type(parent).__name__.startswith("BatchNormalization"):
                problems.append(f"{layer.name} directly follows {parent.name}")
            elif _activation(parent) == "softmax":
                problems.append(f"{layer.name} follows softmax output {parent.name}")
    if not problems:
        return []
    return [finding("K503", "; ".join(problems))]


def _parameters(model: Any, samples: int) -> list[dict]:
    """K501: more trainable parameters than rows invites memorising them."""
    trainable = sum(int(np.prod(w.shape)) for w in getattr(model, "trainable_weights", []))
    if trainable <= c.MAX_PARAMETERS_PER_SAMPLE * samples:
        return []
    return [
        finding(
            "K501",
            f"{trainable} trainable parameters for {samples} training rows: "
            "use a smaller model, more data or regularisation",
        )
    ]
