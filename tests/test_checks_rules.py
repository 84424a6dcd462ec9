"""The sidecar's training checks: each rule fires on its synthetic sequence and passes on a healthy run."""

from __future__ import annotations

import json
import math
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, SIDECAR, keras_env
from gangplank_sidecar.aggregation import checks
from gangplank_sidecar.aggregation.checks import RunChecks, Thresholds, thresholds_from
from gangplank_sidecar.aggregation.state import Store
from gangplank_sidecar.parsers.protocol import Check, Weights
from gangplank_sidecar.pipeline import Pipeline
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.sinks.families import run_families

T = Thresholds()
HEALTHY_LOSS = [2.3, 1.6, 1.1, 0.8, 0.62, 0.5, 0.43, 0.38, 0.35, 0.33]
HEALTHY_VAL = [2.2, 1.55, 1.12, 0.83, 0.66, 0.55, 0.49, 0.45, 0.43, 0.42]
BOUNDS = [-1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0]


def epochs(loss: list[float], val: list[float] | None = None) -> list[tuple[int, dict[str, float]]]:
    return [(i + 1, {"loss": value, **({"val_loss": val[i]} if val else {})}) for i, value in enumerate(loss)]


def weights(shares: list[int], nonfinite: int = 0, biggest: float = 0.9) -> Weights:
    """A histogram from per-bucket counts (8 buckets for BOUNDS: <=-1, ..., <=1, +Inf)."""
    counts = [sum(shares[: i + 1]) for i in range(len(shares))]
    return Weights(le=BOUNDS, counts=counts, count=counts[-1], sum=0.0, min=-biggest, max=biggest, nonfinite=nonfinite)


NORMAL = weights([0, 5, 20, 25, 25, 20, 5, 0])
RULES = (checks.non_finite, checks.divergence, checks.overfitting, checks.plateau, checks.train_val_gap)


def names(found: Iterable[Check]) -> list[str]:
    return [c.name for c in found]


def test_a_healthy_run_raises_nothing_at_any_epoch() -> None:
    run = RunChecks()
    for epoch, metrics in epochs(HEALTHY_LOSS, HEALTHY_VAL):
        fired, passed = run.epoch(epoch, metrics, NORMAL)
        assert fired == []
        assert sorted(names(passed.values())) == sorted(checks.CHECKS)
        assert all(not c.fired for c in passed.values())


def test_non_finite_fires_on_nan_and_clears() -> None:
    assert checks.non_finite(epochs([2.0, math.nan]), T) == Check(
        code="", name="non_finite", severity="error", message="non-finite loss=NaN at epoch 2"
    )
    found = checks.non_finite([(3, {"loss": 1.0, "val_loss": math.inf, "acc": -math.inf})], T)
    assert found is not None and found.message == "non-finite acc=-Infinity, val_loss=Infinity at epoch 3"
    assert checks.non_finite(epochs([2.0, 1.5]), T) is None


def test_divergence_above_the_first_value() -> None:
    found = checks.divergence(epochs([12.5847806930542, 14.506285667419434]), T)
    assert found is not None and found.message == "loss 14.51 at epoch 2 is above its first value 12.58 (epoch 1)"
    assert checks.divergence(epochs([2.0, 2.19]), T) is None  # within the 10% margin


def test_divergence_rising_epochs_in_a_row() -> None:
    found = checks.divergence(epochs([2.0, 0.5, 0.6, 0.7, 0.8]), T)
    assert found is not None and found.message == "loss rose 3 epochs in a row, to 0.8 at epoch 5"
    assert checks.divergence(epochs([2.0, 0.5, 0.6, 0.7]), T) is None
    assert checks.divergence(epochs([2.0, 0.5, 0.6, 0.7, 0.8]), Thresholds(divergence_epochs=4)) is None


