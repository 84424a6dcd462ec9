"""Issue 15, data and sinks: one bad record costs that record, never a thread, a batch or the history.

Each test is one numbered case of the issue, run against the real servers (Pushgateway, Prometheus
with its remote-write receiver) or through the real parts in-process.
"""

from __future__ import annotations

import base64
import json
import math
import os
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from conftest import SIDECAR, Prometheus, Pushgateway, free_port, start_prometheus, value, wait_http
from gangplank_sidecar.aggregation.state import RunState, Store
from gangplank_sidecar.parsers import protocol
from gangplank_sidecar.pipeline import Pipeline
from gangplank_sidecar.runs import cli as runs_cli
from gangplank_sidecar.runs import db
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.sinks import history
from gangplank_sidecar.sinks.families import run_families
from gangplank_sidecar.sinks.history import HistorySink
from gangplank_sidecar.sinks.listen import ListenSink
from gangplank_sidecar.sinks.remote_write import RecordSamples, RemoteWriteMetrics, RemoteWriteSink, remote_write_sinks
from gangplank_sidecar.sinks.summary import summarize
from proxy import FaultProxy, Request

NOW = round(time.time() - 300)


def rec(event: str, run: str, at: float, phase: str = "train", **fields: object) -> str:
    return json.dumps({"gangplank": 1, "event": event, "run": run, "phase": phase, "time": at, **fields}) + "\n"


def epoch(run: str, n: int, loss: float, at: float | None = None, **extra: object) -> str:
    fields = {"epoch": n, "elapsed_seconds": 1.5 * n, "metrics": {"loss": loss}, "params": {"total": 100}} | extra
    return rec("epoch", run, NOW + n if at is None else at, **fields)


def sidecar(
    text: str, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SIDECAR, "--quiet", "--system-interval", "0", *args],
        input=text,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    server = start_prometheus(tmp_path, "global:\n  scrape_interval: 1m\n", "--web.enable-remote-write-receiver")
    yield server
    server.stop()


def series_values(prometheus: Prometheus, promql: str) -> list[tuple[int, float]]:
    (found,) = prometheus.api("query", query=promql)["result"]
    return [(round(float(t) * 1000), float(v)) for t, v in found["values"]]


# 1. "time": "NaN" / "Infinity" / 1e300 with --remote-write


