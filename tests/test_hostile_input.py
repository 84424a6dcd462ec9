"""Hostile input: the echo passes every byte, memory stays bounded, every other line still counts.

The first tests run the real sidecar process against the real Pushgateway; the hypothesis
test drives the same reading path (splitter, echo, parsers, interpreter) in process.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from conftest import SIDECAR, Pushgateway, value
from gangplank_sidecar.aggregation.state import Store
from gangplank_sidecar.pipeline import Pipeline
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.sources.lines import LineSplitter
from gangplank_sidecar.sources.stdin import Echo, pump

MIB = 1 << 20


@dataclass
class Outcome:
    returncode: int
    sent: str
    echoed: str
    echoed_bytes: int
    stderr: bytes
    peak_rss_mib: float


def peak_rss_mib(pid: int) -> float:
    """The process's peak RSS since its exec (VmHWM), read until it exits.

    Not ``wait4``'s ru_maxrss: that also counts the parent's pages copied by fork before exec.
    """
    peak = 0.0
    while True:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return peak
        hwm = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
        if not hwm:
            return peak
        peak = int(hwm[0]) / 1024
        time.sleep(0.005)


def run_sidecar(chunks: Iterable[bytes], args: list[str], timeout: float = 120) -> Outcome:
    """Streams ``chunks`` into the real sidecar; hashes both sides rather than keeping them."""
    process = subprocess.Popen([*SIDECAR, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sent, echoed, counts, errors, peak = hashlib.sha256(), hashlib.sha256(), [0], [], [0.0]

    def write() -> None:
        assert process.stdin is not None
        for chunk in chunks:
            sent.update(chunk)
            process.stdin.write(chunk)
        process.stdin.close()

    def read() -> None:
        assert process.stdout is not None
        while chunk := process.stdout.read1(MIB):
            echoed.update(chunk)
            counts[0] += len(chunk)

    def read_errors() -> None:
        assert process.stderr is not None
        errors.append(process.stderr.read())

    def watch() -> None:
        peak[0] = peak_rss_mib(process.pid)

    threads = [threading.Thread(target=t, daemon=True) for t in (write, read, read_errors, watch)]
    for thread in threads:
        thread.start()
    try:
        process.wait(timeout)
    finally:
        process.kill()
        for thread in threads:
            thread.join(10)
        process.stdout.close()
        process.stderr.close()
    return Outcome(process.returncode, sent.hexdigest(), echoed.hexdigest(), counts[0], errors[0], peak[0])


HOSTILE = [
    b'{"metric": "loss", "value": 0.5, "epoch": 1}\n',
    b"\xff\xfe\xc3\x28 not UTF-8 \x80\n",
    b"\x00\x00 NUL bytes \x00\n",
    b'{"metric": "nul\x00", "value": 1}\n',
    b'{"metric": "loss", "value": 0.\n',
    b'{"metric": ' + b"[" * 200_000 + b"\n",
    b'{"gangplank": 1, "event": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n",
    b'{"metric": "huge", "value": 1e999999, "epoch": 1}\n',
    b'{"metric": "huger", "value": -' + b"9" * 10_000 + b', "epoch": 1}\n',
    b'{"metric": "acc", "value": 0.75, "epoch": 1}\r\n',
]


def hundred_mib_line() -> Iterable[bytes]:
    block = b"x" * MIB
    for _ in range(100):
        yield block


def test_hostile_stream_through_the_real_sidecar(pushgateway: Pushgateway) -> None:
    chunks = [
        *HOSTILE,
        *hundred_mib_line(),
        b"\n",
        b'{"metric": "loss", "value": 0.25, "epoch": 2}\n',
        b'{"metric": "last", "value": 3, "epoch": 2}',
    ]
    outcome = run_sidecar(chunks, ["--pushgateway", pushgateway.url, "--job", "hostile", "--flush-timeout", "20"])
    assert outcome.returncode == 0, outcome.stderr
    assert (outcome.echoed, outcome.echoed_bytes) == (outcome.sent, sum(len(c) for c in chunks))
    assert 20 < outcome.peak_rss_mib < 60, outcome.peak_rss_mib
    samples = pushgateway.samples()
    train = {"job": "hostile", "phase": "train"}
    assert value(samples, "gangplank_train_loss", **train) == 0.25
    assert value(samples, "gangplank_train_acc", **train) == 0.75
    assert value(samples, "gangplank_train_huge", **train) == float("inf")
    assert value(samples, "gangplank_train_huger", **train) == float("-inf")
    assert value(samples, "gangplank_train_last", **train) == 3
    assert value(samples, "gangplank_train_epochs_count", **train) == 2
    sidecar = {"job": "hostile", "phase": "sidecar"}
    lines = {
        fmt: value(samples, "gangplank_sidecar_lines_total", format=fmt, **sidecar)
        for fmt in ("floydhub", "other", "error")
    }
    assert lines == {"floydhub": 6, "other": 2, "error": 4}
    assert value(samples, "gangplank_sidecar_parse_errors_total", **sidecar) == 4
    errors = [line for line in outcome.stderr.decode().splitlines() if "stdin:" in line]
    assert errors == [
        "gangplank-sidecar: stdin:4: bad FloydHub line: Invalid control character at: line 1 column 16 (char 15)",
        "gangplank-sidecar: stdin:5: bad FloydHub line: Expecting ',' delimiter: line 1 column 30 (char 29)",
        "gangplank-sidecar: stdin:6: bad FloydHub line: nested too deeply",
        "gangplank-sidecar: stdin:7: bad gangplank record: record: Invalid JSON: recursion limit exceeded at line 1 "
        "column 227",
    ]


def test_every_byte_of_crlf_and_unfinished_lines_is_echoed() -> None:
    chunks = [b"Epoch 1/1\r\n", b"\r7/7 - 0s - 3ms/step - loss: 0.5\r\n", b"no newline at the end\r"]
    outcome = run_sidecar(chunks, [])
    assert outcome.returncode == 0, outcome.stderr
    assert (outcome.echoed, outcome.echoed_bytes) == (outcome.sent, sum(len(c) for c in chunks))
    lines = outcome.stderr.decode().splitlines()
    summary = lines[[line.startswith("gangplank-sidecar: run ") for line in lines].index(True) :]
    assert re.fullmatch(
        r"gangplank-sidecar: run \d{8}-\d{6}-[0-9a-f]{4} \(job gangplank, train\): 1 epoch, ok", summary[0]
    )
    assert summary[1:3] == ["  metric          last  best", "  loss           0.5  0.5 (epoch 1) [min]"]


fragments = st.sampled_from(
    [
        b"\n",
        b"\r\n",
        b"\r",
        b"\x08",
        b"\x00",
        b"\xff",
        b"\x1b[1m",
        "━".encode(),
        b" - ",
        b"loss: 0.5",
        b"75/75",
        b"Epoch 1/2",
        b'{"metric": "a", "value": 1}',
        b'{"metric"',
        b'{"gangplank":',
        b'{"gangplank": 1}',
        b"[" * 50,
        b"1e999",
    ]
)


@given(st.lists(fragments | st.binary(max_size=16), max_size=80))
@settings(max_examples=300, deadline=None)
def test_any_bytes_are_echoed_unchanged_and_every_line_counted(parts: list[bytes]) -> None:
    data = b"".join(parts)
    read, write = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write, data), os.close(write)), daemon=True)
    writer.start()
    selfmetrics, out = SelfMetrics(), io.BytesIO()
    pipeline = Pipeline(Store(), selfmetrics, report=lambda message: None)
    pump(read, "stdin", pipeline.feed_lines, Echo(out, report=lambda message: None))
    writer.join()
    os.close(read)
    assert out.getvalue() == data
    counted = sum(s.value for s in selfmetrics.lines.collect()[0].samples if s.name.endswith("_total"))
    assert counted == data.count(b"\n") + (not data.endswith(b"\n") and bool(data))


def test_oversized_lines_are_counted_and_the_lines_after_them_numbered_right() -> None:
    data = b"x" * 40 + b"\n" + b'{"metric": "loss", "value": 1}}\n' + b"y" * 20 + b"\n" + b"z" * 64
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    selfmetrics, reports, out = SelfMetrics(), [], io.BytesIO()
    pipeline = Pipeline(Store(), selfmetrics, report=reports.append)
    pump(read, "stdin", pipeline.feed_lines, Echo(out, report=reports.append), LineSplitter(max_line=32))
    os.close(read)
    assert out.getvalue() == data
    assert reports == [
        "line 1 of stdin is too long to parse: echoed, not parsed (further ones are only counted)",
        "stdin:2: bad FloydHub line: Extra data: line 1 column 31 (char 30)",
    ]
    exposition = generate_latest(selfmetrics.registry).decode().splitlines()
    assert [
        line
        for line in exposition
        if line.startswith("gangplank_sidecar_") and "_created" not in line and "push" not in line
    ] == [
        'gangplank_sidecar_lines_total{format="other"} 1.0',
        'gangplank_sidecar_lines_total{format="error"} 1.0',
        "gangplank_sidecar_parse_errors_total 1.0",
        "gangplank_sidecar_oversized_lines_total 2.0",
        "gangplank_sidecar_dropped_metric_values_total 0.0",
        "gangplank_sidecar_pending_snapshots 0.0",
    ]
