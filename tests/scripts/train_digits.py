"""A real Keras fit + evaluate on sklearn's digits with the Emitter; writes what Keras saw to argv[1].

Used by the end-to-end tests: its stdout goes into gangplank-sidecar, and the JSON it writes
is what the gateway must show.
"""

import json
import os
import sys

import keras
import numpy as np
from sklearn.datasets import load_digits

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_0_3, Emitter

out_path = sys.argv[1]
epochs = int(os.environ.get("EPOCHS", "3"))
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
keras.utils.set_random_seed(1)
order = np.random.default_rng(1).permutation(len(x))
x, y = x[order], y[order]
x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]

model = keras.Sequential(
    [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
emitter = Emitter(histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3, job=os.environ.get("EMITTER_JOB"))
history = model.fit(
    x_train, y_train, epochs=epochs, batch_size=64, validation_split=0.2, callbacks=[emitter], verbose=1
)
weights = np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in model.trainable_weights])
train_counts = [int(np.count_nonzero(weights <= b)) for b in HISTOGRAM_WEIGHT_BUCKETS_0_3] + [int(weights.size)]
result = model.evaluate(x_test, y_test, callbacks=[emitter], verbose=1, return_dict=True)
with open(out_path, "w") as f:
    json.dump(
        {
            "history": {k: v[-1] for k, v in history.history.items()},
            "evaluate": result,
            "params": model.count_params(),
            "counts": train_counts,
            "sum": float(weights.sum()),
        },
        f,
    )