def test_1_bad_times_with_remote_write_cost_one_line_each(prometheus: Prometheus, tmp_path: Path) -> None:
    text = (
        epoch("rw-times", 1, 0.5)
        + epoch("rw-times", 2, 0.4, at="NaN")  # type: ignore[arg-type]  # a wrong type on purpose
        + epoch("rw-times", 2, 0.4, at="Infinity")  # type: ignore[arg-type]  # a wrong type on purpose
        + epoch("rw-times", 2, 0.4, at=1e300)
        + epoch("rw-times", 2, 0.4, at=-5.0)
        + epoch("rw-times", 2, 0.25)
    )
    done = sidecar(
        text, "--remote-write", prometheus.url + "/api/v1/write", "--job", "rw-times", "--db", str(tmp_path / "h.db")
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert [line.split(": ", 2)[1:] for line in done.stderr.splitlines() if "bad gangplank record" in line] == [
        ["stdin:2", "bad gangplank record: epoch.time: Input should be a finite number"],
        ["stdin:3", "bad gangplank record: epoch.time: Input should be a finite number"],
        ["stdin:4", "bad gangplank record: epoch.time: Input should be less than 253402300800"],
        ["stdin:5", "bad gangplank record: epoch.time: Input should be greater than or equal to 0"],
    ]
    assert series_values(prometheus, 'gangplank_train_loss{job="rw-times"}[1h]') == [
        ((NOW + 1) * 1000, 0.5),
        ((NOW + 2) * 1000, 0.25),
    ]


def test_1_a_record_the_recorder_cannot_turn_into_samples_is_counted_not_raised() -> None:
    """Past the boundary, too: the store listener never raises into the reading thread."""
    reports: list[str] = []
    store = Store()
    registry = CollectorRegistry()
    recorder, (sink,) = remote_write_sinks(["http://127.0.0.1:9/w"], {}, registry, reports.append)
    store.listeners.append(recorder)
    series = store.begin("j", "train", "r", when=NOW)
    for when in (math.nan, 1e300):

        def change(s: RunState, when: float = when) -> None:
            s.time, s.epoch = when, 1
            s.observe({"loss": 0.5}, 1)

        store.update(series, "epoch", change)
    assert registry.get_sample_value("gangplank_sidecar_remote_write_dropped_samples_total", {"reason": "error"}) == 1.0
    assert len(reports) == 1 and "could not be turned into samples" in reports[0]
    assert sink._buffered > 0  # 1e300 passed the listener (an int in Python) and is the worker's to refuse


def test_1_a_batch_the_worker_cannot_encode_is_counted_and_the_worker_goes_on() -> None:
    reports: list[str] = []
    metrics = RemoteWriteMetrics(CollectorRegistry())
    sink = RemoteWriteSink(f"http://127.0.0.1:{free_port()}/w", metrics, reports.append, batch_age=0.0)
    sink.start()
    key = ((("__name__", "x"),),)
    sink.put(RecordSamples(10**303, step=False, keys=key, values=(1.0,)))
    deadline = time.monotonic() + 30
    while metrics.dropped.labels("error")._value.get() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink._thread.is_alive()
    sink.stop(time.monotonic())
    assert sink.join() is False
    assert metrics.dropped.labels("error")._value.get() == 1.0 and sink.lost == 1
    assert len(reports) == 1 and "1 samples dropped" in reports[0]


# 2. absurd times in the history


def test_2_absurd_start_times_never_get_in_and_never_break_list_or_show(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "runs.db"
    text = rec("start", "bad-1", 1e300, params={"total": 1}) + rec("start", "bad-2", -1e18, params={"total": 1})
    text += (
        rec("start", "good", NOW, params={"total": 1})
        + epoch("good", 1, 0.5)
        + rec("end", "good", NOW + 2, status="ok", elapsed_seconds=2.0)
    )
    done = sidecar(text, "--db", str(path))
    assert done.returncode == 0, done.stderr
    assert (
        "stdin:1: bad gangplank record: start.time" in done.stderr
        and "stdin:2: bad gangplank record: start.time" in done.stderr
    )
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT run FROM runs").fetchall() == [("good",)]
    conn.close()
    assert runs_cli.main(["list", "--db", str(path), "--json"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["good"]


def test_2_rows_an_old_sidecar_let_in_read_back_as_unknown(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "old.db"
    conn = db.connect(path)
    conn.execute("INSERT INTO projects (id, name) VALUES (1, 'old')")
    rows = [
        ("huge", 1e300, 1e300),
        ("negative", -1e18, None),
        ("text", "yesterday", "x"),
        ("fine", float(NOW), float(NOW + 5)),
    ]
    for i, (run, started, ended) in enumerate(rows, 1):
        conn.execute(
            "INSERT INTO runs (id, run, phase, project_id, labels, params, epochs, elapsed, started, ended, updated, "
            "status, host, pid)"
            " VALUES (?, ?, 'train', 1, ?, ?, ?, ?, ?, ?, ?, 'ok', 'h', 1)",
            (
                i,
                run,
                "{not json" if run == "text" else "{}",
                10**18 if run == "huge" else 5,
                2,
                1e300 if run == "huge" else 1.0,
                started,
                ended,
                NOW,
            ),
        )
        conn.execute("INSERT INTO metrics VALUES (?, 1, 'loss', ?)", (i, "bad" if run == "text" else 0.5))
    conn.close()
    for command in (
        ["list"],
        ["show", "huge"],
        ["show", "negative"],
        ["show", "text"],
        ["compare", "huge", "fine"],
        ["search", "loss<1"],
    ):
        assert runs_cli.main([*command, "--db", str(path)]) == 0, command
    out = capsys.readouterr().out
    assert "-31686" not in out and "OverflowError" not in out
    assert runs_cli.main(["list", "--db", str(path), "--json"]) == 0
    listed = {r["run"]: r for r in json.loads(capsys.readouterr().out)}
    assert {run: (r["started"], r["ended"], r["params"], r["elapsed"]) for run, r in listed.items()} == {
        "huge": (None, None, None, None),
        "negative": (None, None, 5, 1.0),
        "text": (None, None, 5, 1.0),
        "fine": (float(NOW), float(NOW + 5), 5, 1.0),
    }
    assert listed["text"]["labels"] == {} and listed["text"]["last"] == {"loss": "NaN"}


# 3. huge epochs, huge params, NaN times: the history thread lives and loses nothing else


def test_3_huge_numbers_cost_their_line_and_the_history_keeps_every_other_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    text = (
        rec("start", "other", NOW, params={"total": 7})
        + epoch("other", 1, 0.9)
        + epoch("bad", 1, 0.8, params={"total": 10**30})
        + epoch("bad", 9223372036854775808, 0.8)
        + epoch("bad", 2, 0.8, at="NaN")  # type: ignore[arg-type]  # a wrong type on purpose
        + rec("step", "bad", NOW, step=2**64, metrics={"loss": 1})
        + epoch("other", 2, 0.7)
        + rec("end", "other", NOW + 3, status="ok", elapsed_seconds=3.0)
    )
    done = sidecar(text, "--db", str(path))
    assert done.returncode == 0, done.stderr
    assert "Exception in thread" not in done.stderr and "Traceback" not in done.stderr
    assert [line.split(": ")[1] for line in done.stderr.splitlines() if "bad gangplank record" in line] == [
        "stdin:3",
        "stdin:4",
        "stdin:5",
        "stdin:6",
    ]
    conn = db.connect(path)
    (run,) = db.load_runs(conn)
    conn.close()
    assert (run.run, run.status, run.epochs, run.params, run.rows) == (
        "other",
        "ok",
        2,
        100,
        {1: {"loss": 0.9}, 2: {"loss": 0.7}},
    )


def test_3_floydhub_epoch_past_int64_is_a_parse_error_not_a_dead_history(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    text = (
        '{"metric": "loss", "value": 0.8, "epoch": 9223372036854775808}\n{"metric": "loss", "value": 0.5, "epoch": 1}\n'
    )
    done = sidecar(text, "--db", str(path))
    assert done.returncode == 0 and "Exception in thread" not in done.stderr, done.stderr
    assert "stdin:1: bad FloydHub line: epoch must be at most 2**53" in done.stderr
    conn = db.connect(path)
    (run,) = db.load_runs(conn)
    conn.close()
    assert run.rows == {1: {"loss": 0.5}}


def _series(run: str, epoch: int, params: int | None, when: float = NOW) -> RunState:
    series = RunState(job="j", phase="train", run=run, started=when, epoch=epoch, params=params, time=when)
    series.observe({"loss": 0.5}, epoch)
    return series


def test_3_a_record_the_database_refuses_costs_only_itself(tmp_path: Path) -> None:
    """Behind the boundary: a batch with one unwritable record (an epoch past int64, a NaN time)."""
    reports: list[str] = []
    registry = CollectorRegistry()
    sink = HistorySink(tmp_path / "runs.db", {}, reports.append, registry)
    sink.start()
    sink.listen("epoch", _series("a", 1, 10))
    sink.listen("epoch", _series("bad", 2**63, 10))
    sink.listen("epoch", _series("nan", 1, 10, when=math.nan))
    sink.listen("epoch", _series("b", 1, 10))
    assert sink.close(time.monotonic() + 30) is False  # the two refused records are counted as lost
    conn = db.connect(tmp_path / "runs.db")
    assert sorted(r.run for r in db.load_runs(conn)) == ["a", "b"]
    conn.close()
    assert registry.get_sample_value("gangplank_sidecar_history_dropped_records_total") == 2.0
    assert len(reports) == 1 and "the record is dropped" in reports[0]


def test_the_history_queue_is_bounded_when_the_database_falls_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that cannot keep up (here: not started) holds the reader back at most WAIT_FOR_ROOM,
    then records are shed, counted and reported once, until half of the queue is free again."""
    monkeypatch.setattr(history, "MAX_QUEUED", 10)
    monkeypatch.setattr(history, "WAIT_FOR_ROOM", 0.05)
    reports: list[str] = []
    registry = CollectorRegistry()
    sink = HistorySink(tmp_path / "runs.db", {}, reports.append, registry)
    for epoch in range(1, 26):
        sink.listen("epoch", _series("fast", epoch, 10))
    assert (sink._queue.qsize(), sink.shed) == (10, 15)
    assert registry.get_sample_value("gangplank_sidecar_history_dropped_records_total") == 15.0
    assert reports == [
        f"run history {tmp_path / 'runs.db'}: the database cannot keep up; records are dropped while "
        "5 or more wait (counted in gangplank_sidecar_history_dropped_records_total)"
    ]
    sink.start()
    assert sink.close(time.monotonic() + 30) is False  # shed records are lost records: --strict fails
    conn = db.connect(tmp_path / "runs.db")
    (run,) = db.load_runs(conn)
    conn.close()
    assert run.run == "fast"


# 5. the remote-write buffer with the receiver down


def _sink(**bounds: int) -> tuple[RemoteWriteSink, RemoteWriteMetrics]:
    metrics = RemoteWriteMetrics(CollectorRegistry())
    return RemoteWriteSink("http://127.0.0.1:9/api/v1/write", metrics, lambda message: None, **bounds), metrics


def test_5_dropped_step_entries_do_not_stay_queued_behind_a_live_epoch_entry() -> None:
    sink, metrics = _sink(max_buffered=100)
    key = ((("__name__", "x"),),)
    sink.put(
        RecordSamples(0, step=False, keys=key, values=(1.0,))
    )  # the worker would be stuck retrying behind this one
    for i in range(1, 100_001):
        sink.put(RecordSamples(i, step=True, keys=key, values=(float(i),)))
    assert sink._buffered == 100
    assert len(sink._buffer) <= 3 * 100  # was 100,001 entries: every dropped step stayed linked
    assert sink._buffer[0].record.time_ms == 0 and sink._buffer[0].live
    assert metrics.dropped.labels("overflow")._value.get() == 100_000 - 99


def test_5_the_buffer_is_bounded_by_bytes_epoch_records_included() -> None:
    sink, metrics = _sink(max_buffered=10**9, max_bytes=100_000)
    keys = tuple(((("__name__", f"m{j}"),),) for j in range(10))
    for i in range(10_000):
        sink.put(RecordSamples(i, step=False, keys=keys, values=(float(i),) * 10))
    live = [e.record.time_ms for e in sink._buffer if e.live]
    assert sink._bytes <= 100_000 and live == list(range(10_000 - len(live), 10_000))  # the newest are kept
    assert metrics.pending_bytes._value.get() == sink._bytes
    assert metrics.dropped.labels("overflow")._value.get() == (10_000 - len(live)) * 10


# 11. no secret from a server's reply on stderr


class EchoProxy(FaultProxy):
    """A proxy that answers 400 with the request's headers in its reason phrase and its body."""

    def _answer(self, client, request: Request) -> None:
        echoed = "; ".join(f"{k}={v}" for k, v in request.headers.items())
        body = ("bad request, you sent:\n" if "/api/v1/write" not in request.path else "") + echoed + "\n"
        head = f"HTTP/1.1 400 {echoed}\r\nContent-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n"
        request.outcome = "echoed"
        client.sendall(head.encode() + body.encode())


@pytest.fixture
def echo() -> Iterator[EchoProxy]:
    proxy = EchoProxy(f"127.0.0.1:{free_port()}")
    yield proxy
    proxy.stop()


def test_11_secrets_echoed_by_a_server_are_redacted(echo: EchoProxy, tmp_path: Path) -> None:
    token, password, header = "tok-3f9c1e", "pw-77ab02", "hdr-secret-51"
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "password").write_text(password + "\n")
    text = epoch("sec", 1, 0.5)
    common = ["--no-history", "--push-retries", "0", "--flush-timeout", "1", "--header", f"X-Api-Key: {header}"]
    pushed = sidecar(text, "--pushgateway", echo.url, "--bearer-token-file", str(tmp_path / "token"), *common)
    written = sidecar(
        text,
        "--remote-write",
        echo.url + "/api/v1/write",
        "--basic-auth-user",
        "ann",
        "--basic-auth-password-file",
        str(tmp_path / "password"),
        *common,
    )
    pair = base64.b64encode(f"ann:{password}".encode()).decode()
    assert {r.headers.get("Authorization") for r in echo.requests} == {f"Bearer {token}", f"Basic {pair}"}
    for done in (pushed, written):
        assert "<redacted>" in done.stderr, done.stderr
        for secret in (token, password, header, pair):
            assert secret not in done.stderr
    assert "HTTP 400" in pushed.stderr and "rejected" in written.stderr


# 14. series per run


def test_14_keys_beyond_max_series_are_counted_and_reported_once(pushgateway: Pushgateway) -> None:
    keys = [f"k{i:04d}" for i in range(300)]
    text = "".join(epoch("wide", n, 0.0, metrics={k: n + i / 1000 for i, k in enumerate(keys)}) for n in (1, 2, 3))
    done = sidecar(
        text,
        "--pushgateway",
        pushgateway.url,
        "--job",
        "wide",
        "--no-history",
        env={**os.environ, "GANGPLANK_MAX_SERIES": "100"},
    )
    assert done.returncode == 0, done.stderr
    reported = [line for line in done.stderr.splitlines() if "--max-series" in line]
    assert reported == [
        "gangplank-sidecar: run wide (job wide, train) has more than 100 metric keys: further keys are dropped "
        "(--max-series; counted in gangplank_sidecar_dropped_metric_values_total, not reported again)"
    ]
    samples = pushgateway.gangplank()
    exported = sorted(n for (n, labels) in samples if n.startswith("gangplank_train_k"))
    assert exported == [f"gangplank_train_{k}" for k in keys[:100]]
    assert value(samples, "gangplank_train_k0099", job="wide") == 3 + 99 / 1000
    assert value(samples, "gangplank_sidecar_dropped_metric_values_total", job="wide", phase="sidecar") == 600


def test_14_the_summary_stays_short_for_a_run_with_thousands_of_keys() -> None:
    keys = {f"key{i:05d}": float(i) for i in range(5000)}
    text = "".join(epoch(f"run{r}", 1, 0.0, metrics=keys) for r in range(3))
    done = sidecar(text, "--no-history", timeout=180)
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert len([line for line in lines if line.startswith("  key")]) == 3 * 50
    assert [line for line in lines if "more metrics" in line] == [
        f"  ... 1950 more metrics not shown (gangplank-runs show run{r})" for r in range(3)
    ]
    assert len(lines) < 200


# 15. the smaller ones


def test_15_openmetrics_is_never_served_with_a_sum_beside_negative_buckets() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*SIDECAR, "--listen", f"127.0.0.1:{port}", "--quiet", "--no-history", "--system-interval", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    weights = {"le": [-0.3, 0.0, 0.3], "counts": [1, 3, 4, 5], "count": 5, "sum": -0.75, "min": -0.5, "max": 0.5}
    try:
        assert proc.stdin is not None
        proc.stdin.write(epoch("om", 1, 0.5, weights=weights))
        proc.stdin.flush()
        url = f"http://127.0.0.1:{port}/metrics"
        wait_http(url)
        deadline = time.monotonic() + 30
        while True:
            request = urllib.request.Request(
                url, headers={"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                kind, page = response.headers["Content-Type"], response.read().decode()
            if "model_weights_sum" in page or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        parse = (
            openmetrics_families if kind.startswith("application/openmetrics-text") else text_string_to_metric_families
        )
        samples = {
            s.name: s.value
            for f in parse(page)
            for s in f.samples
            if s.name.startswith("gangplank_train_model_weights")
        }
        assert (
            samples["gangplank_train_model_weights_sum"] == -0.75
            and samples["gangplank_train_model_weights_count"] == 5
        )
    finally:
        proc.communicate("", timeout=30)


def test_15_gangplank_true_is_not_version_1() -> None:
    line = (
        b'{"gangplank": true, "event": "end", "run": "r", "phase": "train", "time": 1, "status": "ok", '
        b'"elapsed_seconds": 1}'
    )
    with pytest.raises(ValueError, match="gangplank: Value error, the protocol version must be the integer 1"):
        protocol.parse(line)


def test_15_floydhub_epochs_counted_from_zero_give_the_number_of_epochs() -> None:
    store = Store()
    pipeline = Pipeline(store, SelfMetrics(), lambda message: None)
    for n in (0, 1, 2):
        for metric, v in (("loss", 1 / (n + 1)), ("acc", n / 3)):
            pipeline.feed("stdin", json.dumps({"metric": metric, "value": v, "epoch": n}).encode())
    (series,) = store.snapshot()
    assert series.epoch == 3 and series.best["loss"] == (1 / 3, 3)
    exported = {s.name: s.value for f in run_families(series) for s in f.samples}
    assert exported["gangplank_train_epochs_count"] == 3.0 and exported["gangplank_train_best_epoch"] == 3.0
    # A run counting from 1 is left as it is, and a new run counting from 0 after it is seen as new.
    for n in (1, 2, 0, 1):
        pipeline.feed("other", json.dumps({"metric": "loss", "value": 0.5, "epoch": n}).encode())
    assert [s.epoch for s in store.all_runs()] == [3, 2, 2]


def test_15_a_train_run_without_epochs_is_not_summarised_as_an_evaluate() -> None:
    store = Store()
    pipeline = Pipeline(store, SelfMetrics(), lambda message: None)
    pipeline.feed("stdin", rec("start", "r", NOW, params={"total": 1}).encode())
    pipeline.feed("stdin", rec("end", "r", NOW + 1, status="interrupted", elapsed_seconds=1.0).encode())
    assert (
        summarize(store.all_runs())
        == "gangplank-sidecar: run r (job gangplank, train): 0 epochs in 1.0 s, interrupted\n"
    )


def test_listen_errors_are_exported_from_zero() -> None:
    registry = CollectorRegistry()
    listen = ListenSink("127.0.0.1:0", Store(), {}, registry, lambda: "j")
    listen.server.server_close()
    assert "gangplank_sidecar_listen_errors_total 0.0" in generate_latest(registry).decode()


def test_14_colliding_keys_are_reported_ten_times_at_most() -> None:
    reports: list[str] = []
    pipeline = Pipeline(Store(), SelfMetrics(), reports.append)
    keys = {**{f"k{i}-x": 1.0 for i in range(30)}, **{f"k{i}_x": 2.0 for i in range(30)}}
    pipeline.feed("stdin", epoch("c", 1, 0.0, metrics=keys).encode())
    assert len(reports) == 10 and reports[-1].endswith("(further collisions are not reported)")


# No worker dies: the push worker and /metrics meet a series they cannot render


def _broken_store() -> tuple[Store, RunState]:
    store = Store()
    broken = store.begin("broken", "train", "r2", when=NOW)

    def corrupt(s: RunState) -> None:
        s.observe({"loss": 0.5}, 1)
        s.weights = "not a histogram"  # type: ignore[assignment]  # a wrong type on purpose

    store.update(broken, "epoch", corrupt)
    good = store.begin("fine", "train", "r1", when=NOW)
    store.update(good, "epoch", lambda s: s.observe({"loss": 0.25}, 1))
    return store, broken


def test_the_push_worker_outlives_a_series_it_cannot_render(pushgateway: Pushgateway) -> None:
    from gangplank_sidecar.delivery import Retry, TransportConfig
    from gangplank_sidecar.sinks.pushgateway import PushgatewaySink
    from gangplank_sidecar.sinks.transport import Transport

    store, broken = _broken_store()
    selfmetrics, reports = SelfMetrics(), []
    sink = PushgatewaySink(
        store,
        pushgateway.url,
        {},
        selfmetrics,
        reports.append,
        handler=Transport(TransportConfig()),
        retry=Retry(push_retries=0, retry_backoff=0.05, retry_backoff_max=0.1),
    )
    sink.start()
    deadline = time.monotonic() + 30
    while selfmetrics.pushes.labels("failure")._value.get() < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sink._thread.is_alive() and "cannot render the series: AttributeError" in sink.last_error
    assert len([r for r in reports if "cannot push" in r]) == 1
    assert value(pushgateway.gangplank(), "gangplank_train_loss", job="fine") == 0.25  # the next group still went out
    store.update(broken, "epoch", lambda s: setattr(s, "weights", None))
    assert sink.close(time.monotonic() + 10) is True
    samples = pushgateway.gangplank()
    assert (
        value(samples, "gangplank_train_loss", job="broken") == 0.5
        and value(samples, "gangplank_train_loss", job="fine") == 0.25
    )


def test_metrics_page_leaves_out_only_the_series_it_cannot_render() -> None:
    store, _ = _broken_store()
    registry, reports = CollectorRegistry(), []
    listen = ListenSink("127.0.0.1:0", store, {}, registry, lambda: "j", reports.append)
    listen.start()
    try:
        url = f"http://127.0.0.1:{listen.port}/metrics"
        for _ in range(2):
            with urllib.request.urlopen(url, timeout=5) as response:
                page = response.read().decode()
        samples = {
            (s.name, s.labels.get("job")): s.value for f in text_string_to_metric_families(page) for s in f.samples
        }
        assert samples[("gangplank_train_loss", "fine")] == 0.25 and ("gangplank_train_loss", "broken") not in samples
        assert samples[("gangplank_sidecar_listen_errors_total", "j")] == 2.0
        assert len(reports) == 1 and "run r2 (job broken, train) left out of /metrics" in reports[0]
    finally:
        listen.close()


@pytest.mark.parametrize("strict", [False, True])
def test_a_record_the_database_refuses_is_reported_once_and_fails_only_strict_mode(
    tmp_path: Path, strict: bool
) -> None:
    """A real refusal (a trigger of the database's owner): the other runs are recorded; exit 1 only with --strict."""
    path = tmp_path / "runs.db"
    conn = db.connect(path)
    conn.executescript(
        "CREATE TRIGGER refuse BEFORE INSERT ON runs WHEN NEW.run LIKE 'refused%' BEGIN SELECT RAISE(ABORT, 'refused "
        "by policy'); END;"
    )
    conn.close()
    text = "".join(
        rec("start", run, NOW, params={"total": 1}) + epoch(run, 1, 0.5) for run in ("a", "refused-1", "b", "refused-2")
    )
    done = sidecar(text, "--db", str(path), *(["--strict"] if strict else []))
    assert done.returncode == (1 if strict else 0), done.stderr
    assert [line for line in done.stderr.splitlines() if "run history" in line] == [
        f"gangplank-sidecar: run history {path}: IntegrityError: refused by policy (the record is dropped; further "
        "errors are only counted)"
    ]
    conn = db.connect(path)
    assert [(r.run, r.rows) for r in db.load_runs(conn)] == [("a", {1: {"loss": 0.5}}), ("b", {1: {"loss": 0.5}})]
    conn.close()
