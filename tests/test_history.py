"""The run history: every run recorded in SQLite as it goes, by several sidecars at once, and
readable with the run marked `interrupted` after its sidecar was killed."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import SIDECAR
from gangplank_sidecar.aggregation.state import RunState, Store
from gangplank_sidecar.runs import db
from gangplank_sidecar.sinks.history import HistorySink

T0 = 1764065730.0


def record(event: str, run: str, phase: str = "train", at: float = T0, **fields: object) -> str:
    return json.dumps({"gangplank": 1, "event": event, "run": run, "phase": phase, "time": at, **fields}) + "\n"


def epoch(run: str, n: int, metrics: dict, **fields: object) -> str:
    return record(
        "epoch", run, at=T0 + n, epoch=n, elapsed_seconds=float(n), metrics=metrics, params={"total": 650}, **fields
    )


def sidecar(db_path: Path, *args: str, **popen: object) -> subprocess.Popen:
    popen.setdefault("stdin", subprocess.PIPE)
    return subprocess.Popen(
        [*SIDECAR, "--quiet", "--system-interval", "0", "--db", str(db_path), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **popen,
    )


def feed(db_path: Path, text: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SIDECAR, "--quiet", "--system-interval", "0", "--db", str(db_path), *args],
        input=text.encode(),
        capture_output=True,
        timeout=60,
    )


def rows(db_path: Path, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_a_run_is_recorded_with_its_epochs_checks_and_end(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    k401 = {"code": "K401", "name": "sigmoid_in_hidden_layer", "severity": "warning", "message": "dense_1 uses sigmoid"}
    k502 = {
        "code": "K502",
        "name": "vanishing_or_exploding_updates",
        "severity": "warning",
        "message": "updates vanish in dense",
    }
    text = (
        record("start", "r1", job="mnist", params={"total": 650}, epochs=2, framework="keras-3/jax", checks=[k401])
        + epoch("r1", 1, {"loss": 0.5, "val_loss": "NaN"})
        + epoch("r1", 2, {"loss": 0.25, "val_loss": 0.5, "acc": "Infinity"}, checks=[k502])
        + record("end", "r1", at=T0 + 3, status="ok", elapsed_seconds=2.5)
        + record("start", "r1", phase="test", at=T0 + 4, params={"total": 650})
        + record(
            "evaluate", "r1", phase="test", at=T0 + 5, elapsed_seconds=0.5, metrics={"loss": 0.3}, params={"total": 650}
        )
        + record("end", "r1", phase="test", at=T0 + 6, status="ok", elapsed_seconds=0.5)
    )
    done = feed(path, text, "--label", "team=vision")
    assert done.returncode == 0, done.stderr
    assert rows(
        path,
        "SELECT p.name, r.run, r.phase, r.labels, r.framework, r.params, r.planned_epochs, r.epochs, r.elapsed, "
        "r.started, r.ended, r.status, r.source FROM runs r JOIN projects p ON p.id = r.project_id ORDER BY r.id",
    ) == [
        ("mnist", "r1", "train", '{"team": "vision"}', "keras-3/jax", 650, 2, 2, 2.5, T0, T0 + 3, "ok", "stdin"),
        ("mnist", "r1", "test", '{"team": "vision"}', None, 650, None, None, 0.5, T0 + 4, T0 + 6, "ok", "stdin"),
    ]
    assert rows(path, "SELECT run_id, epoch, key, value FROM metrics ORDER BY run_id, epoch, key") == [
        (1, 1, "loss", 0.5),
        (1, 1, "val_loss", None),
        (1, 2, "acc", float("inf")),
        (1, 2, "loss", 0.25),
        (1, 2, "val_loss", 0.5),
        (2, 0, "loss", 0.3),
    ]
    assert rows(
        path, "SELECT run_id, name, code, severity, message, first_epoch, last_epoch, fired FROM checks ORDER BY name"
    ) == [
        (1, "non_finite", "", "error", "non-finite acc=Infinity at epoch 2", 1, 2, 1),
        (1, "sigmoid_in_hidden_layer", "K401", "warning", "dense_1 uses sigmoid", None, 2, 1),
        (1, "vanishing_or_exploding_updates", "K502", "warning", "updates vanish in dense", 2, 2, 1),
    ]
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]


def test_a_stream_that_ends_without_an_end_record(tmp_path: Path) -> None:
    """Protocol runs always end with `end`: without one the run was interrupted; text logs have none."""
    path = tmp_path / "runs.db"
    assert feed(path, record("start", "cut", params={"total": 1}) + epoch("cut", 1, {"loss": 1.0})).returncode == 0
    assert feed(path, '{"metric": "loss", "value": 0.5, "epoch": 1}\n', "--job", "floyd").returncode == 0
    assert rows(
        path,
        "SELECT p.name, r.status, r.ended = r.updated FROM runs r JOIN projects p ON p.id = r.project_id ORDER BY r.id",
    ) == [
        ("gangplank", "interrupted", 1),
        ("floyd", "ended", 1),
    ]


def test_no_history_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    assert feed(path, record("start", "x", params={"total": 1}), "--no-history").returncode == 0
    assert not path.exists()


def test_an_unusable_database_is_reported_and_the_sidecar_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = feed(blocker / "runs.db", record("start", "x", params={"total": 1}))
    assert done.returncode == 0
    assert done.stderr.decode().startswith(f"gangplank-sidecar: run history disabled: {blocker / 'runs.db'}: ")


WRITER = """
import json, sys, time
run, n = sys.argv[1], int(sys.argv[2])
def out(event, **f):
    record = {"gangplank": 1, "event": event, "run": run, "phase": "train", "time": 1.0, **f}
    sys.stdout.write(json.dumps(record) + "\\n")
    sys.stdout.flush()
