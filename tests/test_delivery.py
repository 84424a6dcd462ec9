"""Delivery through gateway faults: the producer never waits, and the final state always arrives.

Each test runs ``producer | gangplank-sidecar`` as two real processes, with the sidecar pushing
through tests/proxy.py to the real Pushgateway. The producer writes each record with one
``os.write`` and times it, as a training process would feel it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SIDECAR, Pushgateway, value
from proxy import FAULTS, FaultProxy

JOB = "faults"
TRAIN = {"job": JOB, "phase": "train"}
FAST = [
    "--job",
    JOB,
    "--system-interval",
    "0",
    "--push-timeout",
    "0.5",
    "--connect-timeout",
    "0.5",
    "--push-retries",
    "2",
    "--retry-backoff",
    "0.05",
    "--retry-backoff-max",
    "0.2",
]
BOUNDS = [-0.5, 0.0, 0.5]

PRODUCER = r"""
import json, os, sys, time
lines, timings, release = sys.argv[1], sys.argv[2], sys.argv[3]
spent = []
for line in open(lines, "rb"):
    started = time.perf_counter()
    os.write(1, line)
    spent.append(time.perf_counter() - started)
    time.sleep(0.02)
with open(timings + ".tmp", "w") as f:
    json.dump(spent, f)
os.rename(timings + ".tmp", timings)
while release and not os.path.exists(release):
    time.sleep(0.01)
"""


def record(epoch: int) -> dict:
    """Epoch ``epoch`` of a made-up run, with values that differ from every other epoch."""
    counts = [epoch, 2 * epoch + 1, 3 * epoch + 2, 3 * epoch + 5]
    return {
        "gangplank": 1,
        "event": "epoch",
        "run": "20261125-101530-fa17",
        "phase": "train",
        "time": 1764065730.0 + epoch,
        "epoch": epoch,
        "elapsed_seconds": 1.25 * epoch,
        "metrics": {
            "loss": 1 / (epoch + 1),
            "accuracy": 1 - 1 / (epoch + 2),
            "val_loss": 0.5 / epoch,
            "val_accuracy": 0.01 * epoch,
        },
        "params": {"total": 1000 + epoch},
        "weights": {
            "le": BOUNDS,
            "counts": counts,
            "count": counts[-1],
            "sum": 0.125 * epoch,
            "min": -0.75,
            "max": 0.75,
            "nonfinite": 0,
        },
    }


def write_lines(tmp_path: Path, epochs: int) -> Path:
    start = {
        "gangplank": 1,
        "event": "start",
        "run": "20261125-101530-fa17",
        "phase": "train",
        "time": 1764065730.0,
        "params": {"total": 1000},
    }
    path = tmp_path / "lines.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [start, *(record(e) for e in range(1, epochs + 1))]))
    return path


class Pipe:
    """``producer | gangplank-sidecar ARGS`` with the sidecar's output in files."""

    def __init__(self, tmp_path: Path, url: str, *args: str, epochs: int = 20, release: bool = True) -> None:
        self.lines = write_lines(tmp_path, epochs)
        self.timings, self.release = tmp_path / "timings.json", tmp_path / "release"
        self.out, self.err = tmp_path / "sidecar.out", tmp_path / "sidecar.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.sidecar = subprocess.Popen(
                [*SIDECAR, "--pushgateway", url, *FAST, *args], stdin=subprocess.PIPE, stdout=out, stderr=err
            )
        self.producer = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, str(self.lines), str(self.timings), str(self.release) if release else ""],
            stdout=self.sidecar.stdin,
        )
        assert self.sidecar.stdin is not None
        self.sidecar.stdin.close()  # the producer holds the only write end: its exit is our EOF

    def written(self, timeout: float = 20) -> list[float]:
        deadline = time.monotonic() + timeout
        while not self.timings.exists():
            assert time.monotonic() < deadline, "the producer did not finish writing"
            time.sleep(0.01)
        return json.loads(self.timings.read_text())

    def wait_read(self) -> None:
        """Until the sidecar has echoed every line (it parses each chunk right after echoing it)."""
        wait_for(lambda: self.out.read_bytes() == self.lines.read_bytes(), what="the echo")
        time.sleep(0.2)

    def finish(self, timeout: float = 20) -> int:
        self.release.touch()
        self.producer.wait(timeout)
        return self.sidecar.wait(timeout)

    def stderr(self) -> str:
        return self.err.read_text()

    def kill(self) -> None:
        for process in (self.producer, self.sidecar):
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def pipes():
    made: list[Pipe] = []
    yield lambda *args, **kwargs: made.append(Pipe(*args, **kwargs)) or made[-1]
    for pipe in made:
        pipe.kill()


