"""Time Kepler's checks: inspect_data() on 60,000 x 784 float32 rows (budget 200 ms) and
model_checks() on a compiled 1M-parameter Keras model (budget 5 ms). Best of several runs."""

from __future__ import annotations

import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported: it reads the variable then

import keras
import numpy as np
from keras import layers

from gangplank_emitter.checks import inspect_data, model_checks, take_inspected


def best_ms(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((60_000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 60_000)
    x_val = rng.random((10_000, 784), dtype=np.float32)
    y_val = rng.integers(0, 10, 10_000)
    data = best_ms(lambda: inspect_data(x, y, batch_size=32), 5)
    with_val = best_ms(lambda: inspect_data(x, y, batch_size=32, validation_data=(x_val, y_val)), 5)
    take_inspected()
    model = keras.Sequential(
        [
            keras.Input((784,)),
            layers.Dense(1024, activation="relu"),
            layers.Dense(192, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    params = model.count_params()
    checks = best_ms(lambda: model_checks(model, samples=60_000), 20)
    print(f"inspect_data 60000x784 float32: {data:.1f} ms (budget 200); with 10000 validation rows: {with_val:.1f} ms")
    print(f"model_checks on {params} parameters: {checks:.2f} ms (budget 5)")


if __name__ == "__main__":
    main()
