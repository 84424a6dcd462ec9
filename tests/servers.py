"""The real servers the tests and the benchmarks run: Debian's Pushgateway and Prometheus on free
loopback ports. Plain functions without pytest, so that benchmarks/ imports them without a conftest."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families


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
