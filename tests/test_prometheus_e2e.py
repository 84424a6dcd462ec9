"""End to end with the real Prometheus: a training run through the sidecar, and Prometheus
configured from the shipped deploy/prometheus/prometheus.yml, scraping both the test's gateway
(push) and the sidecar's own ``--listen`` endpoint (pull), asked over its HTTP API."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SIDECAR, Prometheus, Pushgateway, free_port, start_prometheus

SHIPPED = ROOT / "deploy" / "prometheus" / "prometheus.yml"
EPOCHS = 5
MARKER = '{"gangplank":'
LINGER = 60.0  # an upper bound: the test stops the sidecar once Prometheus has scraped it
GATEWAY = 'instance=""'  # honor_labels keeps the gateway's empty instance, so these series have none


def local_config(gateway_url: str, sidecar_address: str) -> dict:
    """The shipped configuration, scraping the test's gateway and sidecar every second."""
    config = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(SHIPPED.parent / pattern) for pattern in config["rule_files"]]
    targets = {"pushgateway": urllib.parse.urlsplit(gateway_url).netloc, "gangplank-sidecar": sidecar_address}
    assert sorted(job["job_name"] for job in config["scrape_configs"]) == sorted(targets)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


@pytest.fixture
def sidecar_address() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def prometheus(pushgateway: Pushgateway, sidecar_address: str, tmp_path: Path) -> Iterator[Prometheus]:
    server = start_prometheus(tmp_path, yaml.safe_dump(local_config(pushgateway.url, sidecar_address)))
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


@pytest.fixture
def lingering(pushgateway: Pushgateway, sidecar_address: str) -> Iterator[tuple[subprocess.Popen, list[dict]]]:
    """``python examples/plain_loop.py 5 | gangplank-sidecar --listen ... --linger 60``, its input read.

    The records come from the sidecar's echo, up to the last one (the training's end); the sidecar
    is still serving its final state then. Whatever the test does, the sidecar does not outlive it.
    """
    training = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "plain_loop.py"), str(EPOCHS)], stdout=subprocess.PIPE
    )
    sidecar = subprocess.Popen(
        [
            *SIDECAR,
            "--pushgateway",
            pushgateway.url,
            "--job",
            "e2e",
            "--listen",
            sidecar_address,
            "--linger",
            str(LINGER),
        ],
        stdin=training.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert training.stdout is not None and sidecar.stdout is not None
    training.stdout.close()
    try:
        records: list[dict] = []
        while not records or (records[-1]["event"], records[-1]["phase"]) != ("end", "train"):
            line = sidecar.stdout.readline()
            assert line, "the sidecar's echo ended before the training's end record"
            if line.startswith(MARKER):
                records.append(json.loads(line))
        assert training.wait(30) == 0
        yield sidecar, records
    finally:
        for process in (sidecar, training):
            process.kill()
            process.wait(10)
        sidecar.stdout.close()
        sidecar.stderr.close()


def test_prometheus_scrapes_the_sidecar_and_the_gateway(
    lingering: tuple[subprocess.Popen, list[dict]], sidecar_address: str, prometheus: Prometheus
) -> None:
    sidecar, records = lingering
    epochs = [r for r in records if r["event"] == "epoch"]
    (evaluate,) = [r for r in records if r["event"] == "evaluate"]
    assert [r["epoch"] for r in epochs] == list(range(1, EPOCHS + 1))
    val_loss, test_loss = epochs[-1]["metrics"]["val_loss"], evaluate["metrics"]["loss"]
    pull = f'instance="{sidecar_address}"'

    # Pull: while the sidecar lingers, Prometheus scrapes its final state from --listen directly;
    # honor_labels keeps the sidecar's job, and Prometheus adds the target's address as instance.
    (series,) = wait_for_value(prometheus, f'gangplank_train_val_loss{{job="e2e", phase="train", {pull}}}', val_loss)
    assert series["metric"] == {
        "__name__": "gangplank_train_val_loss",
        "job": "e2e",
        "phase": "train",
        "instance": sidecar_address,
    }
    wait_for_value(prometheus, f'gangplank_train_epochs_count{{job="e2e", {pull}}}', float(EPOCHS))
    wait_for_value(prometheus, f'gangplank_test_loss{{job="e2e", phase="test", {pull}}}', test_loss)
    wait_for_value(prometheus, f'up{{job="gangplank-sidecar", {pull}}}', 1.0)

    sidecar.send_signal(signal.SIGTERM)  # ends the linger; the pushes were delivered long before
    _, errors = sidecar.communicate(timeout=20)
    assert sidecar.returncode == 0, errors
    # The sidecar is gone: its target is down, and its series are stale at once.
    wait_for_value(prometheus, f'up{{job="gangplank-sidecar", {pull}}}', 0.0)
    assert prometheus.api("query", query=f'{{job="e2e", {pull}}}')["result"] == []

    # Push: the gateway keeps the final state. honor_labels: the sidecar's job and phase instead of
    # the scrape job's name, and the gateway's empty instance label instead of the gateway's address.
    (series,) = wait_for_value(prometheus, f'gangplank_train_val_loss{{job="e2e", {GATEWAY}}}', val_loss)
    assert series["metric"] == {"__name__": "gangplank_train_val_loss", "job": "e2e", "phase": "train"}
    wait_for_value(prometheus, f'gangplank_train_epochs_count{{job="e2e", {GATEWAY}}}', float(EPOCHS))
    wait_for_value(prometheus, f'gangplank_train_model_parameters_count{{job="e2e", {GATEWAY}}}', 650.0)
    wait_for_value(prometheus, f'gangplank_test_loss{{job="e2e", phase="test", {GATEWAY}}}', test_loss)
    wait_for_value(prometheus, f'gangplank_train_model_weights_count{{job="e2e", {GATEWAY}}}', 650.0)


def test_prometheus_loads_the_shipped_rules(prometheus: Prometheus) -> None:
    shipped = sorted((SHIPPED.parent / "rules").glob("*.yml"))
    expected = sorted(
        group["name"] for path in shipped for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    )
    assert sorted(group["name"] for group in prometheus.api("rules")["groups"]) == expected


def test_local_config_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(local_config("http://127.0.0.1:9091", "127.0.0.1:9100")), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert config["scrape_configs"] == [
        {"job_name": "pushgateway", "honor_labels": True, "static_configs": [{"targets": ["127.0.0.1:9091"]}]},
        {"job_name": "gangplank-sidecar", "honor_labels": True, "static_configs": [{"targets": ["127.0.0.1:9100"]}]},
    ]
