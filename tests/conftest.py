"""Shared fixtures: the real Pushgateway on a free loopback port, and how to run our commands."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

# Keras (imported by Gangplank, the reference peer) runs on the JAX CPU backend in the tests.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# tests/proxy.py's fault-injecting proxy fixture, for every test module that asks for `proxy`.
pytest_plugins = ["proxy"]

ROOT = Path(__file__).resolve().parent.parent
SIDECAR = [sys.executable, "-m", "gangplank_sidecar"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def keras_env(**extra: str) -> dict[str, str]:
    """The environment for a training subprocess: Keras on the JAX CPU backend."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("GANGPLANK_PUSHGATEWAY", None)
    return env


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample at ``url`` (a /metrics page), keyed by (name, labels)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample named ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


@dataclass
class Server:
    """A real server (Debian's binary) on a free loopback port, until the test stops it."""

    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


ServerT = TypeVar("ServerT", bound=Server)


def serve(kind: type[ServerT], argv: list[str], port: int) -> ServerT:
    """Starts ``argv`` (listening on ``port``) and returns once it answers /-/ready."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/-/ready", timeout=30)
    except OSError:
        process.kill()
        process.wait(10)
        raise
    return kind(url, process)


class Pushgateway(Server):
    def samples(self) -> Samples:
        return scrape(self.url + "/metrics")

    def gangplank(self) -> Samples:
        """Only the pushed gangplank_* samples (the gateway adds its own metrics)."""
        return {k: v for k, v in self.samples().items() if k[0].startswith("gangplank_")}


def pushgateway_binary() -> str:
    binary = (
        os.environ.get("PUSHGATEWAY_BIN") or shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
    )
    assert Path(binary).exists(), "install Debian's prometheus-pushgateway (see README) or set PUSHGATEWAY_BIN"
    return binary


def start_pushgateway(*args: str) -> Pushgateway:
    port = free_port()
    # Debian's build persists to /var/lib/prometheus by default: every test gateway would share it.
    argv = [pushgateway_binary(), f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=", *args]
    return serve(Pushgateway, argv, port)


@pytest.fixture
def pushgateway() -> Iterator[Pushgateway]:
    gateway = start_pushgateway()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session", autouse=True)
def private_run_history(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Sidecars started by the tests keep their run history in a temporary directory, not in ~."""
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    os.environ.pop("GANGPLANK_DB", None)


@pytest.fixture(scope="module")
def digits() -> tuple:
    """Healthy digits for the checks' tests: (x, y, x_val, y_val, raw x, raw x_val).

    Shuffled, stratified, standardised with the training set's statistics; sklearn is only
    imported by the modules that ask for it.
    """
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    data = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        data.data.astype(np.float32), data.target, test_size=0.2, stratify=data.target, random_state=0
    )
    scaler = StandardScaler().fit(x_train)
    return (
        scaler.transform(x_train).astype(np.float32),
        y_train,
        scaler.transform(x_val).astype(np.float32),
        y_val,
        x_train,
        x_val,
    )


def codes(findings: list[dict]) -> list[str]:
    """The codes of a checks' findings, in order."""
    return [f["code"] for f in findings]


class Prometheus(Server):
    def api(self, path: str, **params: str) -> dict:
        """``/api/v1/<path>``'s data, asserting that Prometheus answered "success"."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success"
        return body["data"]


def start_prometheus(workdir: Path, config: str, *flags: str) -> Prometheus:
    """The Debian Prometheus on a free loopback port, with its config and storage in ``workdir``."""
    (workdir / "prometheus.yml").write_text(config, encoding="utf-8")
    port = free_port()
    argv = [
        os.environ.get("PROMETHEUS_BIN") or "/usr/bin/prometheus",
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        *flags,
    ]
    return serve(Prometheus, argv, port)
