"""The README demo: a real Keras fit on sklearn's digits, its records printed to stdout.

KERAS_BACKEND=jax python examples/digits.py | gangplank-sidecar
"""

from __future__ import annotations

import sys

from _digits import fit_and_evaluate

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0, Emitter


def main(epochs: int = 5) -> None:
    fit_and_evaluate(Emitter(job="digits", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0), epochs)


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
