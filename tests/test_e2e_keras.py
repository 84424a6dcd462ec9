"""End to end: a real Keras fit and evaluate, piped into gangplank-sidecar, into the real gateway."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, SIDECAR, keras_env, value
from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_0_3


def run_training(tmp_path, sidecar_args: list[str]) -> tuple[dict, bytes, subprocess.CompletedProcess]:
    """``train.py | tee train.out | gangplank-sidecar ARGS``, as a user would type it."""
    expected, tee = tmp_path / "expected.json", tmp_path / "train.out"
    train = [sys.executable, str(ROOT / "tests/scripts/train_digits.py"), str(expected)]
    pipeline = f"{shlex.join(train)} | tee {shlex.quote(str(tee))} | {shlex.join([*SIDECAR, *sidecar_args])}"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, env=keras_env(), timeout=180)
    return json.loads(expected.read_text()), tee.read_bytes(), done


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    """One training run shared by the tests below (Keras start-up is the slow part)."""
    from conftest import start_pushgateway

    gateway = start_pushgateway()
    request.addfinalizer(gateway.stop)
    tmp = tmp_path_factory.mktemp("e2e")
    expected, produced, done = run_training(tmp, ["--pushgateway", gateway.url, "--job", "digits"])
    return gateway, expected, produced, done


def test_train_metrics_equal_keras_history(trained) -> None:
    gateway, expected, _, done = trained
    assert done.returncode == 0, done.stderr
    samples = gateway.gangplank()
    train = {"job": "digits", "phase": "train"}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert value(samples, f"gangplank_train_{key}", **train) == expected["history"][key]
    assert value(samples, "gangplank_train_epochs_count", **train) == 3
    assert value(samples, "gangplank_train_model_parameters_count", **train) == expected["params"]
    assert 0 < value(samples, "gangplank_train_elapsed_time_seconds", **train) < 120


def test_weight_histogram_equals_numpy(trained) -> None:
    gateway, expected, _, _ = trained
    samples = gateway.gangplank()
    train = {"job": "digits", "phase": "train"}
    bounds = [*(f"{b:g}" for b in HISTOGRAM_WEIGHT_BUCKETS_0_3), "+Inf"]  # as the gateway prints them
    buckets = [value(samples, "gangplank_train_model_weights_bucket", le=le, **train) for le in bounds]
    assert buckets == expected["counts"]
    assert value(samples, "gangplank_train_model_weights_count", **train) == expected["counts"][-1]
    assert value(samples, "gangplank_train_model_weights_sum", **train) == pytest.approx(
        expected["sum"], rel=1e-9, abs=1e-9
    )


def test_test_push_keeps_training_metrics(trained) -> None:
    gateway, expected, _, _ = trained
    samples = gateway.gangplank()
    test = {"job": "digits", "phase": "test"}
    for key, v in expected["evaluate"].items():
        assert value(samples, f"gangplank_test_{key}", **test) == v
    assert value(samples, "gangplank_test_model_parameters_count", **test) == expected["params"]
    assert not [name for name, _ in samples if name == "gangplank_test_epochs_count"]
    assert value(samples, "gangplank_train_loss", job="digits", phase="train") == expected["history"]["loss"]


def test_echo_is_byte_for_byte(trained) -> None:
    _, _, produced, done = trained
    assert b"\r" in produced and b'{"gangplank": 1' in produced
    assert done.stdout == produced


def test_sidecar_reports_its_own_pushes(trained) -> None:
    gateway, _, _, _ = trained
    samples = gateway.gangplank()
    assert value(samples, "gangplank_sidecar_pushes_total", result="failure", phase="sidecar") == 0
    assert (
        value(samples, "gangplank_sidecar_lines_total", format="gangplank", phase="sidecar") == 8
    )  # start, 3 epochs, end; start, evaluate, end


def test_embedded_default_prints_a_summary(tmp_path) -> None:
    expected, produced, done = run_training(tmp_path, [])
    assert done.returncode == 0
    assert done.stdout == produced
    summary = done.stderr.decode()
    assert "(job gangplank, train): 3 epochs in" in summary
    assert "(job gangplank, test): evaluate in" in summary
    loss = expected["history"]["loss"]
    assert f"  loss  {loss:>12.6g}" in summary.replace("      ", "  ")
