"""Gangplank's MNIST example with the emitter: the small convnet, 10% of the data for validation.

    KERAS_BACKEND=jax python examples/mnist/train.py | gangplank-sidecar --job mnist

The convnet is the one in Chollet's "Deep learning with Python" (chapter 8), as in Gangplank's
examples; Adam shows overfitting more clearly than RMSprop. The best model (lowest val_loss)
is saved for test.py. ``--offline`` trains on sklearn's digits without trying the download.
"""

from __future__ import annotations

import argparse

import keras
from mnist_data import load

from gangplank_emitter import Emitter


def convnet() -> keras.Model:
    inputs = keras.Input(shape=(28, 28, 1))
    x = keras.layers.Conv2D(filters=32, kernel_size=3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(pool_size=2)(x)
    x = keras.layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(pool_size=2)(x)
    x = keras.layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--model", default="mnist_convnet.keras", help="where to save the best model")
    parser.add_argument("--metrics-file", help="write the records to this file instead of stdout")
    parser.add_argument("--offline", action="store_true", help="use sklearn's digits, do not download MNIST")
    args = parser.parse_args()

    images, labels = load("train", offline=args.offline)
    keras.utils.set_random_seed(0)
    model = convnet()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [
        keras.callbacks.ModelCheckpoint(filepath=args.model, save_best_only=True, monitor="val_loss"),
        Emitter(file=args.metrics_file, job="mnist"),
    ]
    model.fit(images, labels, epochs=args.epochs, validation_split=0.1, batch_size=64, verbose=2, callbacks=callbacks)


if __name__ == "__main__":
    main()
