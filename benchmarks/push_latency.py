"""Latency from an epoch record written into the sidecar to its value visible on the gateway.

Starts the real Debian Pushgateway on a free loopback port and ``gangplank-sidecar`` with its
default delivery settings, then for each of 200 epochs writes one record (with a loss unique
to that epoch) and polls the gateway's /metrics until that value shows. Prints p50, p99 and the
maximum. Run: ``.venv/bin/python benchmarks/push_latency.py [--epochs 200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from _common import start_pushgateway


def gateway_loss(url: str) -> float | None:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("gangplank_train_loss{") and 'job="latency"' in line:
                return float(line.rsplit(" ", 1)[1])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    epochs = parser.parse_args().epochs
    gateway = start_pushgateway()
    url = gateway.url
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "gangplank_sidecar", "--pushgateway", url, "--job", "latency", "--quiet"],
        stdin=subprocess.PIPE,
    )
    assert sidecar.stdin is not None
    latencies = []
    try:
        for epoch in range(1, epochs + 2):  # one warm-up epoch, then ``epochs`` measured
            loss = 1.0 / (epoch + 0.5)
            record = {
                "gangplank": 1,
                "event": "epoch",
                "run": "bench",
                "phase": "train",
                "time": time.time(),
                "epoch": epoch,
                "elapsed_seconds": float(epoch),
                "metrics": {"loss": loss},
                "params": {"total": 1},
            }
            started = time.perf_counter()
            os.write(sidecar.stdin.fileno(), (json.dumps(record) + "\n").encode())
            while True:
                try:
                    if gateway_loss(url) == loss:
                        break
                except OSError:
                    pass  # a refused poll is retried
                if time.perf_counter() - started > 30:
                    raise SystemExit(f"epoch {epoch} never showed up on the gateway")
                time.sleep(0.002)
            latencies.append(time.perf_counter() - started)
    finally:
        sidecar.stdin.close()
        sidecar.wait(30)
        gateway.stop()
    warm = latencies[1:]
    cuts = statistics.quantiles(warm, n=100, method="inclusive")
    print(
        f"{len(warm)} epochs after a warm-up one ({latencies[0] * 1000:.0f} ms, with start-up): "
        f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, max {max(warm) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