out("start", params={"total": 1}, job=run)
for e in range(1, n + 1):
    out("epoch", epoch=e, elapsed_seconds=e, params={"total": 1}, metrics={"loss": 1.0 / e, "val_loss": 2.0 / e})
    time.sleep(0.002)
out("end", status="ok", elapsed_seconds=n)
"""


def test_two_sidecars_write_at_once(tmp_path: Path) -> None:
    path, n = tmp_path / "runs.db", 300
    pipelines = []
    for name in ("left", "right"):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, name, str(n)], stdout=subprocess.PIPE)
        pipelines.append((writer, sidecar(path, stdin=writer.stdout)))
        writer.stdout.close()
    for writer, reader in pipelines:
        assert writer.wait(60) == 0
        _, err = reader.communicate(timeout=60)
        assert reader.returncode == 0
        assert b"run history" not in err
    assert rows(path, "SELECT run, status, epochs FROM runs ORDER BY run") == [("left", "ok", n), ("right", "ok", n)]
    assert rows(
        path,
        "SELECT r.run, count(*), sum(m.value) FROM metrics m JOIN runs r ON r.id = m.run_id WHERE key = 'val_loss' "
        "GROUP BY r.run",
    ) == [
        ("left", n, sum(2.0 / e for e in range(1, n + 1))),
        ("right", n, sum(2.0 / e for e in range(1, n + 1))),
    ]


def epochs_written(path: Path) -> int:
    try:
        return rows(path, "SELECT count(*) FROM metrics")[0][0] if path.exists() else 0
    except sqlite3.OperationalError:  # the sidecar is still creating the tables
        return 0


def test_a_killed_sidecar_leaves_a_readable_database_and_an_interrupted_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    proc = sidecar(path)
    proc.stdin.write(
        (
            record("start", "doomed", params={"total": 1})
            + epoch("doomed", 1, {"loss": 1.0})
            + epoch("doomed", 2, {"loss": 0.5})
        ).encode()
    )
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while epochs_written(path) != 2:
        assert time.monotonic() < deadline, "the epochs never reached the database"
        time.sleep(0.05)
    assert rows(path, "SELECT status FROM runs") == [("running",)]
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdin.close()
    proc.stderr.close()
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    listed = subprocess.run(
        [sys.executable, "-m", "gangplank_sidecar.runs", "list", "--json", "--db", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert (run["run"], run["status"], run["epochs"], run["last"]) == ("doomed", "interrupted", 2, {"loss": 0.5})


def test_a_quiet_run_is_stale_after_the_set_time(tmp_path: Path) -> None:
    """A run whose writer may still live (another host, say) is interrupted once it went quiet long enough."""
    conn = db.connect(tmp_path / "runs.db")
    conn.execute("INSERT INTO projects (name) VALUES ('j')")
    conn.execute(
        "INSERT INTO runs (run, phase, project_id, started, updated, status, host, pid) VALUES ('a', 'train', 1, 0, "
        "100, 'running', 'elsewhere', 1)"
    )
    assert db.mark_stale(conn, stale_after=50, now=149) == 0
    assert db.mark_stale(conn, stale_after=50, now=151) == 1
    assert conn.execute("SELECT status, ended FROM runs").fetchall() == [("interrupted", 100.0)]
    conn.close()


def test_a_floydhub_run_has_one_row_per_epoch_and_metric(tmp_path: Path) -> None:
    """FloydHub brings an epoch one metric a line; the history keeps each epoch's last value of each."""
    path = tmp_path / "runs.db"
    values = {
        1: {"loss": 0.5, "accuracy": 0.75, "val_loss": 0.625},
        2: {"loss": 0.25, "accuracy": 0.875, "val_loss": 0.5},
    }
    text = "".join(
        json.dumps({"metric": k, "value": v, "epoch": e}) + "\n"
        for e, metrics in values.items()
        for k, v in metrics.items()
    )
    done = feed(path, text, "--job", "floyd")
    assert done.returncode == 0, done.stderr
    assert rows(path, "SELECT r.phase, r.epochs, r.status FROM runs r") == [("train", 2, "ended")]
    assert rows(path, "SELECT epoch, key, value FROM metrics ORDER BY epoch, key") == [
        (e, k, v) for e, metrics in values.items() for k, v in sorted(metrics.items())
    ]


