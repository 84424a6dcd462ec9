"""Remote write into the real Prometheus (receiver on), directly and behind a fault proxy."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cramjam
import pytest
from prometheus_client import CollectorRegistry

from conftest import SIDECAR, Prometheus, Pushgateway, free_port, scrape, start_prometheus, value
from gangplank_sidecar.aggregation.state import RunState, Store
from gangplank_sidecar.sinks import remote_write_pb2 as pb
from gangplank_sidecar.sinks.remote_write import (
    RecordSamples,
    RemoteWriteMetrics,
    RemoteWriteSink,
    encode,
    remote_write_sinks,
)
from proxy import FaultProxy

EPOCHS = 30


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    """The Debian Prometheus with the remote-write receiver and no scrape jobs at all."""
    server = start_prometheus(tmp_path, "global:\n  scrape_interval: 1m\n", "--web.enable-remote-write-receiver")
    yield server
    server.stop()


@pytest.fixture
def rw_proxy(prometheus: Prometheus) -> Iterator[FaultProxy]:
    """The shared fault proxy (tests/proxy.py), in front of Prometheus instead of the gateway."""
    fault = FaultProxy(prometheus.url.removeprefix("http://"))
    yield fault
    fault.stop()


def query(prometheus: Prometheus, promql: str) -> list[dict]:
    return prometheus.api("query", query=promql)["result"]


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def epoch_line(run: str, when: float, epoch: int, loss: float) -> str:
    record = {
        "gangplank": 1,
        "event": "epoch",
        "run": run,
        "phase": "train",
        "time": when,
        "epoch": epoch,
        "elapsed_seconds": epoch * 1.5,
        "metrics": {"loss": loss, "accuracy": 1 - loss},
        "params": {"total": 1234},
    }
    return json.dumps(record) + "\n"


def losses(n: int) -> list[float]:
    """Values with all 17 significant digits, so that any rounding on the way shows."""
    return [1 / (i + 3) + 1e-9 * i for i in range(n)]


@pytest.fixture
def start_sidecar() -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts sidecars writing to ``url``; any still running at the end of the test is killed."""
    started: list[subprocess.Popen] = []

    def start(url: str, job: str, *extra: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [
                *SIDECAR,
                "--remote-write",
                url + "/api/v1/write",
                "--job",
                job,
                "--quiet",
                "--system-interval",
                "0",
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def assert_exact(prometheus: Prometheus, job: str, times: list[float], values: list[float]) -> None:
    (series,) = query(prometheus, f'gangplank_train_loss{{job="{job}"}}[1h]')
    assert [round(float(t) * 1000) for t, _ in series["values"]] == [round(t * 1000) for t in times]
    assert [float(v) for _, v in series["values"]] == values


def test_thirty_epochs_land_with_their_own_timestamps(
    prometheus: Prometheus, start_sidecar: Callable[..., subprocess.Popen]
) -> None:
    start = round(time.time() - 120, 3) + 0.0004  # sub-millisecond part: rounded, never truncated
    times = [start + i for i in range(EPOCHS)]
    values = losses(EPOCHS)
    sidecar = start_sidecar(prometheus.url, "rw-exact", "--label", "team=vision")
    out, err = sidecar.communicate(
        "".join(epoch_line("run-a", t, i + 1, v) for i, (t, v) in enumerate(zip(times, values))), timeout=60
    )
    assert sidecar.returncode == 0, err
    assert_exact(prometheus, "rw-exact", times, values)
    (series,) = query(prometheus, 'gangplank_train_loss{job="rw-exact"}')
    assert series["metric"] == {
        "__name__": "gangplank_train_loss",
        "job": "rw-exact",
        "phase": "train",
        "run": "run-a",
        "team": "vision",
    }
    (epochs,) = query(prometheus, 'gangplank_train_epochs_count{job="rw-exact"}[1h]')
    assert [float(v) for _, v in epochs["values"]] == [float(i + 1) for i in range(EPOCHS)]
    (params,) = query(prometheus, 'gangplank_train_model_parameters_count{job="rw-exact"}')
    assert float(params["value"][1]) == 1234.0


def test_a_receiver_that_fails_for_a_while_loses_nothing(
    rw_proxy: FaultProxy, prometheus: Prometheus, start_sidecar: Callable[..., subprocess.Popen]
) -> None:
    proxy = rw_proxy
    start = round(time.time() - 120, 3)
    times = [start + i for i in range(EPOCHS)]
    values = losses(EPOCHS)
    lines = [epoch_line("run-b", t, i + 1, v) for i, (t, v) in enumerate(zip(times, values))]
    proxy.set("500")
    sidecar = start_sidecar(proxy.url, "rw-faults", "--flush-timeout", "30")
    assert sidecar.stdin is not None
    for chunk, failures in ((lines[:15], 1), (lines[15:], 3)):
        sidecar.stdin.write("".join(chunk))
        sidecar.stdin.flush()
        wait_for(lambda failures=failures: len(proxy.outcomes()) >= failures)
    assert set(proxy.outcomes()) == {"500"}
    proxy.clear()
    out, err = sidecar.communicate(timeout=60)
    assert sidecar.returncode == 0, err
    assert_exact(prometheus, "rw-faults", times, values)
    assert err.count("HTTP 500 Internal Server Error: injected 500; retrying in the background") == 1
    assert proxy.outcomes()[-1] == "forwarded"
    assert err.count("again") == 1


def test_a_400_answer_is_reported_once_and_not_retried(
    rw_proxy: FaultProxy, prometheus: Prometheus, start_sidecar: Callable[..., subprocess.Popen]
) -> None:
    proxy = rw_proxy
    now = time.time()
    sidecar = start_sidecar(proxy.url, "rw-reject", "--strict")
    assert sidecar.stdin is not None
    # Too old for Prometheus once it holds recent samples: two batches answered 400 "out of bounds".
    for sent, line in enumerate(
        (
            epoch_line("fresh", now - 10, 1, 0.5),
            epoch_line("stale-1", now - 3 * 3600, 1, 0.25),
            epoch_line("stale-2", now - 3 * 3600, 1, 0.125),
        ),
        start=1,
    ):
        sidecar.stdin.write(line)
        sidecar.stdin.flush()
        wait_for(lambda sent=sent: len(proxy.outcomes()) == sent)  # one batch per record
    started = time.monotonic()
    out, err = sidecar.communicate(epoch_line("fresh", now - 5, 2, 0.0625), timeout=60)
    assert time.monotonic() - started < 5
    assert sidecar.returncode == 1  # --strict: rejected samples were not delivered
    assert proxy.outcomes() == ["forwarded"] * 4  # two accepted, two rejected (400), none sent again
    rejected = [line for line in err.splitlines() if "rejected" in line]
    assert len(rejected) == 1
    assert "HTTP 400 Bad Request: out of bounds" in rejected[0]
    assert_exact(prometheus, "rw-reject", [now - 10, now - 5], [0.5, 0.0625])


def _sink(max_buffered: int) -> tuple[RemoteWriteSink, RemoteWriteMetrics]:
    metrics = RemoteWriteMetrics(CollectorRegistry())
    return RemoteWriteSink(
        "http://127.0.0.1:9/api/v1/write", metrics, lambda message: None, max_buffered=max_buffered
    ), metrics


def test_overflow_drops_the_oldest_step_samples_never_epoch_samples() -> None:
    sink, metrics = _sink(max_buffered=10)
    key = ((("__name__", "x"),),)
    records = [RecordSamples(1000 + i, step=i % 3 != 0, keys=key * 2, values=(float(i), float(i))) for i in range(12)]
    for record in records:
        sink.put(record)
    kept = [entry.record.time_ms for entry in sink._buffer if entry.live]
    # 24 samples offered, 10 allowed: each overflow drops the oldest step record; epoch records stay.
    assert kept == [1000, 1003, 1006, 1009, 1011]
    assert metrics.dropped.labels("overflow")._value.get() == 14.0
    assert metrics.pending._value.get() == 10.0
    assert sink.lost == 14


def test_overflow_with_only_epoch_samples_keeps_them_all() -> None:
    sink, metrics = _sink(max_buffered=4)
    for i in range(5):
        sink.put(RecordSamples(i, step=False, keys=(((("__name__", "x"),)),), values=(float(i),)))
    assert [e.record.time_ms for e in sink._buffer if e.live] == [0, 1, 2, 3, 4]
    assert metrics.dropped.labels("overflow")._value.get() == 0.0


def test_records_become_time_ordered_series_with_the_push_path_names() -> None:
    store = Store()
    recorder, sinks = remote_write_sinks(["http://127.0.0.1:9/w"], {"team": "a"}, CollectorRegistry(), lambda m: None)
    store.listeners.append(recorder)
    series = store.begin("j", "train", "r1", when=100.0)

    def step(s, n=0, loss=0.0, when=0.0):
        s.time, s.step = when, n
        s.observe({"loss": loss}, s.epoch)

    store.update(series, "step", lambda s: step(s, 10, 0.9, 100.5))
    store.update(series, "epoch", lambda s: (step(s, 10, 0.8, 101.0), setattr(s, "epoch", 1)))
    store.update(series, "step", lambda s: step(s, 20, 0.7, 101.0))  # same millisecond as the epoch
    store.update(series, "end", lambda s: setattr(s, "status", "ok"))
    (sink,) = sinks
    records = [entry.record for entry in sink._buffer]
    assert [(r.time_ms, r.step) for r in records] == [(100500, True), (101000, False), (101001, True)]
    request = pb.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(encode(records))))
    got = {
        tuple((label.name, label.value) for label in ts.labels): [(s.timestamp, s.value) for s in ts.samples]
        for ts in request.timeseries
    }
    base = (("job", "j"), ("phase", "train"), ("run", "r1"), ("team", "a"))
    assert got == {
        (("__name__", "gangplank_train_loss"), *base): [(100500, 0.9), (101000, 0.8), (101001, 0.7)],
        (("__name__", "gangplank_train_step"), *base): [(100500, 10.0), (101000, 10.0), (101001, 20.0)],
        (("__name__", "gangplank_train_epochs_count"), *base): [(101000, 1.0)],
        (("__name__", "gangplank_train_best"), base[0], ("metric", "loss"), *base[1:]): [(101000, 0.8)],
        (("__name__", "gangplank_run_active"), *base): [(101000, 1.0)],
        (("__name__", "gangplank_run_last_record_timestamp_seconds"), *base): [(101000, 101.0)],
    }


