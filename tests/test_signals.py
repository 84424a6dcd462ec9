"""Issue 15, signals: Ctrl-C in a pipe reads on to EOF (like ``tee -i``), a second one stops; SIGHUP is
SIGTERM; a signal during --linger or the final delivery shortens it and never gives a traceback.

The sidecar is a real process, the gateway the real Pushgateway (or a closed port for one that is down),
the history a real database read back with ``gangplank-runs``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SIDECAR, Pushgateway, free_port, value, wait_http

PREFIX = "gangplank-sidecar: "
STOPPING = PREFIX + "stopping: delivering the final state\n"
PATIENT = PREFIX + "interrupted: reading on until the producer closes the pipe (Ctrl-C again stops now)\n"
CUT = PREFIX + "interrupted: cutting the final delivery short\n"
DOWN = "127.0.0.1:1"  # nothing listens there: every push is refused at once


def epoch(n: int, run: str = "20261203-080000-sig1") -> bytes:
    record = {
        "gangplank": 1,
        "event": "epoch",
        "run": run,
        "phase": "train",
        "time": 1764748800.0 + n,
        "epoch": n,
        "elapsed_seconds": float(n),
        "metrics": {"loss": 1.0 / n},
        "params": {"total": 10},
    }
    return json.dumps(record).encode() + b"\n"


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*SIDECAR, "--system-interval", "0", "--db", str(tmp_path / "runs.db"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def send(proc: subprocess.Popen, data: bytes) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(data)
    proc.stdin.flush()
    assert proc.stdout.read(len(data)) == data  # echoed: the sidecar has read it


def line(proc: subprocess.Popen) -> str:
    assert proc.stderr is not None
    return proc.stderr.readline().decode()


def said(proc: subprocess.Popen, expected: str) -> None:
    """Reads stderr up to ``expected`` (a gateway that is down is reported first)."""
    seen = [line(proc) for _ in range(1)]
    while seen[-1] != expected:
        assert seen[-1] and len(seen) < 10, seen
        seen.append(line(proc))


def status(tmp_path: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "gangplank_sidecar.runs", "list", "--json", "--db", str(tmp_path / "runs.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [run["status"] for run in json.loads(done.stdout)]


def test_first_ctrl_c_in_a_pipe_reads_on_to_eof(tmp_path: Path, pushgateway: Pushgateway) -> None:
    """Item 9: the producer got the same Ctrl-C; what it writes while cleaning up is still echoed and pushed."""
    proc = start(tmp_path, "--pushgateway", pushgateway.url, "--job", "sigint")
    send(proc, epoch(1))
    proc.send_signal(signal.SIGINT)
    assert line(proc) == PATIENT
    late = b"saving checkpoint...\n" + epoch(2)
    send(proc, late)  # would be a BrokenPipeError for the producer if the sidecar had stopped
    out, err = proc.communicate(timeout=60)  # EOF: the producer is done
    assert (proc.returncode, out) == (0, b"")
    assert STOPPING not in err.decode()
    assert value(pushgateway.gangplank(), "gangplank_train_epochs_count", job="sigint", phase="train") == 2
    assert status(tmp_path) == ["interrupted"]  # no end record: closed as interrupted, not left running


def test_second_ctrl_c_stops_at_once_with_the_flush(tmp_path: Path, pushgateway: Pushgateway) -> None:
    proc = start(tmp_path, "--pushgateway", pushgateway.url, "--job", "sigint2")
    send(proc, epoch(1) + epoch(2) + epoch(3))
    proc.send_signal(signal.SIGINT)
    assert line(proc) == PATIENT
    proc.send_signal(signal.SIGINT)
    assert line(proc) == STOPPING
    assert proc.wait(60) == 0  # stdin still open: it did not wait for EOF
    _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err.decode()
    assert value(pushgateway.gangplank(), "gangplank_train_epochs_count", job="sigint2", phase="train") == 3
    assert status(tmp_path) == ["interrupted"]


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_sighup_is_handled_like_sigterm(tmp_path: Path, pushgateway: Pushgateway, signum: int) -> None:
    """Also: a signal right after the records loses none of them. It used to raise in the middle of a
    record's update of the run state, about one time in two: that run was never pushed, and nothing said so."""
    for attempt in range(5):
        job, db = f"hup{signum}-{attempt}", tmp_path / str(attempt)
        db.mkdir()
        proc = start(db, "--pushgateway", pushgateway.url, "--job", job)
        send(proc, epoch(1) + epoch(2))
        proc.send_signal(signum)
        assert line(proc) == STOPPING
        assert proc.wait(60) == 0
        assert proc.communicate(timeout=10)[1] == b""
        assert value(pushgateway.gangplank(), "gangplank_train_epochs_count", job=job, phase="train") == 2, attempt
        assert status(db) == ["interrupted"]


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_during_the_final_flush_cuts_it_short(tmp_path: Path, second: int) -> None:
    """Item 8: the gateway is down and the flush would try for 60 s; a second signal ends it, no traceback,
    the "not delivered" line is said and the history is closed."""
    proc = start(
        tmp_path,
        "--pushgateway",
        DOWN,
        "--job",
        "cut",
        "--flush-timeout",
        "60",
        "--push-retries",
        "0",
        "--retry-backoff",
        "0.05",
    )
    send(proc, epoch(1))
    proc.send_signal(signal.SIGTERM)
    said(proc, STOPPING)
    time.sleep(0.5)  # in the flush: refused, backing off, trying again
    started = time.monotonic()
    proc.send_signal(second)
    assert proc.wait(30) == 0
    took = time.monotonic() - started
    _, err = proc.communicate(timeout=10)
    lines = err.decode().splitlines(keepends=True)
    assert CUT in lines
    assert lines[-1].startswith(
        f"{PREFIX}not delivered to the Pushgateway at http://{DOWN} before the signal: job=cut phase=train (epoch 1)"
    )
    assert "Traceback" not in err.decode()
    assert took < 15, took
    assert status(tmp_path) == ["interrupted"]


