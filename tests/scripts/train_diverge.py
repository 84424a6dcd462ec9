"""A real Keras fit on sklearn's digits with a learning rate far too high (LR, default 10).

Used by the checks test: the sidecar must flag the run as diverging within a few epochs.
"""

import os

import keras
from sklearn.datasets import load_digits

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0, Emitter

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
keras.utils.set_random_seed(1)
model = keras.Sequential(
    [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")]
)
model.compile(optimizer=keras.optimizers.SGD(float(os.environ.get("LR", "10"))), loss="sparse_categorical_crossentropy")
emitter = Emitter(histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0, job="diverge")
model.fit(
    x[:1200],
    y[:1200],
    epochs=int(os.environ.get("EPOCHS", "6")),
    batch_size=64,
    validation_split=0.25,
    callbacks=[emitter],
    verbose=2,
)
