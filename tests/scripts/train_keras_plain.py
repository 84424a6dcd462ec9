"""A real Keras fit (verbose=1, no emitter) + evaluate on sklearn's digits; writes Keras' values to argv[1].

The end-to-end test feeds only its progress bars to gangplank-sidecar, which must read
the same values, as rounded by the bar, from the text.
"""

import json
import sys

import keras
from sklearn.datasets import load_digits

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
keras.utils.set_random_seed(2)
model = keras.Sequential(
    [keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")]
)
model.compile(
    optimizer="adam",
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top-3")],
)
history = model.fit(x[:1400], y[:1400], epochs=2, batch_size=32, validation_split=0.2, verbose=1)
result = model.evaluate(x[1400:], y[1400:], verbose=1, return_dict=True)
with open(sys.argv[1], "w") as f:
    json.dump({"history": {k: v[-1] for k, v in history.history.items()}, "evaluate": result}, f)
