"""Issue 15, item 10 and the emitter's smalls: no value a training loop hands us raises into training
(unless ``ignore_exceptions=False`` asked for it), and a stdout that is gone costs the metrics, not the run."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_1_0, Run
from gangplank_emitter import run as emitter_run
from gangplank_emitter.values import NotAMetric, metric_values, to_float

ODD = {
    "array1": np.array([0.5]),
    "jax1": jnp.array([0.25]),
    "square": np.array([[0.125]]),
    "jax_scalar": jnp.float32(0.75),
    "np_int": np.int64(3),
    "fraction": Fraction(1, 4),
    "nan": np.float32("nan"),
    "matrix": np.ones((2, 2)),
    "jax_vector": jnp.arange(3.0),
    "huge": 10**400,
    "complex": 1 + 2j,
    "np_complex": np.complex64(1j),
    "flag": True,
    "text": "0.5",
    "missing": None,
}
KEPT = {"array1": 0.5, "jax1": 0.25, "square": 0.125, "jax_scalar": 0.75, "np_int": 3.0, "fraction": 0.25, "nan": "NaN"}
WHY = {
    "matrix": "ndarray of shape (2, 2), not one number",
    "jax_vector": "ArrayImpl of shape (3,), not one number",
    "huge": "int too large for a float",
    "complex": "complex, not a real number",
    "np_complex": "complex, not a real number",
    "flag": "bool, not a number",
    "text": "str, not a real number",
}


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_conversion_says_what_it_keeps_and_why_it_skips() -> None:
    assert metric_values(ODD) == (KEPT, WHY)
    assert to_float(np.float16(0.5)) == 0.5
    with pytest.raises(NotAMetric, match=r"metrics must be a mapping of names to numbers, not float"):
        metric_values(0.5)


def test_odd_values_are_skipped_with_one_warning_per_key(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    run = Run(file=path, histogram_buckets=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.epoch(np.int64(0), ODD)  # a numpy epoch index too
        run.epoch(1, ODD)
        run.step(5, ODD)
    said = sorted(str(w.message) for w in caught)
    assert said == sorted(
        f"gangplank_emitter: {key}: {why}; expected a real number or an array of one (skipped; training goes on)"
        for key, why in WHY.items()
    )
    assert all(w.category is RuntimeWarning for w in caught)
    run.close()
    written = records(path)
    assert [
        (r["event"], r.get("epoch"), r["metrics"]) for r in written if r["event"] != "start" and r["event"] != "end"
    ] == [
        ("epoch", 1, KEPT),
        ("epoch", 2, KEPT),
        ("step", None, KEPT),
    ]


def test_strict_mode_raises_a_clear_error(tmp_path: Path) -> None:
    run = Run(file=tmp_path / "m.jsonl", ignore_exceptions=False)
    with pytest.raises(
        TypeError,
        match=r"^gangplank_emitter: matrix: ndarray of shape \(2, 2\), not one number; expected a real number or an "
        r"array of one$",
    ):
        run.epoch(0, {"loss": 0.5, "matrix": np.ones((2, 2))})
    with pytest.raises(TypeError, match=r"^gangplank_emitter: metrics: metrics must be a mapping"):
        run.epoch(0, [0.5])  # type: ignore[arg-type]  # a wrong type on purpose
    run.close()


def test_weights_that_cannot_be_histogrammed_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    run = Run(file=path, histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0)
    with pytest.warns(RuntimeWarning, match=r"^gangplank_emitter: weights: no histogram"):
        run.epoch(0, {"loss": 0.5}, weights=[np.array(["a", "b"])])
    run.close()
    epoch = records(path)[1]
    assert (epoch["metrics"], "weights" in epoch) == ({"loss": 0.5}, False)


def test_stdout_none_warns_once_and_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", None)
    run = Run(histogram_buckets=None)
    with pytest.warns(RuntimeWarning) as caught:
        run.epoch(0, {"loss": 0.5})
        run.epoch(1, {"loss": 0.25})
    assert [str(w.message) for w in caught] == [
        "gangplank_emitter: cannot write metrics (sys.stdout is None (give the emitter a file= to write to)); training "
        "goes on"
    ]
    run._at_exit()  # the atexit handler: no exception either
    strict = Run(histogram_buckets=None, ignore_exceptions=False)
    with pytest.raises(ValueError, match=r"^sys.stdout is None \(give the emitter a file= to write to\)$"):
        strict.start()
    strict._at_exit()
    for left_open in (run, strict):  # not at pytest's exit, with its stdout back
        emitter_run._live.discard(left_open)


def test_stdout_none_at_exit_in_a_real_process() -> None:
    code = "import sys; from gangplank_emitter import Run; r = Run(); r.epoch(0, {'loss': 0.5}); sys.stdout = None"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


def test_metrics_as_one_name(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    run = Run(file=path, metrics="loss", histogram_buckets=None)
    assert run.metrics == ["loss"]
    run.epoch(0, {"loss": 0.5, "accuracy": 0.75})
    run.close()
    assert records(path)[1]["metrics"] == {"loss": 0.5}
    with pytest.raises(TypeError, match=r"^metrics: expected metric names \(str\), got \[1\]$"):
        Run(metrics=[1])  # type: ignore[list-item]  # a wrong type on purpose


def test_the_keras_callback_takes_one_name_and_checks_step_every() -> None:
    from gangplank_emitter import Emitter

    assert Emitter(metrics="loss").run.metrics == ["loss"]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError) as error:
            Emitter(step_every=bad)  # type: ignore[arg-type]  # a wrong type on purpose
        assert (
            str(error.value)
            == f"step_every must be a whole number of batches, 1 or more (or None: no step records), not {bad!r}"
        )
    assert Emitter(step_every=2).step_every == 2


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.complex_numbers(),
        st.text(max_size=5),
        st.fractions(),
        st.lists(st.floats(), max_size=3).map(np.array),
        st.lists(st.integers(-5, 5), max_size=3).map(np.array),
        st.lists(st.floats(width=32), max_size=3).map(jnp.array),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    )
)
@settings(max_examples=300, deadline=None)
def test_any_value_is_a_float_or_one_skip_reason(value: object) -> None:
    """Property: the conversion raises nothing but NotAMetric, and what it keeps is a float or a protocol token."""
    values, skipped = metric_values({"k": value})
    assert len(values) + len(skipped) == (0 if value is None else 1)
    if values:
        assert isinstance(values["k"], float) or values["k"] in ("NaN", "Infinity", "-Infinity")
