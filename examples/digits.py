"""The README demo: a real Keras fit on sklearn's digits, its records printed to stdout.

    KERAS_BACKEND=jax python examples/digits.py | gangplank-sidecar
"""

from __future__ import annotations

import sys

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0, Emitter


def main(epochs: int = 5) -> None:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input(shape=(64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    emitter = Emitter(job="digits", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0)
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.2, verbose=2, callbacks=[emitter])
    model.evaluate(x_test, y_test, verbose=2, callbacks=[emitter])


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