def test_signals_during_linger_and_flush(tmp_path: Path) -> None:
    """A signal ends --linger (the flush still runs); another one cuts the flush short."""
    port = free_port()
    proc = start(
        tmp_path,
        "--listen",
        f"127.0.0.1:{port}",
        "--linger",
        "60",
        "--pushgateway",
        DOWN,
        "--job",
        "linger",
        "--flush-timeout",
        "60",
        "--push-retries",
        "0",
        "--retry-backoff",
        "0.05",
    )
    wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=30)
    send(proc, epoch(1))
    assert proc.stdin is not None
    proc.stdin.close()  # EOF: lingering now
    time.sleep(1.0)
    wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=5)  # still serving
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert proc.poll() is None  # flushing to a gateway that is down
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert time.monotonic() - started < 20
    assert proc.stdout is not None and proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    assert CUT in err and "Traceback" not in err
    assert err.splitlines()[-1].startswith(
        f"{PREFIX}not delivered to the Pushgateway at http://{DOWN} before the signal: job=linger phase=train"
    )
    assert status(tmp_path) == ["interrupted"]


def test_sighup_is_passed_on_to_a_wrapped_command(tmp_path: Path) -> None:
    child = "import time; print('ready', flush=True); time.sleep(60)"
    with subprocess.Popen(
        [*SIDECAR, "--system-interval", "0", "--no-history", "--", sys.executable, "-c", child],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(30) == 128 + signal.SIGHUP


def test_file_mode_cut_flush_still_writes_the_checkpoint(tmp_path: Path) -> None:
    """Following a file: epoch 1 is delivered, then the gateway goes away, epoch 2 is written. SIGTERM,
    and SIGTERM again during the flush: exit 0 at once, and the state file holds the end of epoch 1."""
    from conftest import start_pushgateway

    log, state = tmp_path / "metrics.jsonl", tmp_path / "follow.json"
    log.write_bytes(epoch(1))
    gateway = start_pushgateway()
    proc = subprocess.Popen(
        [
            *SIDECAR,
            "--system-interval",
            "0",
            "--db",
            str(tmp_path / "runs.db"),
            "--pushgateway",
            gateway.url,
            "--job",
            "follow",
            "--state-file",
            str(state),
            "--flush-timeout",
            "60",
            "--push-retries",
            "0",
            "--retry-backoff",
            "0.05",
            str(log),
        ],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not state.exists() or json.loads(state.read_text())["files"].get(str(log), {}).get("offset") != len(
            epoch(1)
        ):
            assert time.monotonic() < deadline, "epoch 1 was never checkpointed"
            time.sleep(0.1)
    finally:
        gateway.stop()
    with log.open("ab") as out:
        out.write(epoch(2))
    time.sleep(1.0)  # read, and its push refused
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert proc.poll() is None  # flushing to a gateway that is gone
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert CUT in err and "Traceback" not in err
    assert (
        f"{PREFIX}not delivered to the Pushgateway at {gateway.url} before the signal: job=follow phase=train (epoch 2)"
        in err
    )
    assert json.loads(state.read_text())["files"][str(log)]["offset"] == len(epoch(1))
    assert status(tmp_path) == ["interrupted"]
