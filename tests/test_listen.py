"""Pull mode: --listen serves the run state at /metrics, alone or beside the Pushgateway."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import SIDECAR, free_port, scrape, value, wait_http

EPOCH = {
    "gangplank": 1,
    "event": "epoch",
    "run": "r1",
    "phase": "train",
    "time": 1.0,
    "epoch": 2,
    "elapsed_seconds": 4.25,
    "metrics": {"loss": 0.125, "val-loss": 0.5},
    "params": {"total": 1234},
    "weights": {"le": [-0.5, 0.0, 0.5], "counts": [1, 5, 9, 10], "count": 10, "sum": -0.75},
}
EVALUATE = {
    "gangplank": 1,
    "event": "evaluate",
    "run": "r1",
    "phase": "test",
    "time": 2.0,
    "elapsed_seconds": 0.5,
    "metrics": {"loss": 0.25},
    "params": {"total": 1234},
}
FLOYDHUB = [{"metric": "top5", "value": 0.875, "epoch": 3}]


def start(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [*SIDECAR, "--listen", f"127.0.0.1:{port}", "--quiet", "--no-history", "--system-interval", "0", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/-/ready", timeout=30)
    return proc, url


def feed(proc: subprocess.Popen, *records: dict) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    proc.stdin.flush()


def until(url: str, name: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url + "/metrics")
        if any(n == name for n, _ in samples):
            return samples
        assert time.monotonic() < deadline, f"{name} never appeared"
        time.sleep(0.05)


def finish(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    out, err = proc.communicate(timeout=30)  # closes stdin: EOF
    assert proc.returncode == 0, err
    return out, err


def test_scrape_has_the_exact_values() -> None:
    proc, url = start("--job", "pull", "--label", "team=ml")
    try:
        feed(proc, EPOCH, EVALUATE)
        samples = until(url, "gangplank_test_loss")
        train = {"job": "pull", "phase": "train", "team": "ml"}
        assert value(samples, "gangplank_train_loss", **train) == 0.125
        assert value(samples, "gangplank_train_val_loss", **train) == 0.5
        assert value(samples, "gangplank_train_epochs_count", **train) == 2
        assert value(samples, "gangplank_train_elapsed_time_seconds", **train) == 4.25
        assert value(samples, "gangplank_train_model_parameters_count", **train) == 1234
        assert [
            value(samples, "gangplank_train_model_weights_bucket", le=le, **train)
            for le in ("-0.5", "0", "0.5", "+Inf")
        ] == [1, 5, 9, 10]
        assert value(samples, "gangplank_train_model_weights_sum", **train) == -0.75
        assert value(samples, "gangplank_test_loss", job="pull", phase="test", team="ml") == 0.25
        # the sidecar's own series carry the labels of the push path's group {job, phase="sidecar"}
        assert (
            value(samples, "gangplank_sidecar_lines_total", format="gangplank", job="pull", phase="sidecar", team="ml")
            == 2
        )
    finally:
        finish(proc)


def test_floydhub_lines_are_served_too() -> None:
    proc, url = start("--job", "fh")
    try:
        feed(proc, *FLOYDHUB)
        samples = until(url, "gangplank_train_top5")
        assert value(samples, "gangplank_train_top5", job="fh", phase="train") == 0.875
        assert value(samples, "gangplank_train_epochs_count", job="fh", phase="train") == 3
    finally:
        finish(proc)


def test_text_format_even_when_openmetrics_is_asked_and_health_endpoints() -> None:
    """OpenMetrics cannot carry the weights histogram's _sum (negative bounds): see sinks/listen.py."""
    proc, url = start()
    try:
        feed(proc, EPOCH)
        until(url, "gangplank_train_loss")
        request = urllib.request.Request(
            url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert "# EOF" not in response.read().decode()
        for path in ("/-/healthy", "/-/ready"):
            with urllib.request.urlopen(url + path, timeout=5) as response:
                assert response.status == 200 and response.read() == b"OK\n"
    finally:
        finish(proc)


def test_port_in_use_is_a_usage_error_before_reading() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # stdin stays open: the sidecar must give up before it reads anything.
        proc = subprocess.Popen(
            [*SIDECAR, "--listen", str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.decode().splitlines() == [f"gangplank-sidecar: --listen {port}: Address already in use"]


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:99999", "host:port"])
def test_bad_address_is_a_usage_error(address: str) -> None:
    done = subprocess.run([*SIDECAR, "--listen", address], input=b"", capture_output=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.decode() == f"gangplank-sidecar: --listen: bad address {address!r}: expected [HOST:]PORT\n"


def test_pull_and_push_agree(pushgateway) -> None:
    proc, url = start("--job", "both", "--pushgateway", pushgateway.url)
    try:
        feed(proc, EPOCH, EVALUATE)
        pulled = until(url, "gangplank_test_loss")
    finally:
        finish(proc)

    def ours(samples: dict) -> dict:
        return {
            (name, frozenset((k, v) for k, v in labels if k != "instance")): v
            for (name, labels), v in samples.items()
            if name.startswith(("gangplank_train", "gangplank_test"))
        }

    assert ours(pushgateway.samples()) == ours(pulled)
    assert sorted({name for name, _ in ours(pulled)}) == [
        "gangplank_test_elapsed_time_seconds",
        "gangplank_test_loss",
        "gangplank_test_model_parameters_count",
        "gangplank_train_best",
        "gangplank_train_best_epoch",
        "gangplank_train_elapsed_time_seconds",
        "gangplank_train_epochs_count",
        "gangplank_train_loss",
        "gangplank_train_model_parameters_count",
        "gangplank_train_model_weights_bucket",
        "gangplank_train_model_weights_count",
        "gangplank_train_model_weights_sum",
        "gangplank_train_val_loss",
    ]


def test_linger_keeps_serving_after_eof() -> None:
    proc, url = start("--linger", "30")
    feed(proc, EPOCH)
    assert proc.stdin is not None
    proc.stdin.close()
    time.sleep(0.5)
    assert value(until(url, "gangplank_train_loss"), "gangplank_train_loss") == 0.125
    proc.terminate()
    assert proc.wait(30) == 0
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.parametrize(
    ("bound", "go"),
    [
        (0.0, "0"),
        (-0.3, "-0.3"),
        (1e-05, "1e-05"),
        (0.0001, "0.0001"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (-2.5e-7, "-2.5e-07"),
        (12345.678, "12345.678"),
    ],
)
def test_bounds_are_spelled_as_go_spells_them(bound: float, go: str) -> None:
    from gangplank_sidecar.sinks.families import go_float

    assert go_float(bound) == go
