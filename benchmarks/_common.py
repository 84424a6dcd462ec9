"""Shared helpers for the benchmark scripts: timing, a real Pushgateway, dead endpoints."""

from __future__ import annotations

import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # servers.py, kubelet.py

from servers import free_port, start_prometheus, start_pushgateway

__all__ = ["free_port", "start_prometheus", "start_pushgateway", "per_call", "refused_address", "hung_address"]


def per_call(fn: Callable[[], object], n: int, repeat: int = 3) -> float:
    """Best-of-``repeat`` mean seconds per call over ``n`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n)
    return min(times)


def median_call(fn: Callable[[], object], n: int) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def refused_address() -> str:
    """A loopback port with nothing listening: connections are refused at once."""
    return f"127.0.0.1:{free_port()}"


def hung_address() -> tuple[str, socket.socket]:
    """A loopback port that accepts connections (in the backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return f"127.0.0.1:{sock.getsockname()[1]}", sock


def fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"
