"""Gangplank's MNIST test example: evaluate the model train.py saved, with a weight histogram.

    KERAS_BACKEND=jax python examples/mnist/test.py | gangplank-sidecar --job mnist --strict

``ignore_exceptions=False`` makes a failed write stop the test run, as in Gangplank's example;
with ``--strict`` the sidecar turns an undelivered result into a failure too.
"""

from __future__ import annotations

import argparse

import keras
from mnist_data import load

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_0_3, Emitter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_convnet.keras", help="the model saved by train.py")
    parser.add_argument("--metrics-file", help="write the records to this file instead of stdout")
    parser.add_argument("--offline", action="store_true", help="use sklearn's digits, do not download MNIST")
    args = parser.parse_args()

    images, labels = load("test", offline=args.offline)
    model = keras.models.load_model(args.model)
    emitter = Emitter(
        file=args.metrics_file, job="mnist", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3, ignore_exceptions=False
    )
    model.evaluate(images, labels, verbose=2, callbacks=[emitter])


if __name__ == "__main__":
    main()
