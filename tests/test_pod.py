"""The sidecar as a pod's second container: it follows the file a training process writes.

The sidecar runs as a real process against the real Pushgateway: started before or after
the trainer, killed with SIGKILL and restarted mid-run (every record is pushed once,
counted through tests/proxy.py), stopped with SIGTERM (the final state is delivered),
or leaving by itself with ``--exit-on-end``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import SIDECAR, Pushgateway, value
from gangplank_emitter import Run
from proxy import FaultProxy

TRAINER = r"""
import sys, time
from gangplank_emitter import Run
with Run(job="pod", file=sys.argv[1], histogram_buckets=None) as run:
    run.start(params=1234, epochs=4)
    for epoch in range(4):
        time.sleep(0.2)
        run.epoch(epoch, {"loss": 1 / (epoch + 2), "accuracy": epoch / 8})
    run.evaluate({"loss": 0.375, "accuracy": 0.625})
"""


def sidecar_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data")}


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_sidecar_left() -> Iterator[None]:
    """A failed test must not leave its sidecar running into the next one."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def start_sidecar(tmp_path: Path, *args: str, name: str = "sidecar") -> subprocess.Popen:
    with (tmp_path / f"{name}.err").open("ab") as err:
        proc = subprocess.Popen(
            [*SIDECAR, "--system-interval", "0", "--no-history", *args], stderr=err, env=sidecar_env(tmp_path)
        )
    _started.append(proc)
    return proc


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def train_pushes(proxy: FaultProxy) -> list[tuple[float | None, float | None]]:
    """(epochs_count, elapsed_time_seconds) of every push to the train group, in order."""
    pushes = []
    for request in list(proxy.requests):
        if request.method != "PUT" or "/phase/train" not in request.path:
            continue
        samples = {s.name: s.value for f in text_string_to_metric_families(request.body.decode()) for s in f.samples}
        pushes.append(
            (samples.get("gangplank_train_epochs_count"), samples.get("gangplank_train_elapsed_time_seconds"))
        )
    return pushes


def checkpointed(state: Path, log: Path) -> bool:
    """Whether the state file's position is the end of the log."""
    try:
        return json.loads(state.read_text())["files"][str(log)]["offset"] == log.stat().st_size
    except (FileNotFoundError, KeyError, ValueError):
        return False


@pytest.mark.parametrize("order", ["sidecar first", "trainer first"])
def test_a_trainer_and_a_sidecar_share_a_directory(tmp_path: Path, pushgateway: Pushgateway, order: str) -> None:
    log = tmp_path / "shared" / "train" / "metrics.jsonl"
    trainer_cmd = [sys.executable, "-c", TRAINER, str(log)]
    args = [str(log), "--pushgateway", pushgateway.url, "--exit-on-end"]
    if order == "trainer first":
        trainer = subprocess.run(trainer_cmd, timeout=60)
        sidecar = start_sidecar(tmp_path, *args)
    else:
        sidecar = start_sidecar(tmp_path, *args)
        wait_for(lambda: f"waiting for {log}" in (tmp_path / "sidecar.err").read_text())
        trainer = subprocess.run(trainer_cmd, timeout=60)
    assert trainer.returncode == 0
    assert sidecar.wait(30) == 0, (tmp_path / "sidecar.err").read_text()
    samples = pushgateway.gangplank()
    train, test = {"job": "pod", "phase": "train"}, {"job": "pod", "phase": "test"}
    assert value(samples, "gangplank_train_epochs_count", **train) == 4
    assert value(samples, "gangplank_train_loss", **train) == 1 / 5
    assert value(samples, "gangplank_train_accuracy", **train) == 3 / 8
    assert value(samples, "gangplank_train_model_parameters_count", **train) == 1234
    assert value(samples, "gangplank_test_loss", **test) == 0.375
    assert value(samples, "gangplank_test_accuracy", **test) == 0.625
    assert (tmp_path / "sidecar.err").read_text().count("waiting for") == (1 if order == "sidecar first" else 0)


