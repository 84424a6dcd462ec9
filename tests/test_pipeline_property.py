"""The whole pipeline under hostile input: every sink on, real servers, random records.

Each example runs one sidecar with the run history, ``--listen``, the real Pushgateway and remote
write into the real Prometheus, and feeds it a run whose good epoch records carry extreme but valid
values (NaN, infinities, 1e308, subnormals, 2**53 parameters), interleaved with records that must be
refused (bad times, epochs, counts, types, versions, broken JSON) and with lines that are not ours.
The property: the process stays up, exits 0 with no traceback, counts exactly the refused lines, and
every good record lands in every sink (all of them in the history and in Prometheus, with their
own timestamps; the last one in the gateway and on /metrics).
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from conftest import SIDECAR, Prometheus, Pushgateway, free_port, start_prometheus, start_pushgateway
from gangplank_sidecar.parsers import protocol
from gangplank_sidecar.runs import db

EXTREMES = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 0.1]
values = st.one_of(st.sampled_from(EXTREMES), st.floats(allow_nan=True, allow_infinity=True, width=64))
goods = st.lists(st.tuples(values, values, st.integers(0, protocol.MAX_COUNT)), min_size=1, max_size=4)

# Values each field must refuse; every one is checked to be refused by the parser below.
BAD_FIELDS: dict[str, list[object]] = {
    "gangplank": [True, 0, 1.5, "one", None],
    "time": ["NaN", "Infinity", "-Infinity", 1e300, -1.0, "soon", None, [1]],
    "epoch": [0, -1, 2**63, 9223372036854775808, 1e300, True, None, 1.5, "x"],
    "elapsed_seconds": [-1.0, "NaN", 1e300, None],
    "params": [{"total": 10**30}, {"total": -1}, {"total": 1.5}, {"total": 1, "trainable": 2**64}, None, 7],
    "metrics": ["x", [1], {"loss": "abc"}, {"loss": None}, {"loss": [1]}, None],
    "weights": [
        {"le": [0.0], "counts": [1], "count": 1, "sum": 0.0},
        {"le": [0.0], "counts": [2, 1], "count": 1, "sum": 0.0},
        {"le": ["NaN"], "counts": [0, 1], "count": 1, "sum": 0.0},
        {"le": [0.0], "counts": [0, 2**60], "count": 2**60, "sum": 0.0},
        {"le": [0.0], "counts": [0, 1], "count": 1, "sum": "Infinity"},
    ],
}


@st.composite
def bad_records(draw: st.DrawFn, run: str) -> str:
    """A record of the good run (or another) with one field refused; or a marked line that is no record."""
    if draw(st.integers(0, 4)) == 0:
        return '{"gangplank": 1, ' + draw(st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t))
    field = draw(st.sampled_from(sorted(BAD_FIELDS)))
    record = {
        "gangplank": 1,
        "event": "epoch",
        "run": draw(st.sampled_from([run, "someone-else"])),
        "phase": "train",
        "time": time.time(),
        "epoch": 1,
        "elapsed_seconds": 1.0,
        "metrics": {"loss": 0.5},
        "params": {"total": 1},
    }
    record[field] = draw(st.sampled_from(BAD_FIELDS[field]))
    return json.dumps(record)


others = st.binary(max_size=200).filter(lambda b: b"\n" not in b and b"\r" not in b and protocol.MARKER not in b)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pushgateway, Prometheus, Path]]:
    workdir = tmp_path_factory.mktemp("pipeline")
    gateway = start_pushgateway()
    prometheus = start_prometheus(workdir, "global:\n  scrape_interval: 1m\n", "--web.enable-remote-write-receiver")
    yield gateway, prometheus, workdir / "runs.db"
    prometheus.stop()
    gateway.stop()


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def scrape_text(url: str) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def pick(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float | None:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    return found[0] if len(found) == 1 else None


EXAMPLES = itertools.count()


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_good_record_lands_in_every_sink(
    servers: tuple[Pushgateway, Prometheus, Path], data: st.DataObject
) -> None:
    gateway, prometheus, history = servers
    n = next(EXAMPLES)
    job, run = f"prop-{n}", f"good-{n}-{time.time_ns()}"
    good = data.draw(goods, label="good epochs (loss, acc, params)")
    bad = data.draw(st.lists(bad_records(run), max_size=8), label="refused records")
    noise = data.draw(st.lists(others, max_size=4), label="other lines")
    for line in bad:
        with pytest.raises(ValueError):
            protocol.parse(line.encode())
    t0 = round(time.time() - 600, 3)
    epochs = [
        json.dumps(
            {
                "gangplank": 1,
                "event": "epoch",
                "run": run,
                "phase": "train",
                "time": t0 + i,
                "epoch": i + 1,
                "elapsed_seconds": 1.5 * (i + 1),
                "metrics": {"loss": loss, "acc": acc},
                "params": {"total": params},
            }
        )
        for i, (loss, acc, params) in enumerate(good)
    ]
    mixed: list[bytes] = [line.encode() for line in bad] + list(noise)
    slots = sorted(
        data.draw(st.lists(st.integers(0, len(mixed)), min_size=len(epochs), max_size=len(epochs)), label="positions")
    )
    for offset, (slot, line) in enumerate(zip(slots, epochs)):
        mixed.insert(slot + offset, line.encode())
    start = json.dumps(
        {
            "gangplank": 1,
            "event": "start",
            "run": run,
            "phase": "train",
            "time": t0 - 1,
            "job": job,
            "params": {"total": 1},
        }
    )
    stream = b"\n".join([start.encode(), *mixed, b""])

    port = free_port()
    proc = subprocess.Popen(
        [
            *SIDECAR,
            "--quiet",
            "--system-interval",
            "0",
            "--db",
            str(history),
            "--listen",
            f"127.0.0.1:{port}",
            "--pushgateway",
            gateway.url,
            "--remote-write",
            prometheus.url + "/api/v1/write",
            "--flush-timeout",
            "20",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(stream)
        proc.stdin.flush()
        last_loss, last_acc, last_params = good[-1]
        deadline, page = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            try:
                page = scrape_text(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                page = {}
            if pick(page, "gangplank_train_epochs_count", job=job) == len(good) and pick(
                page, "gangplank_sidecar_parse_errors_total", phase="sidecar"
            ) == len(bad):
                break
            time.sleep(0.1)
        assert pick(page, "gangplank_train_epochs_count", job=job) == len(good)
        assert same(pick(page, "gangplank_train_loss", job=job), last_loss)
        assert same(pick(page, "gangplank_train_acc", job=job), last_acc)
        assert pick(page, "gangplank_train_model_parameters_count", job=job) == float(last_params)
        assert pick(page, "gangplank_sidecar_parse_errors_total", phase="sidecar") == len(bad)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")
    assert b"Traceback" not in err and b"Exception in thread" not in err

    pushed = gateway.gangplank()
    assert pick(pushed, "gangplank_train_epochs_count", job=job, phase="train") == len(good)
    assert same(pick(pushed, "gangplank_train_loss", job=job, phase="train"), last_loss)
    assert pick(pushed, "gangplank_train_model_parameters_count", job=job, phase="train") == float(last_params)
    assert pick(pushed, "gangplank_sidecar_parse_errors_total", job=job, phase="sidecar") == len(bad)

    for key, index in (("loss", 0), ("acc", 1)):
        (series,) = prometheus.api("query", query=f'gangplank_train_{key}{{job="{job}"}}[1h]')["result"]
        landed = [(round(float(t) * 1000), float(v)) for t, v in series["values"]]
        expected = [(round((t0 + i) * 1000), g[index]) for i, g in enumerate(good)]
        assert [t for t, _ in landed] == [t for t, _ in expected]
        assert all(same(a, b) for (_, a), (_, b) in zip(landed, expected)), (landed, expected)

    conn = db.connect(history)
    (row,) = db.load_runs(conn, "WHERE r.run = ?", (run,))
    conn.close()
    assert (row.job, row.status, row.epochs, row.params) == (job, "interrupted", len(good), last_params)
    assert sorted(row.rows) == list(range(1, len(good) + 1))
    for i, (loss, acc, _) in enumerate(good):
        assert same(row.rows[i + 1]["loss"], loss) and same(row.rows[i + 1]["acc"], acc)
