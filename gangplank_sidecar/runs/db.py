"""The run history database: schema, where it lives, stale runs, and reading it back.

One SQLite file in WAL mode, shared by every sidecar on the machine: each writes short
transactions and waits (busy_timeout) for the others. A run is the pair (run, phase).
NaN is stored as NULL (SQLite has no NaN); a missing key has no row at all.

Reading trusts no row: a database written by an older sidecar may hold a time of 1e300 or a
negative one, a huge count or a stray type. Such a value reads back as unknown (None, NaN),
so one bad row never breaks a listing of the whole history.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from gangplank_sidecar.directions import lower_is_better
from gangplank_sidecar.environment import xdg_dir
from gangplank_sidecar.parsers.protocol import MAX_COUNT, MAX_TIME

STALE_AFTER = 24 * 3600.0  # a running run with no write for this long (or whose writer is gone) is interrupted
BUSY_TIMEOUT_MS = 30_000
HOST = socket.gethostname()

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    phase TEXT NOT NULL,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    labels TEXT NOT NULL DEFAULT '{}',
    framework TEXT,
    params INTEGER,
    planned_epochs INTEGER,
    epochs INTEGER,
    elapsed REAL,
    started REAL NOT NULL,
    ended REAL,
    updated REAL NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    UNIQUE (run, phase)
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    epoch INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, epoch, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checks (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    code TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    first_epoch INTEGER,
    last_epoch INTEGER,
    fired INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS system (
    project_id INTEGER NOT NULL REFERENCES projects(id),
    time REAL NOT NULL,
    cpu_ratio REAL,
    memory_used REAL,
    memory_ratio REAL,
    disk_used REAL,
    disk_ratio REAL,
    gpu_ratio REAL,
    gpu_memory_used REAL
);
CREATE INDEX IF NOT EXISTS system_time ON system (project_id, time);
"""

EVALUATE_EPOCH = 0  # the metrics row of an evaluate (test phase); training epochs count from 1


def default_path() -> Path:
    """$XDG_DATA_HOME/gangplank/runs.db, else ~/.local/share/gangplank/runs.db."""
    return xdg_dir("XDG_DATA_HOME", ".local/share") / "gangplank" / "runs.db"


def connect(path: Path, create: bool = True) -> sqlite3.Connection:
    """Opens (and creates) the database in WAL mode; autocommit, transactions are explicit."""
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(f"no run history at {path}")
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    with transaction(conn):
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
    return conn


class transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock up front, so two writers never deadlock."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_stale(conn: sqlite3.Connection, stale_after: float = STALE_AFTER, now: float | None = None) -> int:
    """Marks `interrupted` the running runs whose writer (on this host) is gone or that went quiet."""
    now = time.time() if now is None else now
    rows = conn.execute("SELECT id, host, pid, updated FROM runs WHERE status = 'running'").fetchall()
    stale = [
        rid for rid, host, pid, updated in rows if (host == HOST and not _alive(pid)) or now - updated > stale_after
    ]
    if stale:
        with transaction(conn):
            conn.executemany(
                "UPDATE runs SET status = 'interrupted', ended = COALESCE(ended, updated) WHERE id = ? AND status = "
                "'running'",
                [(rid,) for rid in stale],
            )
    return len(stale)


def to_db(value: float) -> float | None:
    """A metric value as stored: NaN as NULL (SQLite has no NaN; infinities it keeps)."""
    return None if math.isnan(value) else value


def from_db(value: object) -> float:
    """A stored metric value: NULL (NaN) and anything that is not a number read as NaN."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _time(value: object) -> float | None:
    """A stored time or duration, or None for one no clock gives (1e300, negative, not a number)."""
    return float(value) if isinstance(value, (int, float)) and 0 <= value < MAX_TIME else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and 0 <= value <= MAX_COUNT else None


def _labels(text: object) -> dict[str, str]:
    if not isinstance(text, (str, bytes, bytearray)):
        return {}
    try:
        labels = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


@dataclass
class RunRow:
    """One run as read back: its columns, its epochs' metrics and its checks."""

    id: int
    run: str
    phase: str
    job: str
    labels: dict[str, str]
    framework: str | None
    params: int | None
    planned_epochs: int | None
    epochs: int | None
    elapsed: float | None
    started: float | None
    ended: float | None
    status: str
    source: str
    rows: dict[int, dict[str, float]] = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    system: dict[str, float | int | None] | None = None

    @property
    def keys(self) -> list[str]:
        return sorted({key for values in self.rows.values() for key in values})

    def best(self, key: str) -> tuple[float, int] | None:
        """The best finite value of ``key`` and its (first) epoch."""
        values = [(v[key], e) for e, v in sorted(self.rows.items()) if key in v and math.isfinite(v[key])]
        if not values:
            return None
        pick = min if lower_is_better(key) else max
        return pick(values, key=lambda ve: ve[0])

    def last(self, key: str) -> float | None:
        values = [v[key] for _, v in sorted(self.rows.items()) if key in v]
        return values[-1] if values else None


_RUN_COLUMNS = (
    "r.id, r.run, r.phase, p.name, r.labels, r.framework, r.params, r.planned_epochs, r.epochs, r.elapsed, "
    "r.started, r.ended, r.status, r.source"
)


def load_runs(conn: sqlite3.Connection, where: str = "", args: tuple = (), details: bool = True) -> list[RunRow]:
    """Runs (oldest first), with their metrics and checks when ``details``."""
    sql = f"SELECT {_RUN_COLUMNS} FROM runs r JOIN projects p ON p.id = r.project_id {where} ORDER BY r.started, r.id"
    runs = []
    for (
        rid,
        run,
        phase,
        job,
        labels,
        framework,
        params,
        planned,
        epochs,
        elapsed,
        started,
        ended,
        status,
        source,
    ) in conn.execute(sql, args):
        runs.append(
            RunRow(
                rid,
                str(run),
                str(phase),
                str(job),
                _labels(labels),
                None if framework is None else str(framework),
                _count(params),
                _count(planned),
                _count(epochs),
                _time(elapsed),
                _time(started),
                _time(ended),
                str(status),
                str(source),
            )
        )
    if details:
        for r in runs:
            for epoch, key, value in conn.execute("SELECT epoch, key, value FROM metrics WHERE run_id = ?", (r.id,)):
                if isinstance(epoch, int):
                    r.rows.setdefault(epoch, {})[str(key)] = from_db(value)
            r.checks = [
                dict(zip(("name", "code", "severity", "message", "first_epoch", "last_epoch", "fired"), c))
                for c in conn.execute(
                    "SELECT name, code, severity, message, first_epoch, last_epoch, fired FROM checks WHERE run_id = ? "
                    "ORDER BY name",
                    (r.id,),
                )
            ]
            r.system = system_summary(conn, r)
    return runs


def system_summary(conn: sqlite3.Connection, r: RunRow) -> dict[str, float | int | None] | None:
    """The job's system samples while the run lasted: count, peak memory, mean CPU and GPU."""
    samples, peak, cpu, gpu = conn.execute(
        """SELECT COUNT(*), MAX(s.memory_used), AVG(s.cpu_ratio), AVG(s.gpu_ratio)
           FROM system s JOIN projects p ON p.id = s.project_id
           WHERE p.name = ? AND s.time BETWEEN ? AND COALESCE(?, (SELECT updated FROM runs WHERE id = ?))""",
        (r.job, r.started, r.ended, r.id),
    ).fetchone()
    if not samples:
        return None
    return {"samples": samples, "peak_memory_bytes": peak, "mean_cpu_ratio": cpu, "mean_gpu_ratio": gpu}
