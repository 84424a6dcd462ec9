"""A metric is only recorded for the epochs that measured it (design.md section 8).

With a validation every 4 epochs, val_loss belongs to epochs 4, 8 and 12: never carried into
the epochs between, neither in the run history nor in the training checks (K504 must not fire
on a stale value); the gauge keeps the last value, as Prometheus expects.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SIDECAR, Pushgateway, keras_env
from gangplank_emitter import Run

# val_loss improves at every validation while loss falls: carried forward, the value of epoch 4
# would stand 3 epochs past its best at epoch 7 and fire K504 (overfitting_patience is 3).
LOSS = [1.0 - 0.05 * e for e in range(1, 13)]
VAL = {4: 0.9, 8: 0.8, 12: 0.7}


def sidecar(db: Path, text: bytes, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SIDECAR, "--quiet", "--system-interval", "0", "--db", str(db), *args],
        input=text,
        capture_output=True,
        timeout=120,
    )


def metrics(db: Path) -> dict[int, dict[str, float]]:
    conn = sqlite3.connect(db)
    try:
        found: dict[int, dict[str, float]] = {}
        for epoch, key, value in conn.execute(
            "SELECT m.epoch, m.key, m.value FROM metrics m JOIN runs r ON r.id = m.run_id "
            "WHERE r.phase = 'train' ORDER BY m.epoch, m.key"
        ):
            found.setdefault(epoch, {})[key] = value
        return found
    finally:
        conn.close()


def fired_checks(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT name, first_epoch, last_epoch FROM checks WHERE fired = 1 ORDER BY name").fetchall()
    finally:
        conn.close()


def exported(db: Path) -> str:
    """``gangplank-runs export`` of the training run, as CSV."""
    conn = sqlite3.connect(db)
    ((run,),) = conn.execute("SELECT run FROM runs WHERE phase = 'train'").fetchall()
    conn.close()
    done = subprocess.run(
        [sys.executable, "-m", "gangplank_sidecar.runs", "export", run, "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def expected_rows(loss: list[float], val: dict[int, float]) -> dict[int, dict[str, float]]:
    return {e: {"loss": loss[e - 1], **({"val_loss": val[e]} if e in val else {})} for e in range(1, len(loss) + 1)}


def test_a_real_keras_fit_with_validation_freq(tmp_path: Path, pushgateway: Pushgateway) -> None:
    db, keras_history = tmp_path / "runs.db", tmp_path / "history.json"
    train = [sys.executable, str(ROOT / "tests/scripts/train_validation_freq.py"), str(keras_history)]
    command = [*SIDECAR, "--quiet", "--system-interval", "0", "--db", str(db), "--pushgateway", pushgateway.url]
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{shlex.join(train)} | {shlex.join(command)}"],
        capture_output=True,
        env=keras_env(),
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    history = json.loads(keras_history.read_text())
    assert len(history["loss"]) == 12 and len(history["val_loss"]) == 3  # Keras measured 3 validations
    rows = metrics(db)
    assert [e for e, values in rows.items() if "val_loss" in values] == [4, 8, 12]
    assert [rows[e]["val_loss"] for e in (4, 8, 12)] == history["val_loss"]
    assert [rows[e]["loss"] for e in range(1, 13)] == history["loss"]
    assert "overfitting" not in [name for name, *_ in fired_checks(db)]
    # The gauge keeps the last value measured: epoch 12's.
    (gauge,) = [
        v
        for (name, labels), v in pushgateway.gangplank().items()
        if name == "gangplank_train_val_loss" and ("job", "valfreq") in labels
    ]
    assert gauge == history["val_loss"][-1]
    lines = exported(db).splitlines()
    assert lines[0] == "epoch,loss,val_loss"
    assert [line.split(",")[2] for line in lines[1:]] == [
        "" if e % 4 else repr(rows[e]["val_loss"]) for e in range(1, 13)
    ]


def test_floydhub_lines_with_a_validation_every_4_epochs(tmp_path: Path) -> None:
    lines = []
    for e, loss in enumerate(LOSS, start=1):
        lines.append({"metric": "loss", "value": loss, "epoch": e})
        if e in VAL:
            lines.append({"metric": "val_loss", "value": VAL[e], "epoch": e})
    done = sidecar(tmp_path / "runs.db", "".join(json.dumps(line) + "\n" for line in lines).encode(), "--job", "floyd")
    assert done.returncode == 0, done.stderr
    assert metrics(tmp_path / "runs.db") == expected_rows(LOSS, VAL)
    assert fired_checks(tmp_path / "runs.db") == []
    assert b"overfitting" not in done.stderr


def test_the_run_api_with_a_validation_every_4_epochs(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    with Run(job="loop", file=out, histogram_buckets=None) as run:
        for e, loss in enumerate(LOSS):
            run.epoch(e, {"loss": loss, **({"val_loss": VAL[e + 1]} if e + 1 in VAL else {})})
    done = sidecar(tmp_path / "runs.db", out.read_bytes())
    assert done.returncode == 0, done.stderr
    assert metrics(tmp_path / "runs.db") == expected_rows(LOSS, VAL)
    assert fired_checks(tmp_path / "runs.db") == []
    assert exported(tmp_path / "runs.db") == "epoch,loss,val_loss\n" + "".join(
        f"{e},{LOSS[e - 1]!r},{repr(VAL[e]) if e in VAL else ''}\n" for e in range(1, 13)
    )
