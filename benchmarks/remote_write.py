"""Remote write: samples per second into the real Prometheus receiver, and the memory of the buffer.

Step records (4 metrics + the step gauge: 5 samples each) go through the store listener, as in the
sidecar. Throughput: the buffer is filled first, then the worker drains it into a Debian Prometheus
started with ``--web.enable-remote-write-receiver`` and every sample is accounted for. Memory: the
RSS added by 100k buffered samples (20k records), the sink not started.
Run: ``.venv/bin/python benchmarks/remote_write.py``.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry

from _common import start_prometheus
from gangplank_sidecar.aggregation.state import Store
from gangplank_sidecar.sinks.remote_write import RemoteWriteSink, remote_write_sinks

SAMPLES_PER_RECORD = 5


def fill(url: str, records: int, max_buffered: int) -> tuple[RemoteWriteSink, float]:
    """A sink holding ``records`` step records of one run, and the listener's seconds per record."""
    store = Store()
    recorder, (sink,) = remote_write_sinks([url], {}, CollectorRegistry(), print)
    sink.max_buffered = max_buffered
    store.listeners.append(recorder)
    start = time.time() - 1800
    series = store.begin("bench", "train", "run-1", when=start)
    metrics = ("loss", "accuracy", "learning_rate", "grad_norm")

    def step(n: int):
        def change(s):
            s.time, s.step = start + n * 0.005, n
            s.observe({key: n * 1e-3 + i for i, key in enumerate(metrics)}, None)

        return change

    began = time.perf_counter()
    for n in range(records):
        store.update(series, "step", step(n))
    return sink, (time.perf_counter() - began) / records


def throughput(records: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prometheus = start_prometheus(
            Path(tmp), "global:\n  scrape_interval: 1m\n", "--web.enable-remote-write-receiver"
        )
        url = prometheus.url
        try:
            sink, per_record = fill(url + "/api/v1/write", records, max_buffered=records * SAMPLES_PER_RECORD)
            began = time.perf_counter()
            sink.start()
            ok = sink.close(time.monotonic() + 600)
            took = time.perf_counter() - began
        finally:
            prometheus.stop()
    sent = sink.metrics.sent._value.get()
    assert ok and sent == records * SAMPLES_PER_RECORD, (ok, sent)
    print(
        f"reading path (store update + listener): {per_record * 1e6:.1f} us per step record of {SAMPLES_PER_RECORD} "
        "samples"
    )
    print(f"delivered {sent:.0f} samples in {took:.2f} s: {sent / took:,.0f} samples/s into Prometheus 2.42")


def memory(samples: int) -> None:
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    sink, _ = fill("http://127.0.0.1:9/api/v1/write", samples // SAMPLES_PER_RECORD, max_buffered=samples)
    gc.collect()
    added = process.memory_info().rss - before
    print(
        f"{sink._buffered} samples buffered: +{added / 2**20:.1f} MiB RSS ({added / sink._buffered:.0f} bytes per "
        "sample)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40_000, help="step records for the throughput run")
    args = parser.parse_args()
    memory(100_000)
    throughput(args.records)


if __name__ == "__main__":
    main()
