"""A hand-written numpy training loop reporting through the plain ``Run`` API (no Keras).

Softmax regression on sklearn's digits, trained by mini-batch gradient descent:

    python examples/plain_loop.py | gangplank-sidecar
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0, Run


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def loss_and_accuracy(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    p = softmax(x @ w + b)
    loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
    return float(loss), float((p.argmax(axis=1) == y).mean())


def main(epochs: int = 5, batch_size: int = 32, learning_rate: float = 0.5) -> None:
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.2, random_state=0, stratify=y_train)
    rng = np.random.default_rng(0)
    w = rng.normal(0.0, 0.01, size=(x.shape[1], 10))
    b = np.zeros(10)

    with Run(job="digits-numpy", framework="numpy", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0) as run:
        run.start("train", params=w.size + b.size, epochs=epochs)
        for epoch in range(epochs):
            order = rng.permutation(len(x_train))
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                grad = softmax(x_train[idx] @ w + b)
                grad[np.arange(len(idx)), y_train[idx]] -= 1.0
                grad /= len(idx)
                w -= learning_rate * x_train[idx].T @ grad
                b -= learning_rate * grad.sum(axis=0)
            loss, accuracy = loss_and_accuracy(w, b, x_train, y_train)
            val_loss, val_accuracy = loss_and_accuracy(w, b, x_val, y_val)
            metrics = {"loss": loss, "accuracy": accuracy, "val_loss": val_loss, "val_accuracy": val_accuracy}
            run.epoch(epoch, metrics, weights=[w, b])
        test_loss, test_accuracy = loss_and_accuracy(w, b, x_test, y_test)
        run.evaluate({"loss": test_loss, "accuracy": test_accuracy}, weights=[w, b])


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