def test_with_the_gateway_both_get_the_run(
    prometheus: Prometheus, pushgateway: Pushgateway, start_sidecar: Callable[..., subprocess.Popen]
) -> None:
    start = round(time.time() - 60, 3)
    times, values = [start + i for i in range(3)], losses(3)
    sidecar = start_sidecar(prometheus.url, "rw-both", "--pushgateway", pushgateway.url)
    out, err = sidecar.communicate(
        "".join(epoch_line("run-c", t, i + 1, v) for i, (t, v) in enumerate(zip(times, values))), timeout=60
    )
    assert sidecar.returncode == 0, err
    assert_exact(prometheus, "rw-both", times, values)
    assert value(pushgateway.gangplank(), "gangplank_train_loss", job="rw-both", phase="train") == values[-1]


def test_a_checkpoint_waits_for_the_samples_still_buffered(
    rw_proxy: FaultProxy, prometheus: Prometheus, tmp_path: Path
) -> None:
    """Receiver down (nothing listens on its port): a followed file's checkpoint passes the lines that
    brought no samples and stops before the first epoch; once the samples are delivered it reaches the end."""
    now = round(time.time() - 60, 3)
    times, values = [now + i for i in range(3)], losses(3)
    head = ["loading the data\n", json.dumps({"gangplank": 1, "event": "start", "run": "run-c", "time": now}) + "\n"]
    lines = head + [epoch_line("run-c", t, i + 1, v) for i, (t, v) in enumerate(zip(times, values))]
    log, state, port = tmp_path / "train.log", tmp_path / "state.json", free_port()
    log.write_text("".join(lines))
    metrics = f"http://127.0.0.1:{port}/metrics"
    rw_proxy.set("refuse")

    def offset() -> int | None:
        try:
            return json.loads(state.read_text())["files"][str(log)]["offset"]
        except (OSError, ValueError, KeyError):
            return None

    def buffered() -> bool:
        try:
            samples = scrape(metrics)
        except OSError:
            return False
        read = [v for (n, _), v in samples.items() if n == "gangplank_train_loss"] == [values[-1]]
        return read and value(samples, "gangplank_sidecar_remote_write_pending_samples") > 0

    sidecar = subprocess.Popen(
        [
            *SIDECAR,
            *("--remote-write", rw_proxy.url + "/api/v1/write", "--job", "rw-checkpoint", "--system-interval", "0"),
            *("--state-file", str(state), "--listen", f"127.0.0.1:{port}"),
            *("--retry-backoff", "0.1", "--retry-backoff-max", "1", str(log)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(buffered, timeout=60)
        wait_for(lambda: offset() is not None, timeout=30)
        time.sleep(2)  # twenty checkpoint rounds: none may pass a buffered epoch
        assert offset() == len("".join(head))
        assert value(scrape(metrics), "gangplank_sidecar_remote_write_sent_samples_total") == 0
        rw_proxy.clear()
        wait_for(lambda: offset() == log.stat().st_size, timeout=60)
        assert_exact(prometheus, "rw-checkpoint", times, values)
        sidecar.terminate()
        _, err = sidecar.communicate(timeout=60)
        assert sidecar.returncode == 0, err
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.communicate()
    assert offset() == log.stat().st_size


def test_delivered_through_stops_before_the_oldest_sample_not_sent() -> None:
    """Versions: 1 the start (no samples), 2 an epoch (buffered), 3 the end (no samples). Nothing ever
    reaches the dead port, so nothing past 1 may be claimed, not even once the flush gave up."""
    store = Store()
    url = f"http://127.0.0.1:{free_port()}/api/v1/write"
    recorder, (sink,) = remote_write_sinks([url], {}, CollectorRegistry(), lambda m: None)
    store.listeners.append(recorder)
    series = store.begin("j", "train", "r", when=time.time())
    assert sink.delivered_through() == 1

    def epoch(s: RunState) -> None:
        s.epoch = 1
        s.observe({"loss": 0.5}, 1)

    store.update(series, "epoch", epoch)
    store.update(series, "end", lambda s: setattr(s, "status", "completed"))
    assert (store.version, sink.delivered_through()) == (3, 1)
    sink.start()
    assert not sink.close(time.monotonic() + 0.5)
    assert sink.lost > 0 and sink.delivered_through() == 1
