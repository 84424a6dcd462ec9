"""Real framework captures piped into the real sidecar and pushed to the real Pushgateway: exact
values for every format, byte-exact echo, lines counted by format; user patterns from a file;
a Lightning metrics.csv followed as it grows."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SIDECAR, Pushgateway, value

FRAMEWORKS = Path(__file__).parent / "fixtures" / "frameworks"

# capture -> (sidecar args, train values, test values, lines counted for the format)
CASES: dict[str, tuple[list[str], dict[str, float], dict[str, float], tuple[str, int]]] = {
    "transformers_tqdm.log": (
        [],
        {
            "loss": 0.6892,
            "grad_norm": 0.6027,
            "learning_rate": 8.333e-05,
            "val_loss": 0.6912,
            "val_runtime": 0.06,
            "val_samples_per_second": 266.5,
            "train_loss": 0.6923,
            "train_steps_per_second": 3.266,
            "epochs_count": 3,
            "elapsed_time_seconds": 3.674,
        },
        {
            "loss": 0.6911638975143433,
            "samples_per_second": 315.489,
            "steps_per_second": 39.436,
            "elapsed_time_seconds": 0.0507,
        },
        ("transformers", 11),
    ),
    "transformers4_notqdm.log": (
        ["--format", "transformers"],
        {
            "loss": 0.6892,
            "grad_norm": 0.6026939153671265,
            "val_loss": 0.6911638975143433,
            "train_loss": 0.6922544240951538,
            "epochs_count": 3,
            "elapsed_time_seconds": 5.1176,
        },
        {"loss": 0.6911638975143433, "elapsed_time_seconds": 0.2759},
        ("transformers", 11),
    ),
    "lightning_tqdm.log": (
        [],
        {"train_loss_step": 0.0136, "val_loss": 0.0161, "train_loss_epoch": 0.024, "epochs_count": 3},
        {"val_loss": 0.01607692614197731, "test_loss": 0.01607692614197731},
        ("lightning", 13),
    ),
    "lightning_rich.log": (
        ["--format", "lightning"],
        {},
        {"val_loss": 0.01607692614197731, "test_loss": 0.01607692614197731},
        ("lightning", 8),
    ),
    "xgboost_sklearn.log": (
        [],
        {
            "validation_0_logloss": 0.07598,
            "validation_0_auc": 0.99821,
            "validation_1_logloss": 0.12045,
            "validation_1_auc": 0.99486,
            "epochs_count": 12,
        },
        {},
        ("xgboost", 12),
    ),
    "lightgbm_early_stopping.log": (
        [],
        {
            "training_auc": 1.0,
            "training_binary_logloss": 0.0254481,
            "valid_1_auc": 0.997648,
            "valid_1_binary_logloss": 0.0754937,
            "epochs_count": 20,
        },
        {},
        ("lightgbm", 21),
    ),
    "keras_csvlogger.csv": (
        ["--format", "csv"],
        {
            "accuracy": 0.32080724835395813,
            "loss": 2.009014368057251,
            "val_accuracy": 0.31388887763023376,
            "val_loss": 1.9669407606124878,
            "epochs_count": 3,
        },
        {},
        ("csv", 4),
    ),
}


def sidecar(
    gateway: Pushgateway, data: bytes, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SIDECAR, "--pushgateway", gateway.url, "--system-interval", "0", *args],
        input=data,
        capture_output=True,
        timeout=120,
        env=env,
    )


def pushed(gateway: Pushgateway, job: str, phase: str, names: list[str]) -> dict[str, float]:
    samples = gateway.gangplank()
    return {name: value(samples, f"gangplank_{phase}_{name}", job=job, phase=phase) for name in names}


@pytest.mark.parametrize("name", sorted(CASES))
def test_capture_through_the_gateway(pushgateway: Pushgateway, name: str) -> None:
    args, train, test, (fmt, count) = CASES[name]
    data = (FRAMEWORKS / name).read_bytes()
    job = name.replace(".", "_")
    done = sidecar(pushgateway, data, "--job", job, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data
    assert b"stdin:" not in done.stderr  # no line was reported as a bad record
    assert pushed(pushgateway, job, "train", list(train)) == train
    assert pushed(pushgateway, job, "test", list(test)) == test
    samples = pushgateway.gangplank()
    phases = {
        dict(labels)["phase"]
        for (metric, labels) in samples
        if dict(labels).get("job") == job and metric != "gangplank_check_failed"
    }
    assert phases == {"sidecar"} | ({"train"} if train else set()) | ({"test"} if test else set())
    assert value(samples, "gangplank_sidecar_lines_total", format=fmt, phase="sidecar") == count


def test_patterns_file_from_the_environment(pushgateway: Pushgateway, tmp_path: Path) -> None:
    rules = tmp_path / "patterns.yaml"
    rules.write_text(
        "- match: 'ep (?P<epoch>\\d+) step (?P<step>\\d+) loss (?P<loss>\\S+) acc (?P<accuracy>\\S+)'\n"
        "- match: '^TEST loss (?P<loss>\\S+)$'\n  phase: test\n"
    )
    data = b"".join(
        [
            b"starting\n",
            b"ep 1 step 10 loss 0.9 acc 0.5\n",
            b"ep 2 step 20 loss 0.5 acc 0.75\n",
            b"ep 3 step 30 loss oops acc 0.8\n",  # not a number: skipped and counted, the rest goes on
            b"ep 3 step 30 loss 0.25 acc 0.875\n",
            b"TEST loss 0.375\n",
        ]
    )
    done = sidecar(pushgateway, data, "--job", "pat", env={**os.environ, "GANGPLANK_PATTERNS": str(rules)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == data
    assert (
        done.stderr.count(b"stdin:") == 1 and b"stdin:4: pattern 1: group 'loss' is not a number: 'oops'" in done.stderr
    )
    assert pushed(pushgateway, "pat", "train", ["loss", "accuracy", "epochs_count"]) == {
        "loss": 0.25,
        "accuracy": 0.875,
        "epochs_count": 3,
    }
    assert pushed(pushgateway, "pat", "test", ["loss"]) == {"loss": 0.375}
    samples = pushgateway.gangplank()
    assert value(samples, "gangplank_sidecar_lines_total", format="patterns", phase="sidecar") == 4
    assert value(samples, "gangplank_sidecar_parse_errors_total", phase="sidecar") == 1


def test_kv_lines(pushgateway: Pushgateway) -> None:
    data = b"epoch=1 loss=0.5 accuracy=0.6\nnote: epoch=x\nepoch=2 loss=0.25 accuracy=0.7 lr=1e-3\n"
    done = sidecar(pushgateway, data, "--job", "kv", "--format", "kv")
    assert done.returncode == 0, done.stderr
    assert done.stdout == data
    assert pushed(pushgateway, "kv", "train", ["loss", "accuracy", "lr", "epochs_count"]) == {
        "loss": 0.25,
        "accuracy": 0.7,
        "lr": 0.001,
        "epochs_count": 2,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pattern", "(?P<loss"], b"--pattern: pattern '(?P<loss' is not a regular expression"),
        (["--pattern", "loss (\\S+)"], b"has no named group"),
        (["--patterns", "/nonexistent/patterns.yaml"], b"cannot read the patterns file /nonexistent/patterns.yaml"),
    ],
)
def test_bad_patterns_exit_2_before_reading(args: list[str], message: bytes) -> None:
    done = subprocess.run([*SIDECAR, *args], input=b"epoch=1 loss=0.5\n", capture_output=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == b""  # nothing was read, nothing echoed
    assert done.stderr.count(b"\n") == 1 and message in done.stderr


def test_followed_lightning_metrics_csv_grows(pushgateway: Pushgateway, tmp_path: Path) -> None:
    """A CSV file followed in ``auto`` is read as CSV because of its name; rows come as training writes them."""
    rows = (FRAMEWORKS / "lightning_metrics.csv").read_bytes().split(b"\n")
    path = tmp_path / "version_0" / "metrics.csv"
    path.parent.mkdir()
    path.write_bytes(b"\n".join(rows[:7]) + b"\n")  # the header and epoch 0's rows
    process = subprocess.Popen(
        [
            *SIDECAR,
            str(path),
            "--pushgateway",
            pushgateway.url,
            "--job",
            "csv",
            "--system-interval",
            "0",
            "--state-file",
            str(tmp_path / "state.json"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for(pushgateway, "csv", "epochs_count", 1.0)
        with path.open("ab") as out:
            out.write(b"\n".join(rows[7:19]) + b"\n")  # epochs 1 and 2
        assert wait_for(pushgateway, "csv", "epochs_count", 3.0)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert pushed(pushgateway, "csv", "train", ["val_loss", "train_loss_epoch", "train_loss_step", "step"]) == {
        "val_loss": 0.01607692614197731,
        "train_loss_epoch": 0.023963581770658493,
        "train_loss_step": 0.013573826290667057,
        "step": 23,
    }
    assert value(pushgateway.gangplank(), "gangplank_sidecar_lines_total", format="csv", phase="sidecar") == 19


def wait_for(gateway: Pushgateway, job: str, name: str, expected: float, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            v for (n, ls), v in gateway.gangplank().items() if n == f"gangplank_train_{name}" and ("job", job) in ls
        ]
        if found == [expected]:
            return True
        time.sleep(0.2)
    return False


def test_a_metric_measured_some_epochs_is_only_recorded_for_those(tmp_path: Path) -> None:
    """Validation every 2 epochs is 2 values in 4 epochs in the history, never carried into the others."""
    import sqlite3

    data = b"epoch,step,train_loss,val_loss\n0,9,0.9,\n1,19,0.8,0.85\n2,29,0.7,\n3,39,0.6,0.65\n"
    path = tmp_path / "runs.db"
    done = subprocess.run(
        [*SIDECAR, "--quiet", "--system-interval", "0", "--db", str(path), "--format", "csv"],
        input=data,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(path)
    try:
        found = conn.execute("SELECT epoch, key, value FROM metrics ORDER BY epoch, key").fetchall()
    finally:
        conn.close()
    assert found == [
        (1, "train_loss", 0.9),
        (2, "train_loss", 0.8),
        (2, "val_loss", 0.85),
        (3, "train_loss", 0.7),
        (4, "train_loss", 0.6),
        (4, "val_loss", 0.65),
    ]
