"""MNIST through keras.datasets when it can be downloaded, else sklearn's digits at MNIST's shape.

The digits (8x8, values 0-16) are scaled to [0, 1], enlarged 3 times and padded to 28x28, so
that the same convnet trains on either. The download gets a short timeout: offline, the
fallback starts within seconds.
"""

from __future__ import annotations

import socket
import sys

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DOWNLOAD_TIMEOUT_SECONDS = 10.0


def _mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)
    try:
        return keras.datasets.mnist.load_data()
    finally:
        socket.setdefaulttimeout(previous)


def _digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    x, y = load_digits(return_X_y=True)
    images = np.kron(x.reshape(-1, 8, 8) / 16.0, np.ones((3, 3)))
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))) * 255.0
    x_train, x_test, y_train, y_test = train_test_split(images, y, test_size=0.2, random_state=0, stratify=y)
    return (x_train, y_train), (x_test, y_test)


def load(split: str, offline: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``split`` is "train" or "test"; images come as float32 (n, 28, 28, 1) in [0, 1]."""
    data = None
    if not offline:
        try:
            data = _mnist()
        except Exception as exc:  # any download failure means: use the offline data
            print(f"MNIST unavailable ({type(exc).__name__}); using sklearn's digits", file=sys.stderr)
    if data is None:
        data = _digits()
    images, labels = data[0] if split == "train" else data[1]
    return (images.reshape(-1, 28, 28, 1) / 255.0).astype("float32"), labels.astype("int64")
