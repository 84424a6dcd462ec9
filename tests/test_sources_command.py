"""Wrapper mode: ``gangplank-sidecar -- COMMAND``, as a real process around a real command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import SIDECAR, Pushgateway, free_port, value
from gangplank_sidecar.sources.command import exit_code

CHILD = r"""
import json, os, sys
code = int(sys.argv[1])
def record(**fields):
    head = {"gangplank": 1, "run": "20261125-101530-beef", "time": 1764065730.5, "params": {"total": 42}}
    return json.dumps({**head, **fields})
os.write(1, b"plain text \xff\xfe not utf-8\r\n")
epoch = record(event="epoch", phase="train", epoch=1, elapsed_seconds=2.5, metrics={"loss": 0.75})
os.write(1, (epoch + "\n").encode())
os.write(2, b"a warning on stderr\n")
os.write(2, (record(event="evaluate", phase="test", elapsed_seconds=0.5, metrics={"loss": 0.625}) + "\n").encode())
os.write(1, b"no newline at the end")
sys.exit(code)
"""


def wrap(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_DATA_HOME": str(kwargs.pop("tmp_path"))}
    return subprocess.run(
        [*SIDECAR, "--system-interval", "0", "--no-history", *args], capture_output=True, timeout=60, env=env, **kwargs
    )


def test_exit_code_follows_the_shell() -> None:
    assert [exit_code(0), exit_code(3), exit_code(-signal.SIGTERM), exit_code(-signal.SIGKILL)] == [0, 3, 143, 137]


@pytest.mark.parametrize("code", [0, 3])
def test_the_command_is_echoed_parsed_and_its_exit_code_returned(tmp_path, pushgateway: Pushgateway, code: int) -> None:
    done = wrap(
        "--pushgateway",
        pushgateway.url,
        "--job",
        "wrapped",
        "--",
        sys.executable,
        "-c",
        CHILD,
        str(code),
        tmp_path=tmp_path,
    )
    assert done.returncode == code
    assert (
        done.stdout == b"plain text \xff\xfe not utf-8\r\n" + done.stdout.split(b"\n")[1] + b"\nno newline at the end"
    )
    assert done.stderr.startswith(b'a warning on stderr\n{"gangplank": 1')
    assert done.stderr.count(b"\n") == 2  # the command's two lines and nothing of ours
    samples = pushgateway.gangplank()
    assert value(samples, "gangplank_train_loss", job="wrapped", phase="train") == 0.75  # from stdout
    assert value(samples, "gangplank_train_epochs_count", job="wrapped", phase="train") == 1
    assert value(samples, "gangplank_test_loss", job="wrapped", phase="test") == 0.625  # from stderr


@pytest.mark.parametrize(("signum", "expected"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_are_forwarded_and_the_signal_is_the_exit_code(tmp_path, signum: int, expected: int) -> None:
    child = "import time; print('ready', flush=True); time.sleep(60)"
    with subprocess.Popen(
        [*SIDECAR, "--system-interval", "0", "--no-history", "--", sys.executable, "-c", child],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
    ) as sidecar:
        assert sidecar.stdout is not None and sidecar.stderr is not None
        assert sidecar.stdout.readline() == b"ready\n"
        sidecar.send_signal(signum)
        assert sidecar.wait(20) == expected
        err = sidecar.stderr.read()
    assert (b"KeyboardInterrupt" in err) == (signum == signal.SIGINT)  # the command saw the signal itself


def test_quiet_parses_without_echoing(tmp_path) -> None:
    done = wrap("--quiet", "--", sys.executable, "-c", CHILD, "0", tmp_path=tmp_path)
    assert done.returncode == 0
    assert done.stdout == b""
    summary = done.stderr.decode()
    assert "run 20261125-101530-beef (job gangplank, train): 1 epoch in 2.5 s, no end record" in summary
    assert "a warning" not in summary


def test_a_command_that_does_not_exist(tmp_path) -> None:
    done = wrap("--", str(tmp_path / "no-such-command"), tmp_path=tmp_path)
    assert done.returncode == 127
    assert (
        done.stderr.decode().splitlines()[0]
        == f"gangplank-sidecar: cannot run {tmp_path / 'no-such-command'}: No such file or directory"
    )


def test_strict_with_an_unreachable_gateway_stops_the_command(tmp_path) -> None:
    """--strict: an undeliverable push ends the sidecar at once, and the command with it."""
    child = CHILD.replace("sys.exit(code)", "print(os.getpid(), flush=True); import time; time.sleep(60)")
    refused = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = wrap(
        "--strict",
        "--pushgateway",
        refused,
        "--job",
        "wrapped",
        "--push-retries",
        "0",
        "--retry-backoff",
        "0.05",
        "--flush-timeout",
        "0.3",
        "--",
        sys.executable,
        "-c",
        child,
        "0",
        tmp_path=tmp_path,
    )
    took = time.monotonic() - started
    assert (done.returncode, took < 10) == (1, True), (took, done.stderr)
    pid = int(done.stdout.splitlines()[-1].removeprefix(b"no newline at the end"))
    alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    if alive:
        os.kill(pid, signal.SIGKILL)  # the test fails, and leaves nothing behind
    assert not alive