def test_overfitting_reports_the_best_epoch() -> None:
    loss = [1.0 - 0.05 * i for i in range(16)]
    val = [1.0 - 0.05 * i for i in range(13)] + [0.42, 0.45, 0.5]
    found = checks.overfitting(epochs(loss, val), T)
    assert found == Check(
        code="K504",
        name="overfitting",
        severity="warning",
        message="val_loss bottomed out at 0.4 at epoch 13 (best epoch 13) and is 0.5 3 epochs later while loss fell "
        "from 0.4 to 0.25",
    )
    assert checks.overfitting(epochs(loss[:15], val[:15]), T) is None  # only 2 epochs past the best
    flat = [0.4] * 16  # training loss not falling: not overfitting
    assert checks.overfitting(epochs(flat, val), T) is None


def test_plateau() -> None:
    found = checks.plateau(epochs([1.0, 0.5, 0.4999, 0.5, 0.5001, 0.4998, 0.4999]), T)
    assert found is not None and found.message == "loss has not improved on 0.5 for 5 epochs (min_delta 0.001)"
    assert checks.plateau(epochs([1.0, 0.5, 0.4999, 0.5, 0.5001, 0.4998, 0.49]), T) is None
    assert checks.plateau(epochs([1.0, 0.5, 0.5, 0.5, 0.5, 0.5]), Thresholds(plateau_epochs=6)) is None


def test_train_val_gap_widening() -> None:
    found = checks.train_val_gap(epochs([1.0, 0.8, 0.6, 0.4, 0.3], [1.0, 0.85, 0.8, 0.75, 0.7]), T)
    assert found is not None and found.message == "val_loss - loss widened 4 epochs in a row, to 0.4 at epoch 5"
    assert checks.train_val_gap(epochs([1.0, 0.8, 0.6, 0.4, 0.3], [1.0, 0.85, 0.66, 0.5, 0.39]), T) is None  # small gap
    assert (
        checks.train_val_gap(epochs([1.0, 0.8, 0.6, 0.4, 0.3], [1.0, 0.9, 0.7, 0.75, 0.7]), T) is None
    )  # not every epoch


def test_dead_weights() -> None:
    dead = weights([0, 0, 2, 48, 48, 2, 0, 0])
    found = checks.dead_weights(NORMAL, dead, T)
    assert found == Check(
        code="",
        name="dead_weights",
        severity="warning",
        message="96% of the weights are in the bucket around 0 (first histogram: 50%)",
    )
    assert checks.dead_weights(dead, dead, T) is None  # narrow from the start: that is the model's initialiser
    assert checks.dead_weights(NORMAL, NORMAL, T) is None


def test_exploding_weights() -> None:
    spread = weights([30, 10, 5, 5, 5, 5, 10, 30])
    found = checks.exploding_weights(NORMAL, spread, T)
    assert found is not None and found.message == "60% of the weights lie beyond [-1, 1] (first histogram: 0%)"
    assert (
        checks.exploding_weights(NORMAL, weights([0, 5, 20, 25, 25, 20, 5, 0], nonfinite=3), T).message
        == "3 non-finite weights"
    )
    huge = weights([0, 5, 20, 25, 25, 20, 5, 0], biggest=250.0)
    assert checks.exploding_weights(NORMAL, huge, T).message == "a weight of magnitude 250 (limit 100)"
    assert checks.exploding_weights(NORMAL, NORMAL, T) is None
    assert checks.exploding_weights(None, None, T) is None


def test_a_check_clears_when_the_run_recovers() -> None:
    run = RunChecks()
    assert run.epoch(1, {"loss": 2.0}, None)[0] == []
    assert names(run.epoch(2, {"loss": math.nan}, None)[0]) == ["non_finite"]
    fired, passed = run.epoch(3, {"loss": 1.0}, None)
    assert fired == [] and passed["non_finite"].fired is False


def test_text_formats_bring_an_epoch_in_pieces() -> None:
    """The same epoch seen twice (FloydHub: one metric per line) replaces, not appends."""
    run = RunChecks(Thresholds(plateau_epochs=1))
    assert run.epoch(1, {"loss": 1.0}, None)[0] == []
    assert run.epoch(1, {"loss": 1.0, "val_loss": 1.1}, None)[0] == []  # one epoch: no plateau yet
    assert names(run.epoch(2, {"loss": 1.0}, None)[0]) == ["plateau"]


