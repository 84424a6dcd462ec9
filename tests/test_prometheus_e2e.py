"""End to end with the real Prometheus: a training run through the sidecar, the gateway, and
Prometheus configured from the shipped deploy/prometheus/prometheus.yml, asked over its HTTP API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SIDECAR, Prometheus, Pushgateway, start_prometheus

SHIPPED = ROOT / "deploy" / "prometheus" / "prometheus.yml"
EPOCHS = 5
MARKER = '{"gangplank":'


def local_config(gateway_url: str) -> dict:
    """The shipped configuration, scraping the test's gateway every second.

    The sidecar's own --listen target is left out: in this test the sidecar is gone by the time
    Prometheus is asked, and the gateway is what keeps the final state.
    """
    config = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(SHIPPED.parent / pattern) for pattern in config["rule_files"]]
    (gateway,) = [job for job in config["scrape_configs"] if job["job_name"] == "pushgateway"]
    gateway["static_configs"] = [{"targets": [urllib.parse.urlsplit(gateway_url).netloc]}]
    config["scrape_configs"] = [gateway]
    return config


@pytest.fixture
def prometheus(pushgateway: Pushgateway, tmp_path: Path) -> Iterator[Prometheus]:
    server = start_prometheus(tmp_path, yaml.safe_dump(local_config(pushgateway.url)))
    yield server
    server.stop()


def wait_for_value(prometheus: Prometheus, query: str, expected: float, timeout: float = 30.0) -> list[dict]:
    """The instant query's result once its one series shows ``expected`` (scrapes are 1 s apart)."""
    deadline = time.monotonic() + timeout
    while True:
        result = prometheus.api("query", query=query)["result"]
        if len(result) == 1 and float(result[0]["value"][1]) == expected:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{query}: {result}, expected {expected!r}")
        time.sleep(0.25)


def train_through_sidecar(gateway: Pushgateway) -> list[dict]:
    """``python examples/plain_loop.py 5 | gangplank-sidecar``; the records, read from the sidecar's echo."""
    training = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "plain_loop.py"), str(EPOCHS)], stdout=subprocess.PIPE
    )
    sidecar = subprocess.run(
        [*SIDECAR, "--pushgateway", gateway.url, "--job", "e2e"],
        stdin=training.stdout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    training.stdout.close()
    assert (training.wait(30), sidecar.returncode) == (0, 0), sidecar.stderr
    return [json.loads(line) for line in sidecar.stdout.splitlines() if line.startswith(MARKER)]


def test_prometheus_holds_the_final_epoch_of_a_real_run(pushgateway: Pushgateway, prometheus: Prometheus) -> None:
    records = train_through_sidecar(pushgateway)
    epochs = [r for r in records if r["event"] == "epoch"]
    (evaluate,) = [r for r in records if r["event"] == "evaluate"]
    assert [r["epoch"] for r in epochs] == list(range(1, EPOCHS + 1))

    (series,) = wait_for_value(prometheus, 'gangplank_train_val_loss{job="e2e"}', epochs[-1]["metrics"]["val_loss"])
    # honor_labels: the sidecar's job and phase instead of the scrape job's name, and the gateway's
    # empty instance label instead of the gateway's address.
    assert series["metric"] == {"__name__": "gangplank_train_val_loss", "job": "e2e", "phase": "train"}
    wait_for_value(prometheus, 'gangplank_train_epochs_count{job="e2e"}', float(EPOCHS))
    wait_for_value(prometheus, 'gangplank_train_model_parameters_count{job="e2e"}', 650.0)
    wait_for_value(prometheus, 'gangplank_test_loss{job="e2e", phase="test"}', evaluate["metrics"]["loss"])
    wait_for_value(prometheus, 'gangplank_train_model_weights_count{job="e2e"}', 650.0)


def test_prometheus_loads_the_shipped_rules(prometheus: Prometheus) -> None:
    shipped = sorted((SHIPPED.parent / "rules").glob("*.yml"))
    expected = sorted(
        group["name"] for path in shipped for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    )
    assert sorted(group["name"] for group in prometheus.api("rules")["groups"]) == expected


def test_local_config_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(local_config("http://127.0.0.1:9091")), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert config["scrape_configs"] == [
        {"job_name": "pushgateway", "honor_labels": True, "static_configs": [{"targets": ["127.0.0.1:9091"]}]}
    ]