def test_sigkill_and_restart_push_every_record_exactly_once(tmp_path: Path, proxy: FaultProxy) -> None:
    """Killed after epoch 3 was delivered and checkpointed; epoch 4 is written while it is down."""
    log, state = tmp_path / "logs" / "metrics.jsonl", tmp_path / "follow.json"
    args = [str(log), "--pushgateway", proxy.url, "--state-file", str(state)]
    run = Run(job="resume", file=log, histogram_buckets=None)
    sidecar = start_sidecar(tmp_path, *args)

    def step(write: Callable[[], None], pushes: int) -> None:
        write()
        wait_for(lambda: len(train_pushes(proxy)) == pushes and checkpointed(state, log))

    step(lambda: run.start(params=99, epochs=6), 1)
    for epoch in range(3):
        step(lambda epoch=epoch: run.epoch(epoch, {"loss": 1 / (epoch + 1)}), epoch + 2)
    sidecar.kill()
    assert sidecar.wait(10) == -signal.SIGKILL
    run.epoch(3, {"loss": 1 / 4})
    sidecar = start_sidecar(tmp_path, *args)
    wait_for(lambda: len(train_pushes(proxy)) == 5 and checkpointed(state, log))
    for epoch in (4, 5):
        step(lambda epoch=epoch: run.epoch(epoch, {"loss": 1 / (epoch + 1)}), epoch + 2)
    step(lambda: run.close(), 8)
    sidecar.terminate()
    assert sidecar.wait(20) == 0

    expected, epoch = [], None
    for record in map(json.loads, log.read_text().splitlines()):
        epoch = record.get("epoch", epoch)
        expected.append((epoch, record.get("elapsed_seconds")))
    assert [e for e, _ in expected] == [None, 1, 2, 3, 4, 5, 6, 6]
    assert train_pushes(proxy) == expected
    err = (tmp_path / "sidecar.err").read_text()
    assert err.count(f"resuming {log} at byte ") == 1


def test_sigterm_during_a_run_delivers_the_final_state(tmp_path: Path, pushgateway: Pushgateway) -> None:
    log = tmp_path / "metrics.jsonl"
    run = Run(job="term", file=log, histogram_buckets=None)
    sidecar = start_sidecar(
        tmp_path, str(log), "--pushgateway", pushgateway.url, "--state-file", str(tmp_path / "s.json")
    )
    run.start(params=5, epochs=10)
    wait_for(lambda: any(name == "gangplank_train_model_parameters_count" for name, _ in pushgateway.gangplank()))
    run.epoch(0, {"loss": 0.5})
    run.epoch(1, {"loss": 0.25})
    sidecar.send_signal(signal.SIGTERM)  # at once: the last pass reads what the watcher has not reported yet
    assert sidecar.wait(20) == 0
    samples = pushgateway.gangplank()
    assert value(samples, "gangplank_train_epochs_count", job="term", phase="train") == 2
    assert value(samples, "gangplank_train_loss", job="term", phase="train") == 0.25
    assert checkpointed(tmp_path / "s.json", log)
    run.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_sidecar_uses_next_to_no_cpu(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_bytes(b'{"metric": "loss", "value": 0.5}\n')
    sidecar = start_sidecar(tmp_path, str(log), "--state-file", str(tmp_path / "s.json"))
    try:
        wait_for(lambda: (tmp_path / "s.json").exists())
        before = cpu_seconds(sidecar.pid)
        time.sleep(3.0)
        used = cpu_seconds(sidecar.pid) - before
    finally:
        sidecar.terminate()
        assert sidecar.wait(20) == 0
    assert used <= 0.06  # under 2% of one core


def test_the_emitter_appends_whole_lines_and_creates_the_directory(tmp_path: Path) -> None:
    """Two processes append ~4 KB records to one file at once; every line stays whole."""
    log = tmp_path / "not" / "yet" / "metrics.jsonl"
    writer = (
        "import sys\nfrom gangplank_emitter import Run\n"
        "run = Run(job=sys.argv[2], file=sys.argv[1], histogram_buckets=None)\n"
        "for i in range(300):\n    run.epoch(i, {sys.argv[2] + str(k): i + k / 1000 for k in "
        "range(200)})\nrun.close()\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", writer, str(log), job]) for job in ("a", "b")]
    assert [w.wait(60) for w in writers] == [0, 0]
    records = [json.loads(line) for line in log.read_bytes().split(b"\n")[:-1]]
    assert len(records) == 2 * 302
    assert sorted(r["job"] for r in records if r["event"] == "start") == ["a", "b"]
    assert [r["status"] for r in records if r["event"] == "end"] == ["ok", "ok"]
    for job in ("a", "b"):
        mine = [r for r in records if r["event"] == "epoch" and f"{job}0" in r["metrics"]]
        assert [r["epoch"] for r in mine] == list(range(1, 301))
        assert all(r["metrics"][f"{job}199"] == r["epoch"] - 1 + 0.199 for r in mine)