def test_a_long_run_is_checked_on_a_bounded_view_with_the_same_findings() -> None:
    """Overfitting far after the best epoch, and a plateau measured against an old best, as on the full history."""
    loss = [1.0 / e for e in range(1, 201)]
    val = [1.0 / e for e in range(1, 31)] + [1.0 / 30 + 0.001 * e for e in range(1, 171)]
    run = RunChecks()
    for epoch, metrics in epochs(loss, val):
        fired, _ = run.epoch(epoch, metrics, None)
    assert all(len(part) <= 10 for part in run._state if isinstance(part, tuple))
    full = [c(epochs(loss, val), T) for c in RULES]
    assert fired == [c for c in full if c is not None]
    assert names(fired) == ["overfitting", "train_val_gap"] and "(best epoch 30)" in fired[0].message
    stuck = [1.0, 0.5] + [0.6] * 100
    run = RunChecks()
    for epoch, metrics in epochs(stuck):
        fired, _ = run.epoch(epoch, metrics, None)
    assert names(fired) == ["plateau"] and fired[0] == checks.plateau(epochs(stuck), T)


def test_thresholds_from_pairs() -> None:
    assert thresholds_from(["plateau_epochs=8", "min_delta=0.01"]) == Thresholds(plateau_epochs=8, min_delta=0.01)
    with pytest.raises(ValueError, match="bad check threshold 'plateau_epochs=1.5': '1.5' is not an integer"):
        thresholds_from(["plateau_epochs=1.5"])
    with pytest.raises(ValueError, match="NAME one of divergence_epochs, divergence_margin"):
        thresholds_from(["nope=1"])
    with pytest.raises(ValueError, match="must be a number >= 0"):
        thresholds_from(["min_delta=-1"])


def _line(event: str, **fields: object) -> bytes:
    return json.dumps({"gangplank": 1, "event": event, "run": "r", "phase": "train", "time": 1.0, **fields}).encode()


def _samples(series) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in run_families(series) for s in f.samples}


def test_checks_are_exported_from_the_start_with_the_best_values() -> None:
    store = Store()
    pipeline = Pipeline(store, SelfMetrics(), lambda message: None)
    pipeline.feed("stdin", _line("start", params={"total": 1}))
    (series,) = store.snapshot()
    exported = _samples(series)
    assert {labels: v for (name, labels), v in exported.items() if name == "gangplank_check_failed"} == {
        (("check", name), ("code", code)): 0.0 for name, (_, code, _) in checks.CHECKS.items()
    }
    assert (exported[("gangplank_run_active", ())], exported[("gangplank_run_last_record_timestamp_seconds", ())]) == (
        1.0,
        1.0,
    )
    for epoch, (loss, val) in enumerate([(1.0, 0.9), (0.5, 0.6), (0.25, "NaN")], start=1):
        pipeline.feed(
            "stdin",
            _line(
                "epoch", epoch=epoch, elapsed_seconds=1.0, params={"total": 1}, metrics={"loss": loss, "val_loss": val}
            ),
        )
    (series,) = store.snapshot()
    exported = _samples(series)
    assert exported[("gangplank_check_failed", (("check", "non_finite"), ("code", "")))] == 1.0
    assert exported[("gangplank_train_best", (("metric", "loss"),))] == 0.25
    assert exported[("gangplank_train_best", (("metric", "val_loss"),))] == 0.6
    assert exported[("gangplank_train_best_epoch", ())] == 2.0
    assert series.checks["non_finite"].message == "non-finite val_loss=NaN at epoch 3"