HOLDER = """
import json, sys, time
block = bytearray(200 * 2**20)
block[:: 4096] = b"x" * len(block[:: 4096])  # touch every page: 200 MiB resident
start = time.time()
def rec(event, **f):
    record = {"gangplank": 1, "event": event, "run": "sys", "phase": "train", "time": time.time(), **f}
    print(json.dumps(record), flush=True)
rec("start", job="sysjob", params={"total": 1})
time.sleep(2.5)
rec("epoch", epoch=1, elapsed_seconds=time.time() - start, metrics={"loss": 0.5}, params={"total": 1})
rec("end", status="ok", elapsed_seconds=time.time() - start)
"""


def test_system_samples_of_a_wrapped_job_go_into_its_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    done = subprocess.run(
        [*SIDECAR, "--quiet", "--system-interval", "0.5", "--db", str(path), "--", sys.executable, "-c", HOLDER],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    ((samples,),) = rows(
        path, "SELECT COUNT(*) FROM system JOIN projects p ON p.id = project_id WHERE p.name = 'sysjob'"
    )
    assert 3 <= samples <= 8
    shown = subprocess.run(
        [sys.executable, "-m", "gangplank_sidecar.runs", "show", "--json", "--db", str(path)],
        capture_output=True,
        timeout=60,
    )
    (run,) = json.loads(shown.stdout)
    system = run["system"]
    assert 3 <= system["samples"] <= samples
    assert 200 * 2**20 <= system["peak_memory_bytes"] <= 300 * 2**20  # the 200 MiB block plus the interpreter
    assert 0 <= system["mean_cpu_ratio"] < 0.5 and system["mean_gpu_ratio"] is None
    text = subprocess.run(
        [sys.executable, "-m", "gangplank_sidecar.runs", "show", "--db", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        f"  system   {system['samples']} samples, peak memory {system['peak_memory_bytes'] / 2**20:.1f} MiB, mean CPU"
        in text.stdout
    )


def test_delivered_through_is_the_last_version_committed(tmp_path: Path) -> None:
    """Versions: 1 the start and 2 an epoch (written), 3 a step (never written). Until the writer runs,
    nothing is committed; then every version up to the step is through."""
    store, sink = Store(), HistorySink(tmp_path / "runs.db", {}, lambda message: None)
    store.listeners.append(sink.listen)
    series = store.begin("j", "train", "r", when=T0)
    store.update(series, "epoch", lambda s: setattr(s, "epoch", 1))
    store.update(series, "step", lambda s: setattr(s, "step", 5))
    assert sink.delivered_through() == 0
    sink.start()
    deadline = time.monotonic() + 30
    while sink.delivered_through() != 3:
        assert time.monotonic() < deadline, sink.delivered_through()
        time.sleep(0.01)
    assert sink.close(time.monotonic() + 5)
    assert sink.delivered_through() == 3


def test_records_of_one_epoch_queued_together_are_one_record(tmp_path: Path) -> None:
    """A CSV file's rows: 1,000 epoch records of epoch 1, then of epoch 2, before the writer runs. Each epoch
    is queued once (its last record, which holds every value), every value arrives, and the version of the
    last record is the one committed."""
    store, sink = Store(), HistorySink(tmp_path / "runs.db", {}, lambda message: None)
    store.listeners.append(sink.listen)
    series = store.begin("j", "train", "r", when=T0)
    for n in range(2000):

        def change(s: RunState, n: int = n) -> None:
            s.epoch = n // 1000 + 1
            s.observe({"loss": float(n)} if n % 1000 else {"loss": float(n), "val_loss": -1.0}, s.epoch)

        store.update(series, "epoch", change)
    assert sink._queue.qsize() == 3  # the start, one record of each epoch
    assert sink.delivered_through() == 0  # nothing committed yet
    sink.start()
    assert sink.close(time.monotonic() + 30)
    assert sink.delivered_through() == series.version == 2001
    assert rows(tmp_path / "runs.db", "SELECT epoch, key, value FROM metrics ORDER BY epoch, key") == [
        (1, "loss", 999.0),
        (1, "val_loss", -1.0),
        (2, "loss", 1999.0),
        (2, "val_loss", -1.0),
    ]


def test_a_record_the_writer_has_taken_is_not_replaced(tmp_path: Path) -> None:
    """Once the writer has popped a record's slot, the next record of the same epoch is queued after it."""
    store, sink = Store(), HistorySink(tmp_path / "runs.db", {}, lambda message: None)
    store.listeners.append(sink.listen)
    series = store.begin("j", "train", "r", when=T0)
    store.update(series, "epoch", lambda s: (setattr(s, "epoch", 1), s.observe({"loss": 1.0}, 1)) and None)
    taken = sink._slot
    row = taken.pop()  # as the writer takes it
    store.update(series, "epoch", lambda s: s.observe({"loss": 2.0}, 1))
    assert row.metrics == {"loss": 1.0} and row.version == 2
    assert sink._slot is not taken and sink._slot[0].metrics == {"loss": 2.0} and sink._slot[0].version == 3
    assert sink._queue.qsize() == 3  # the start, the taken slot, the new one
    sink._conn.close()


def _check_rows(path: Path, fired_by_epoch: list[bool], started: bool) -> list[tuple]:
    """One sink writes run ``r`` whose check fires (True) or passes at each epoch; started late: one batch."""
    from gangplank_sidecar.aggregation.state import RunState
    from gangplank_sidecar.parsers.protocol import Check
    from gangplank_sidecar.sinks.history import HistorySink

    reports: list[str] = []
    sink = HistorySink(path, {}, reports.append)
    if started:
        sink.start()
    s = RunState(job="j", phase="train", run="r", started=T0, time=T0)
    for n, fired in enumerate(fired_by_epoch, 1):
        s.epoch = n
        s.observe({"loss": 1.0 / n}, n)
        s.set_checks([Check(name="plateau", code="G1", message=f"flat at {n}", fired=fired)])
        sink.listen("epoch", s)
    if not started:
        sink.start()
    assert sink.close(time.monotonic() + 30) and reports == []
    return rows(path, "SELECT name, code, message, first_epoch, last_epoch, fired FROM checks")


def test_a_check_is_stored_as_it_fires_passes_and_fires_again(tmp_path: Path) -> None:
    """The writer skips a passing check it has already stored as passing; every change is still written,
    in one batch or many, and a new sidecar clears a check left fired by an earlier one."""
    for started in (True, False):
        path = tmp_path / f"{started}.db"
        assert _check_rows(path, [False, False], started) == []
        assert _check_rows(path, [False, True, False, False], started) == [("plateau", "G1", "flat at 2", 2, 2, 0)]
        assert _check_rows(path, [True, False, True], started) == [("plateau", "G1", "flat at 3", 2, 3, 1)]
        assert _check_rows(path, [False, False, True, True], started) == [("plateau", "G1", "flat at 4", 2, 4, 1)]
        assert _check_rows(path, [False, True], started) == [("plateau", "G1", "flat at 2", 2, 2, 1)]
        assert _check_rows(path, [False], started) == [("plateau", "G1", "flat at 2", 2, 2, 0)]


def test_a_batch_writes_each_run_once_and_keeps_what_its_earlier_records_knew(tmp_path: Path) -> None:
    """Records of two runs in one batch: each run's row comes from its last record, with the values a row
    keeps (params, elapsed, ...) taken from an earlier record where the last has none; metrics of every epoch.
    Runs of the protocol (with params) left open are closed as interrupted."""
    sink = HistorySink(tmp_path / "runs.db", {}, lambda message: None)
    for run, epoch, params, elapsed in (
        ("a", 1, 10, 5.0),
        ("b", 1, None, None),
        ("a", 2, None, None),
        ("b", 2, 7, 3.0),
    ):
        s = RunState(job="j", phase="train", run=run, started=T0, time=T0 + epoch)
        s.epoch, s.params, s.elapsed = epoch, params, elapsed
        s.observe({"loss": 1.0 / epoch}, epoch)
        sink.listen("epoch", s)
    sink.start()
    assert sink.close(time.monotonic() + 30)
    path = tmp_path / "runs.db"
    assert rows(path, "SELECT run, params, epochs, elapsed, status FROM runs ORDER BY run") == [
        ("a", 10, 2, 5.0, "interrupted"),
        ("b", 7, 2, 3.0, "interrupted"),
    ]
    assert rows(path, "SELECT r.run, m.epoch, m.value FROM metrics m JOIN runs r ON r.id = m.run_id ORDER BY 1, 2") == [
        ("a", 1, 1.0),
        ("a", 2, 0.5),
        ("b", 1, 1.0),
        ("b", 2, 0.5),
    ]
