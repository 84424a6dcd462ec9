"""A training script that only prints FloydHub-style metric lines; the sidecar needs nothing more.

Linear regression by gradient descent on made-up data, one JSON line per metric and epoch:

    python examples/floydhub_print.py | gangplank-sidecar --job floydhub
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(epochs: int = 10, learning_rate: float = 0.1) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, size=(200, 3))
    y = x @ np.array([3.0, -2.0, 0.5]) + 1.0 + rng.normal(0.0, 0.1, size=200)
    x_train, y_train, x_val, y_val = x[:160], y[:160], x[160:], y[160:]
    w, b = np.zeros(3), 0.0
    for epoch in range(1, epochs + 1):
        error = x_train @ w + b - y_train
        w -= learning_rate * 2.0 * x_train.T @ error / len(y_train)
        b -= learning_rate * 2.0 * error.mean()
        loss = float(np.mean((x_train @ w + b - y_train) ** 2))
        val_loss = float(np.mean((x_val @ w + b - y_val) ** 2))
        print(json.dumps({"metric": "loss", "value": loss, "epoch": epoch}), flush=True)
        print(json.dumps({"metric": "val_loss", "value": val_loss, "epoch": epoch}), flush=True)


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
