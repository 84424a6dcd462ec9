"""End to end without the emitter: a FloydHub-style script and a plain verbose=1 Keras script,
piped into the real sidecar, pushed to the real Pushgateway."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, SIDECAR, Pushgateway, keras_env, value


def pipe_into_sidecar(
    script: str, args: list[str], sidecar_args: list[str]
) -> tuple[bytes, subprocess.CompletedProcess]:
    """Runs ``script`` with its stdout piped into the sidecar; returns what it wrote and the sidecar's outcome."""
    job = subprocess.run(
        [sys.executable, str(ROOT / "tests/scripts" / script), *args], capture_output=True, env=keras_env(), timeout=300
    )
    assert job.returncode == 0, job.stderr[-2000:]
    done = subprocess.run([*SIDECAR, *sidecar_args], input=job.stdout, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == job.stdout
    return job.stdout, done


def test_floydhub_script(pushgateway: Pushgateway) -> None:
    _, done = pipe_into_sidecar("floydhub_job.py", [], ["--pushgateway", pushgateway.url, "--job", "floyd"])
    samples = pushgateway.gangplank()
    train = {"job": "floyd", "phase": "train"}
    expected = {
        "gangplank_train_accuracy": 0.75,
        "gangplank_train_batch_loss": 1 / 300,
        "gangplank_train_epochs_count": 3,
        "gangplank_train_loss": 0.5,
        "gangplank_train_step": 300,
        "gangplank_train_val_loss": 2 / 3,
    }
    assert {name: value(samples, name, **train) for name in expected} == expected
    assert b"stdin:" not in done.stderr  # no line was reported as a bad record


def shown(number: float) -> float:
    """A value as Keras 3's progress bar prints it (4 decimals, or 4 significant in exponent form)."""
    return float(f"{number:.4f}" if abs(number) > 1e-3 else f"{number:.4e}")


def test_plain_keras_verbose1_script(pushgateway: Pushgateway, tmp_path) -> None:
    expected_path = tmp_path / "expected.json"
    produced, done = pipe_into_sidecar(
        "train_keras_plain.py", [str(expected_path)], ["--pushgateway", pushgateway.url, "--job", "plain"]
    )
    assert b"\x08" in produced and b"\r" in produced and "━".encode() in produced
    expected = json.loads(expected_path.read_text())
    samples = pushgateway.gangplank()
    train, test = {"job": "plain", "phase": "train"}, {"job": "plain", "phase": "test"}
    for key, number in expected["history"].items():
        assert value(samples, f"gangplank_train_{key.replace('-', '_')}", **train) == shown(number), key
    for key, number in expected["evaluate"].items():
        assert value(samples, f"gangplank_test_{key.replace('-', '_')}", **test) == shown(number), key
    assert value(samples, "gangplank_train_epochs_count", **train) == 2
    assert b"stdin:" not in done.stderr  # no line was reported as a bad record
