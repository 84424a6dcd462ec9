"""A real Keras fit that Kepler's checks should catch: raw 0-16 pixels, labels sorted, a sigmoid hidden layer.

Its stdout (Keras' progress and the Emitter's records) goes into gangplank-sidecar in the end-to-end test.
"""

import keras
import numpy as np
from sklearn.datasets import load_digits

from gangplank_emitter import Emitter, inspect_data

x, y = load_digits(return_X_y=True)
order = np.argsort(y, kind="stable")
x, y = x[order].astype("float32"), y[order]
keras.utils.set_random_seed(1)
inspect_data(x, y, batch_size=32)
model = keras.Sequential(
    [keras.Input((64,)), keras.layers.Dense(16, activation="sigmoid"), keras.layers.Dense(10, activation="softmax")]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
model.fit(x, y, epochs=1, batch_size=32, callbacks=[Emitter(job="checks")], verbose=2)
