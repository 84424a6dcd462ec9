"""What digits.py and tail_file.py share: a tiny Keras fit and evaluate on sklearn's digits."""

from __future__ import annotations

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def fit_and_evaluate(emitter: keras.callbacks.Callback, epochs: int) -> None:
    """A seeded 64-32-10 MLP; Keras' own verbose=2 log stays on the terminal beside the emitter's records."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.2, verbose=2, callbacks=[emitter])
    model.evaluate(x_test, y_test, verbose=2, callbacks=[emitter])
