"""A Keras fit that writes its records to a file, for a sidecar that follows the file.

    KERAS_BACKEND=jax python examples/tail_file.py /tmp/train/metrics.jsonl &
    gangplank-sidecar --exit-on-end /tmp/train/metrics.jsonl

The emitter appends one whole line per record and creates missing directories; the
training log itself stays on the terminal, untouched.
"""

from __future__ import annotations

import sys

from _digits import fit_and_evaluate

from gangplank_emitter import Emitter


def main(path: str = "metrics.jsonl", epochs: int = 5) -> None:
    fit_and_evaluate(Emitter(file=path, job="digits-file"), epochs)


if __name__ == "__main__":
    main(*sys.argv[1:2], *(int(arg) for arg in sys.argv[2:3]))
