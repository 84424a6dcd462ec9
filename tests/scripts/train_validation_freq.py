"""A real Keras fit on sklearn's digits that validates every 4th epoch (validation_freq=4, 12 epochs).

Used by test_validation_freq.py: the sidecar must record val_loss for epochs 4, 8 and 12 only.
Writes Keras' own history (the epochs' val_loss, as Keras measured them) to argv[1].
"""

import json
import sys

import keras
from sklearn.datasets import load_digits

from gangplank_emitter import Emitter

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
keras.utils.set_random_seed(3)
model = keras.Sequential(
    [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
history = model.fit(
    x[:1200],
    y[:1200],
    epochs=12,
    batch_size=64,
    validation_data=(x[1200:], y[1200:]),
    validation_freq=4,
    callbacks=[Emitter(job="valfreq")],
    verbose=0,
)
with open(sys.argv[1], "w") as out:
    json.dump(history.history, out)
