"""A Keras fit that writes its records to a file, for a sidecar that follows the file.

    KERAS_BACKEND=jax python examples/tail_file.py /tmp/train/metrics.jsonl &
    gangplank-sidecar --exit-on-end /tmp/train/metrics.jsonl

The emitter appends one whole line per record and creates missing directories; the
training log itself stays on the terminal, untouched.
"""

from __future__ import annotations

import sys

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gangplank_emitter import Emitter


def main(path: str = "metrics.jsonl", epochs: int = 5) -> None:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input(shape=(64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    emitter = Emitter(file=path, job="digits-file")
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.2, verbose=2, callbacks=[emitter])
    model.evaluate(x_test, y_test, verbose=2, callbacks=[emitter])


if __name__ == "__main__":
    main(*sys.argv[1:2], *(int(arg) for arg in sys.argv[2:3]))
