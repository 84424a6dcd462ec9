"""The line protocol: the emitter's output through the sidecar's models, the schema, bad records."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0, Run
from gangplank_sidecar.parsers import protocol


def emitted(tmp_path, body) -> list[bytes]:
    path = tmp_path / "m.jsonl"
    with Run(job="unit", file=path, histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0) as run:
        body(run)
    return path.read_bytes().splitlines()


def test_everything_the_emitter_writes_is_valid_v1(tmp_path) -> None:
    def body(run: Run) -> None:
        run.step(5, {"loss": 1.5})
        with pytest.warns(RuntimeWarning, match=r"^gangplank_emitter: s: str, not a real number"):  # skipped, said once
            run.epoch(
                0,
                {"loss": math.nan, "acc": math.inf, "x": -math.inf, "n": np.float32(2.5), "s": "text"},
                weights=[np.ones(3)],
            )
        run.epoch(1, {"loss": 0.5})
        run.evaluate({"loss": 0.25})

    lines = emitted(tmp_path, body)
    records = [protocol.parse(b"leftover bar text " + line)[0] for line in lines]
    assert [(r.event, r.phase) for r in records] == [
        ("start", "train"),
        ("step", "train"),
        ("epoch", "train"),
        ("epoch", "train"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
        ("end", "train"),
    ]
    assert all(line.startswith(b'{"gangplank": 1, "event": ') for line in lines)
    epoch = records[2]
    assert epoch.epoch == 1 and records[3].epoch == 2
    assert math.isnan(epoch.metrics["loss"]) and epoch.metrics["acc"] == math.inf and epoch.metrics["x"] == -math.inf
    assert epoch.metrics["n"] == 2.5 and "s" not in epoch.metrics
    assert epoch.weights is not None and epoch.weights.counts[-1] == 3 and epoch.params.total == 3
    assert records[0].job == "unit" and records[0].run == records[4].run
    assert records[-1].status == "ok"


def test_interrupted_and_failed_runs_say_so(tmp_path) -> None:
    def interrupted(run: Run) -> None:
        run.epoch(0, {"loss": 1.0})
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        emitted(tmp_path, interrupted)
    last = protocol.parse((tmp_path / "m.jsonl").read_bytes().splitlines()[-1])[0]
    assert last.event == "end" and last.status == "interrupted"


def test_schema_shipped_is_generated_from_the_models() -> None:
    shipped = json.loads(protocol.SCHEMA_PATH.read_text())
    assert shipped == json.loads(json.dumps(protocol.json_schema()))
    assert set(shipped["discriminator"]["mapping"]) == {"start", "step", "epoch", "evaluate", "end"}


def test_bare_nan_tokens_from_json_dumps_are_accepted() -> None:
    line = json.dumps(
        {
            "gangplank": 1,
            "event": "step",
            "run": "r",
            "phase": "train",
            "time": 1,
            "step": 1,
            "metrics": {"a": math.nan, "b": -math.inf},
        }
    )
    (record,) = protocol.parse(line.encode())
    assert math.isnan(record.metrics["a"]) and record.metrics["b"] == -math.inf


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"gangplank": 1, "event": "epoch"}', "run: Field required"),
        (b'{"gangplank": 1, "event": "teleport", "run": "r", "phase": "train", "time": 1}', "event"),
        (
            b'{"gangplank": 1, "event": "step", "run": "r", "phase": "dev", "time": 1, "step": 1, "metrics": {}}',
            "phase",
        ),
        (
            b'{"gangplank": 1, "event": "step", "run": "r", "phase": "train", "time": 1, "step": 1, "metrics": {"a": '
            b'"x"}}',
            "metrics.a",
        ),
        (
            b'{"gangplank": 1, "event": "evaluate", "run": "r", "phase": "test", "time": 1, "elapsed_seconds": 1, '
            b'"metrics": {},'
            b' "params": {"total": 1}, "weights": {"le": [0], "counts": [2, 1], "count": 1, "sum": 0}}',
            "cumulative",
        ),
        (b'{"gangplank": 1, "event": "st', "record"),
        (b'{"gangplank": ' + b"[" * 100000, "record"),
    ],
)
def test_bad_records_raise_a_clear_error(line: bytes, message: str) -> None:
    with pytest.raises(ValueError, match="bad gangplank record") as info:
        protocol.parse(line)
    assert message in str(info.value)


def test_newer_version_is_told_apart() -> None:
    with pytest.raises(protocol.UnknownVersion, match="version 2"):
        protocol.parse(b'{"gangplank": 2, "event": "hologram"}')


def test_unknown_fields_are_ignored() -> None:
    (record,) = protocol.parse(
        b'{"gangplank": 1, "event": "end", "run": "r", "phase": "test", "time": 1, "status": "ok", "elapsed_seconds": '
        b'2, "gpu": "x"}'
    )
    assert record.elapsed_seconds == 2


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000), st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(prefix: bytes, rest: bytes) -> None:
    for line in (prefix, prefix + protocol.MARKER + rest):
        with contextlib.suppress(ValueError):
            assert protocol.parse(line) in ([],) or len(protocol.parse(line)) == 1