def wait_for(condition, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def epochs_on(gateway: Pushgateway) -> float | None:
    found = [
        v
        for (n, ls), v in gateway.samples().items()
        if n == "gangplank_train_epochs_count" and set(TRAIN.items()) <= ls
    ]
    return found[0] if found else None


def assert_final_state(gateway: Pushgateway, epoch: int = 20) -> None:
    """Every value of the last epoch, exactly."""
    samples, last = gateway.samples(), record(epoch)
    for key, expected in last["metrics"].items():
        assert value(samples, f"gangplank_train_{key}", **TRAIN) == expected
    assert value(samples, "gangplank_train_epochs_count", **TRAIN) == epoch
    assert value(samples, "gangplank_train_elapsed_time_seconds", **TRAIN) == last["elapsed_seconds"]
    assert value(samples, "gangplank_train_model_parameters_count", **TRAIN) == last["params"]["total"]
    buckets = [
        value(samples, "gangplank_train_model_weights_bucket", le=le, **TRAIN) for le in ("-0.5", "0", "0.5", "+Inf")
    ]
    assert buckets == last["weights"]["counts"]
    assert value(samples, "gangplank_train_model_weights_count", **TRAIN) == last["weights"]["count"]
    assert value(samples, "gangplank_train_model_weights_sum", **TRAIN) == last["weights"]["sum"]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_never_blocks_the_producer_and_the_final_state_arrives(
    fault: str, pushgateway: Pushgateway, proxy: FaultProxy, pipes, tmp_path: Path
) -> None:
    proxy.set(fault, latency=0.3)
    pipe = pipes(tmp_path, proxy.url, "--push-timeout", "1" if fault == "latency" else "0.5")
    timings = pipe.written()
    assert len(timings) == 21 and max(timings) < 0.010, f"slowest write {max(timings) * 1000:.1f} ms"
    if fault not in ("cut", "latency"):  # a cut answer comes after the gateway took the push
        wait_for(lambda: len(proxy.requests) >= 2 or fault == "refuse", what="faulted pushes")
        assert epochs_on(pushgateway) is None
        assert {r.outcome.split(" ")[0] for r in proxy.requests} <= {fault}
    pipe.wait_read()
    cleared = len(proxy.requests)
    proxy.clear()
    wait_for(lambda: epochs_on(pushgateway) == 20, what="the final state")
    assert pipe.finish() == 0, pipe.stderr()
    assert_final_state(pushgateway)
    assert pipe.out.read_bytes() == pipe.lines.read_bytes()  # the echo went on through the fault
    if fault != "latency":  # latest state wins: one push of the train group after the fault
        assert [r.outcome for r in proxy.requests[cleared:] if "/phase/train" in r.path] == ["forwarded"]


def test_self_metrics_count_every_push(pushgateway: Pushgateway, proxy: FaultProxy, pipes, tmp_path: Path) -> None:
    proxy.set("503")
    pipe = pipes(tmp_path, proxy.url)
    pipe.written()
    wait_for(lambda: len(proxy.requests) >= 3, what="faulted pushes")
    proxy.clear()
    cleared = time.time()
    wait_for(lambda: epochs_on(pushgateway) == 20, what="the final state")
    assert pipe.finish() == 0, pipe.stderr()
    samples, me = pushgateway.samples(), {"job": JOB, "phase": "sidecar"}
    outcomes = proxy.outcomes()
    failures, successes = outcomes.count("503"), outcomes.count("forwarded")
    assert failures + successes == len(outcomes)
    # the last push carries our own metrics as they were just before it
    assert value(samples, "gangplank_sidecar_pushes_total", result="failure", **me) == failures
    assert value(samples, "gangplank_sidecar_pushes_total", result="success", **me) == successes - 1
    assert value(samples, "gangplank_sidecar_push_duration_seconds_count", **me) == failures + successes - 1
    assert value(samples, "gangplank_sidecar_pending_snapshots", **me) == 0
    assert cleared <= value(samples, "gangplank_sidecar_last_push_success_timestamp_seconds", **me) <= time.time()


def test_eof_during_an_outage_keeps_trying_until_the_gateway_is_back(
    pushgateway: Pushgateway, proxy: FaultProxy, pipes, tmp_path: Path
) -> None:
    proxy.set("500")
    pipe = pipes(tmp_path, proxy.url, "--flush-timeout", "60", release=False)
    pipe.written()
    pipe.producer.wait(10)
    time.sleep(0.5)  # EOF reached; the sidecar is flushing into the fault
    assert pipe.sidecar.poll() is None
    proxy.clear()
    assert pipe.sidecar.wait(40) == 0, pipe.stderr()
    assert_final_state(pushgateway)
    # A push that failed during the outage may say it goes on trying; the final state was delivered.
    assert "not delivered to the Pushgateway" not in pipe.stderr()


def test_sigterm_delivers_the_final_state(pushgateway: Pushgateway, proxy: FaultProxy, pipes, tmp_path: Path) -> None:
    proxy.set("hang")
    pipe = pipes(tmp_path, proxy.url, "--flush-timeout", "20")
    pipe.written()
    pipe.wait_read()
    pipe.sidecar.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert pipe.sidecar.poll() is None  # still flushing into the fault
    proxy.clear()
    assert pipe.sidecar.wait(10) == 0, pipe.stderr()
    assert_final_state(pushgateway)
    assert "stopping: delivering the final state" in pipe.stderr()


@pytest.mark.parametrize("strict", [False, True])
def test_what_was_not_delivered_is_said_on_stderr(strict: bool, proxy: FaultProxy, pipes, tmp_path: Path) -> None:
    proxy.set("refuse")
    flags = ["--flush-timeout", "0.5", "--push-retries", "1000"]  # no strict exit before the end
    pipe = pipes(tmp_path, proxy.url, *flags, *(["--strict"] if strict else []), release=False)
    started = time.monotonic()
    assert pipe.sidecar.wait(20) == (1 if strict else 0)
    assert time.monotonic() - started < 10
    assert (
        f"gangplank-sidecar: not delivered to the Pushgateway at {proxy.url} within 0.5 s: "
        f"job={JOB} phase=train (epoch 20) (connection refused)\n"
    ) in pipe.stderr()


EMITTER = r"""
import sys, time
from gangplank_emitter import Run
run = Run(job="faults", histogram_buckets=None, ignore_exceptions=sys.argv[1] == "ignore")
for epoch in range(200):
    run.epoch(epoch, {"loss": 1.0 / (epoch + 1)})
    time.sleep(0.01)
print("trained", epoch + 1, file=sys.stderr)
"""


@pytest.mark.parametrize("ignore_exceptions", [False, True])
def test_strict_breaks_the_pipe_and_the_emitter_follows_ignore_exceptions(
    ignore_exceptions: bool, proxy: FaultProxy
) -> None:
    """Like Gangplank's ignore_exceptions=False: a gateway that stays down stops the training."""
    proxy.set("refuse")
    sidecar = subprocess.Popen(
        [*SIDECAR, "--pushgateway", proxy.url, *FAST, "--strict", "--quiet"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    training = subprocess.Popen(
        [sys.executable, "-c", EMITTER, "ignore" if ignore_exceptions else "raise"],
        stdout=sidecar.stdin,
        stderr=subprocess.PIPE,
    )
    assert sidecar.stdin is not None
    sidecar.stdin.close()
    try:
        assert sidecar.wait(20) == 1
        _, training_err = training.communicate(timeout=20)
        assert sidecar.stderr is not None
        message = sidecar.stderr.read().decode()
    finally:
        for process in (training, sidecar):
            process.kill()
            process.wait()
        sidecar.stderr.close()
    assert f"cannot push to the Pushgateway at {proxy.url} after 2 retries (connection refused)" in message
    assert message.rstrip().endswith("giving up (--strict)")
    if ignore_exceptions:
        assert training.returncode == 0
        assert training_err.decode().count("cannot write metrics ([Errno 32] Broken pipe); training goes on") == 1
        assert training_err.decode().endswith("trained 200\n")
    else:
        assert training.returncode == 1
        assert "BrokenPipeError" in training_err.decode() and "trained" not in training_err.decode()


@pytest.mark.parametrize("ignore_exceptions", [False, True])
def test_emitter_on_a_full_disk(ignore_exceptions: bool) -> None:
    from gangplank_emitter.writer import Writer

    writer = Writer("/dev/full", ignore_exceptions=ignore_exceptions)
    try:
        if ignore_exceptions:
            with pytest.warns(
                RuntimeWarning, match=r"cannot write metrics \(\[Errno 28\] No space left on device\); training goes on"
            ):
                writer.write({"gangplank": 1})
            writer.write({"gangplank": 1})  # warned once: filterwarnings=error would fail a second warning
        else:
            with pytest.raises(OSError) as raised:
                writer.write({"gangplank": 1})
            assert raised.value.errno == 28
    finally:
        writer.close()
