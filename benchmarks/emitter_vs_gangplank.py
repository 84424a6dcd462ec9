"""Per-epoch cost in the training process, and weight-histogram time: the emitter vs Gangplank 0.5.0.

    .venv/bin/python benchmarks/emitter_vs_gangplank.py [--quick]

Gangplank pushes from on_epoch_end; the emitter writes one line. Both run in this process,
against (a) a live Pushgateway, (b) a refused port, (c) a port that accepts and never answers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from _common import fmt, hung_address, median_call, per_call, refused_address, start_pushgateway

# isort: split
import keras  # noqa: E402  (after _common: it sets the Keras backend)
import numpy as np  # noqa: E402
from gangplank import HISTOGRAM_WEIGHT_BUCKETS_1_0, TrainTestExporter  # noqa: E402

from gangplank_emitter import Emitter  # noqa: E402
from gangplank_emitter.histogram import histogram  # noqa: E402

LOGS = {"accuracy": 0.9448, "loss": 0.1839, "val_accuracy": 0.9835, "val_loss": 0.0541}


def digits_model() -> keras.Model:
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def emitter_epoch(model: keras.Model) -> float:
    """The emitter writing to stdout, which is a pipe or /dev/null here."""
    emitter = Emitter()
    emitter.set_model(model)
    emitter.set_params({"epochs": 10})
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        emitter.on_train_begin()
        cost = per_call(lambda: emitter.on_epoch_end(0, dict(LOGS)), 2000)
        emitter.on_train_end()
    return cost


def gangplank_epoch(model: keras.Model, address: str, n: int) -> float:
    exporter = TrainTestExporter(address, "bench")
    exporter.set_model(model)
    exporter.on_train_begin({})
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):  # its tracebacks
        return median_call(lambda: exporter.on_epoch_end(0, dict(LOGS)), n)


def gangplank_histogram(weights: np.ndarray) -> float:
    exporter = TrainTestExporter("127.0.0.1:1", "bench", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0)

    class Layer:
        trainable = True

        def get_weights(self) -> list[np.ndarray]:
            return [weights]

    class Model:
        layers = [Layer()]

    exporter.set_model(Model())
    return per_call(lambda: exporter._construct_histogram(f"h{id(object())}"), 1, repeat=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--quick", action="store_true", help="skip the 4M-weight Gangplank histogram and the hung gateway"
    )
    args = parser.parse_args()
    model = digits_model()

    print("## Per-epoch cost in the training process (median)")
    print(f"{'gateway':<28}{'gangplank':>14}{'emitter':>12}{'ratio':>10}")
    ours = emitter_epoch(model)
    gateway = start_pushgateway()
    try:
        cases = [
            ("live Pushgateway", gateway.url.removeprefix("http://"), 200),
            ("refused port", refused_address(), 200),
        ]
        hung_sock = None
        if not args.quick:
            hung, hung_sock = hung_address()
            cases.append(("accepts, never answers", hung, 1))
        for name, address, n in cases:
            theirs = gangplank_epoch(model, address, n)
            print(f"{name:<28}{fmt(theirs):>14}{fmt(ours):>12}{theirs / ours:>9.0f}x")
        if hung_sock:
            hung_sock.close()
    finally:
        gateway.stop()

    print("\n## Weight histogram (HISTOGRAM_WEIGHT_BUCKETS_1_0)")
    print(f"{'weights':<12}{'gangplank':>14}{'emitter':>12}{'ratio':>10}")
    rng = np.random.default_rng(0)
    sizes = [100_000, 1_000_000] + ([] if args.quick else [4_000_000])
    for size in sizes:
        weights = rng.normal(0, 0.3, size).astype(np.float32)
        ours = per_call(lambda weights=weights: histogram([weights], HISTOGRAM_WEIGHT_BUCKETS_1_0), 5)
        theirs = gangplank_histogram(weights)
        print(f"{size:<12,}{fmt(theirs):>14}{fmt(ours):>12}{theirs / ours:>9.0f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