def test_a_real_keras_run_that_diverges_is_flagged_within_a_few_epochs(tmp_path: Path) -> None:
    """SGD with a learning rate of 10 on the digits: the softmax saturates and the loss jumps up."""
    path = tmp_path / "runs.db"
    train = [sys.executable, str(ROOT / "tests/scripts/train_diverge.py")]
    sidecar = [*SIDECAR, "--quiet", "--system-interval", "0", "--db", str(path)]
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{shlex.join(train)} | {shlex.join(sidecar)}"],
        capture_output=True,
        env=keras_env(EPOCHS="4", LR="10"),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(path)
    losses = [v for (v,) in conn.execute("SELECT value FROM metrics WHERE key = 'loss' ORDER BY epoch")]
    (row,) = conn.execute(
        "SELECT first_epoch, last_epoch, fired, message FROM checks WHERE name = 'divergence'"
    ).fetchall()
    conn.close()
    assert len(losses) == 4
    assert row == (2, 4, 1, f"loss {losses[3]:.4g} at epoch 4 is above its first value {losses[0]:.4g} (epoch 1)")
    assert f"check - divergence: loss {losses[3]:.4g} at epoch 4 is above its first value" in done.stderr.decode()


def test_thresholds_are_set_on_the_command_line() -> None:
    lines = (
        _line("start", params={"total": 1})
        + b"\n"
        + b"".join(
            _line("epoch", epoch=e, elapsed_seconds=1.0, params={"total": 1}, metrics={"loss": 1.0}) + b"\n"
            for e in (1, 2, 3)
        )
    )
    command = [*SIDECAR, "--quiet", "--system-interval", "0", "--no-history"]
    quiet = subprocess.run(command, input=lines, capture_output=True, timeout=60)
    assert quiet.returncode == 0 and b"plateau" not in quiet.stderr
    flagged = subprocess.run(
        [*command, "--check-threshold", "plateau_epochs=2"], input=lines, capture_output=True, timeout=60
    )
    assert b"  check - plateau: loss has not improved on 1 for 2 epochs (min_delta 0.001)\n" in flagged.stderr
    bad = subprocess.run([*command, "--check-threshold", "plateau=2"], input=lines, capture_output=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.decode().startswith(
        "gangplank-sidecar: --check-threshold: bad check threshold 'plateau=2': expected NAME=VALUE"
    )


value = st.one_of(st.floats(0.0, 3.0), st.sampled_from([math.nan, math.inf, 1.0, 0.5]))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(st.none(), value), st.one_of(st.none(), value), st.booleans()), max_size=40),
    st.builds(
        Thresholds,
        divergence_epochs=st.integers(0, 4),
        overfitting_patience=st.integers(0, 4),
        plateau_epochs=st.integers(0, 6),
        gap_epochs=st.integers(0, 5),
        min_delta=st.sampled_from([0.0, 1e-3, 0.1]),
    ),
)
def test_running_checks_equal_the_rules_over_the_whole_history(rows, t: Thresholds) -> None:
    """Per epoch, RunChecks' findings are each rule's over every epoch so far (some brought in two pieces)."""
    run, history = RunChecks(t), []
    for epoch, (loss, val, in_pieces) in enumerate(rows, start=1):
        metrics = {**({"loss": loss} if loss is not None else {}), **({"val_loss": val} if val is not None else {})}
        if in_pieces and loss is not None:
            run.epoch(epoch, {"loss": loss}, None)
        history.append((epoch, metrics))
        fired, _ = run.epoch(epoch, metrics, None)
        assert fired == [f for f in (rule(history, t) for rule in RULES) if f is not None]


def test_the_monitor_sets_a_finding_again_when_something_else_changed_the_checks() -> None:
    """An unchanged finding is not set again, unless a record's own checks replaced it meanwhile."""
    store = Store()
    series = store.begin("j", "train", "r")
    monitor = checks.Monitor(Thresholds(plateau_epochs=1))

    def epoch(n: int) -> None:
        series.epoch = n
        series.observe({"loss": 1.0}, n)
        monitor.epoch(series)

    epoch(1)
    epoch(2)
    assert series.failed_checks == {"plateau"}
    version = series.checks_version
    epoch(3)  # the same finding: nothing set
    assert series.checks_version == version and series.failed_checks == {"plateau"}
    series.set_checks([Check(name="plateau", severity="info", fired=False)])  # an emitter's record says so
    assert series.failed_checks == set()
    epoch(4)
    assert series.failed_checks == {"plateau"} and series.checks["plateau"].message.startswith("loss has not improved")
