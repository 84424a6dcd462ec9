"""The echo for a terminal (``--echo text``) against the plain echo (``--echo all``).

A Keras verbose=1 stream with the emitter's records (bar updates with ``\\r``, one record per
epoch after the bar text, a 21-bucket histogram in each) is echoed to /dev/null in 64 KiB
chunks, once through ``Echo`` as it is and once leaving the records out. Prints MB/s of each and
the ratio. Run: ``.venv/bin/python benchmarks/echo_filter.py``.
"""

from __future__ import annotations

import json
import time

from gangplank_sidecar.sources.stdin import CHUNK, Echo

BAR = "━" * 20


def stream(epochs: int = 2000, steps: int = 30) -> bytes:
    weights = {
        "le": [i / 10 - 1 for i in range(21)],
        "counts": list(range(22)),
        "count": 21,
        "sum": 0.5,
        "min": -1.0,
        "max": 1.0,
        "nonfinite": 0,
    }
    out = []
    for epoch in range(1, epochs + 1):
        out.append(f"Epoch {epoch}/{epochs}\n")
        for step in range(1, steps + 1):
            out.append(f"\r{step:2d}/{steps} {BAR} 0s 3ms/step - accuracy: 0.9{step:02d} - loss: 0.1{step:02d}")
        record = {
            "gangplank": 1,
            "event": "epoch",
            "run": "r",
            "phase": "train",
            "time": 1.0,
            "epoch": epoch,
            "elapsed_seconds": 1.0,
            "metrics": {"loss": 0.1, "accuracy": 0.9},
            "params": {"total": 1000},
            "weights": weights,
        }
        out.append(json.dumps(record) + "\n")
        out.append(
            f"\r{steps}/{steps} {BAR} 1s 3ms/step - accuracy: 0.95 - loss: 0.1 - val_accuracy: 0.96 - val_loss: 0.09\n"
        )
    return "".join(out).encode()


def best_of(data: bytes, records: bool, rounds: int = 5) -> float:
    """The fastest of ``rounds`` passes, in seconds."""
    times = []
    for _ in range(rounds):
        with open("/dev/null", "wb") as null:
            echo = Echo(null, report=print, records=records)
            started = time.perf_counter()
            for at in range(0, len(data), CHUNK):
                echo(data[at : at + CHUNK])
            echo(b"")
            times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    data = stream()
    plain, text = best_of(data, True), best_of(data, False)
    mb = len(data) / 1e6
    print(f"{mb:.1f} MB of Keras verbose=1 output with a record per epoch")
    print(f"--echo all : {mb / plain:8.0f} MB/s")
    print(f"--echo text: {mb / text:8.0f} MB/s  ({text / plain:.1f}x the time of the plain echo)")


if __name__ == "__main__":
    main()
