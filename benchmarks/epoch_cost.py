"""What one epoch record costs the sidecar's reading thread, end to end: parse, run state, checks, history queue.

    .venv/bin/python benchmarks/epoch_cost.py [--epochs 25000] [--repeat 3]

Feeds ``--epochs`` emitter epoch records (4 metrics, as a Keras fit with validation writes
them) into the real pipeline, without and with the run history (its writer thread commits
to a SQLite file in a temporary directory meanwhile). Per epoch: the reading thread's CPU
time (``time.thread_time``: what the reading path costs, whatever else the machine runs)
and the wall time; best of ``--repeat``. Then a cProfile of the same feed, by module.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from gangplank_sidecar.aggregation.state import Store
from gangplank_sidecar.pipeline import Pipeline
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.sinks.history import HistorySink

TARGET_US = 25.0


def lines(epochs: int) -> list[bytes]:
    rng = random.Random(0)
    start = {
        "gangplank": 1,
        "event": "start",
        "run": "bench",
        "phase": "train",
        "time": 1764065730.0,
        "params": {"total": 104202},
    }
    out = [json.dumps(start).encode()]
    for e in range(1, epochs + 1):
        loss = 1.0 / e + rng.random() * 0.01
        metrics = {"accuracy": 1 - loss / 2, "loss": loss, "val_accuracy": 1 - loss / 1.8, "val_loss": loss * 1.1}
        out.append(
            json.dumps(
                {
                    "gangplank": 1,
                    "event": "epoch",
                    "run": "bench",
                    "phase": "train",
                    "time": 1764065730.0 + e,
                    "epoch": e,
                    "elapsed_seconds": float(e),
                    "metrics": metrics,
                    "params": {"total": 104202, "trainable": 104202},
                }
            ).encode()
        )
    return out


def feed(records: list[bytes], history: Path | None) -> tuple[float, float]:
    """(thread CPU seconds, wall seconds) of feeding ``records`` to a fresh pipeline."""
    store = Store()
    pipeline = Pipeline(store, SelfMetrics(), report=print)
    sink = None
    if history is not None:
        sink = HistorySink(history, {}, report=print)
        sink.start()
        store.listeners.append(sink.listen)
    pipeline.feed("bench", records[0])
    gc.freeze()  # as App.read does once start-up is done
    cpu, wall = time.thread_time(), time.perf_counter()
    for line in records[1:]:
        pipeline.feed("bench", line)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    if sink is not None:
        sink.close(time.monotonic() + 60)
        if sink.shed:
            print(f"  (the history shed {sink.shed:,} records: a writer slower than the reader)")
    return cpu, wall


def best(records: list[bytes], repeat: int, history: bool) -> tuple[float, float]:
    """Best per-epoch (CPU, wall) microseconds of ``repeat`` feeds."""
    results = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            cpu, wall = feed(records, Path(tmp) / "runs.db" if history else None)
        results.append((cpu, wall))
    n = len(records) - 1
    return min(c for c, _ in results) / n * 1e6, min(w for _, w in results) / n * 1e6


def profile(records: list[bytes]) -> None:
    """Where an epoch's time goes, by module (tottime), without the history."""
    profiler = cProfile.Profile()
    profiler.runcall(feed, records, None)
    by_module: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, tottime, _, _) in pstats.Stats(profiler).stats.items():
        name = (
            filename.split("/gangplank_sidecar/")[-1]
            if "/gangplank_sidecar/" in filename
            else "other (stdlib, pydantic)"
        )
        by_module[name] += tottime
    total = sum(by_module.values())
    print("cProfile, share of the time by module (profiler overhead included):")
    for name, seconds in sorted(by_module.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {name:<40}{seconds / total:>6.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    records = lines(args.epochs)
    print(f"{args.epochs:,} epoch records, best of {args.repeat}; target {TARGET_US:g} us an epoch")
    for name, history in (("--no-history", False), ("with the history", True)):
        cpu, wall = best(records, args.repeat, history)
        print(f"  {name:<18} {cpu:6.1f} us an epoch (reading thread CPU), {wall:6.1f} us wall")
    profile(records)


if __name__ == "__main__":
    main()
