"""Curves where a person looks: sparklines in the summary and in `gangplank-runs show`, `gangplank-runs plot`.

A known run (fixed values and times) goes through the sidecar; its summary, `show` and `plot`
are compared exactly with a golden file per renderer, Unicode and ASCII (an output encoding
that cannot write the blocks). `GOLDEN_UPDATE=1` rewrites the golden files after a change
that is meant (look at the diff).
"""

from __future__ import annotations

import json
import math
import os
import pty
import subprocess
import sys
import tty
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import SIDECAR
from gangplank_sidecar.aggregation.state import MAX_CURVES, RunState
from gangplank_sidecar.curve import MAX_BUCKETS, Curve
from gangplank_sidecar.sparkline import ASCII, UNICODE, curve_lines, sparkline

RUNS = [sys.executable, "-m", "gangplank_sidecar.runs"]
GOLDEN = Path(__file__).parent / "golden"
T0 = 1764065730.0
A, B = "20251125-101530-aaaa", "20251125-113000-bbbb"
ENCODINGS = {"unicode": "utf-8", "ascii": "ascii"}


def rec(event: str, run: str, at: float, **fields: object) -> str:
    return json.dumps({"gangplank": 1, "event": event, "run": run, "phase": "train", "time": at, **fields}) + "\n"


def known_run(run: str = A, epochs: int = 12, job: str = "mnist", t0: float = T0, overfit: float = 0.02) -> str:
    """Loss falls; val_loss bottoms out at epoch 9 and rises again, with a NaN at epoch 10.

    Keras bar text comes before each record.
    """
    text = rec("start", run, t0, job=job, params={"total": 650}, epochs=epochs)
    for i in range(epochs):
        metrics: dict[str, object] = {
            "loss": round(2.0 * math.exp(-i / 3) + 0.05, 4),
            "val_loss": round(1.8 * math.exp(-i / 3) + 0.1 + overfit * max(0, i - 7) ** 2, 4),
            "accuracy": round(0.5 + 0.45 * (1 - math.exp(-i / 2)), 4),
        }
        if i == 9:
            metrics["val_loss"] = "NaN"
        text += "7/7 ━━━━━━━━━━━━━━━━━━━━ 0s 3ms/step - loss: 0.5" + rec(
            "epoch",
            run,
            t0 + 10 * (i + 1),
            epoch=i + 1,
            elapsed_seconds=10.0 * (i + 1),
            metrics=metrics,
            params={"total": 650},
        )
    return text + rec("end", run, t0 + 10 * epochs + 1, status="ok", elapsed_seconds=10.0 * epochs + 0.5)


def golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("GOLDEN_UPDATE"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


def env(renderer: str, **extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NO_COLOR", "FORCE_COLOR", "ANSI_COLORS_DISABLED", "TERM", "COLUMNS", "LINES")
    }
    return {**base, "PYTHONIOENCODING": ENCODINGS[renderer], "TZ": "UTC", **extra}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("curves") / "runs.db"
    for text in (known_run(), known_run(B, epochs=8, job="cifar", t0=T0 + 3600, overfit=0.05)):
        done = subprocess.run(
            [*SIDECAR, "--quiet", "--system-interval", "0", "--db", str(path)],
            input=text.encode(),
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    return path


def runs(history: Path, renderer: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNS, *args, "--db", str(history)],
        capture_output=True,
        text=True,
        encoding=ENCODINGS[renderer],
        timeout=120,
        env=env(renderer, **extra),
    )


@pytest.mark.parametrize("renderer", ["unicode", "ascii"])
def test_summary_draws_a_sparkline_per_metric(renderer: str) -> None:
    done = subprocess.run(
        [*SIDECAR, "--quiet", "--no-history", "--system-interval", "0"],
        input=known_run().encode(),
        capture_output=True,
        timeout=60,
        env=env(renderer),
    )
    assert done.returncode == 0
    golden(f"summary-{renderer}.txt", done.stderr.decode(ENCODINGS[renderer]))


@pytest.mark.parametrize("renderer", ["unicode", "ascii"])
def test_show_draws_a_sparkline_per_metric(history: Path, renderer: str) -> None:
    done = runs(history, renderer, "show", A)
    assert (done.returncode, done.stderr) == (0, "")
    golden(f"show-{renderer}.txt", done.stdout)


@pytest.mark.parametrize("renderer", ["unicode", "ascii"])
def test_plot_draws_one_line_per_run_and_metric(history: Path, renderer: str) -> None:
    done = runs(history, renderer, "plot", A, "--width", "72", "--height", "20")
    assert (done.returncode, done.stderr) == (0, "")
    golden(f"plot-{renderer}.txt", done.stdout)
    two = runs(
        history,
        renderer,
        "plot",
        A,
        B,
        "--metric",
        "val_loss",
        "--metric",
        "accuracy",
        "--width",
        "72",
        "--height",
        "20",
    )
    assert (two.returncode, two.stderr) == (0, "")
    golden(f"plot-two-runs-{renderer}.txt", two.stdout)


def test_plot_json_gives_a_script_the_same_lines(history: Path) -> None:
    lines = json.loads(runs(history, "unicode", "plot", A, B, "--metric", "val_loss", "--json").stdout)
    assert [(line["run"], line["metric"], line["epochs"]) for line in lines] == [
        (A, "val_loss", list(range(1, 13))),
        (B, "val_loss", list(range(1, 9))),
    ]
    assert lines[0]["values"][8:10] == [0.2451, "NaN"]


def test_plot_output_writes_a_png_and_an_svg(history: Path, tmp_path: Path) -> None:
    png, svg = tmp_path / "curves.png", tmp_path / "curves.svg"
    for path in (png, svg):
        done = runs(history, "unicode", "plot", A, B, "--output", str(path))
        assert (done.returncode, done.stdout, done.stderr) == (0, f"wrote {path}\n", "")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR" and (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (
        800,
        450,
    )
    assert len(data) > 20_000
    from matplotlib.image import imread  # the PNG decodes: 450 rows of 800 RGBA pixels, not all one colour

    pixels = imread(png)
    assert pixels.shape == (450, 800, 4) and pixels.min() < pixels.max()
    text = svg.read_text(encoding="utf-8")
    assert text.startswith("<?xml") and "<svg" in text and f"{A} val_loss" in text and f"{B} loss" in text


def test_plot_output_without_matplotlib_says_how_to_get_it(history: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    done = runs(history, "unicode", "plot", A, "--output", str(tmp_path / "x.png"), PYTHONPATH=str(shadow.parent))
    assert (done.returncode, done.stdout) == (2, "")
    assert (
        done.stderr
        == "gangplank-runs: --output needs matplotlib, an optional extra: pip install 'gangplank-sidecar[plot]'\n"
    )
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output", "x.pdf"], "gangplank-runs: --output: x.pdf: expected a .png or .svg file\n"),
        (["--metric", "nope"], f"gangplank-runs: no finite values of nope in run {A}\n"),
        (
            ["--width", "10"],
            "gangplank-runs: a chart needs at least 20 columns and 8 rows, not 10x22 (--width, --height)\n",
        ),
    ],
)
def test_plot_refuses_what_it_cannot_draw(history: Path, args: list[str], message: str) -> None:
    done = runs(history, "unicode", "plot", A, *args)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message)


def test_colours_follow_the_terminal_no_color_and_the_option(history: Path) -> None:
    forced = runs(history, "unicode", "show", A, FORCE_COLOR="1").stdout
    assert "  status     \x1b[32mok\x1b[0m\n" in forced
    assert "\x1b[1m\x1b[32m0.9482\x1b[0m" in forced  # the best accuracy, in its row and in the best row
    assert "\x1b[33m  check overfitting (K504, warning, epoch 12, firing)" in forced
    assert (
        runs(history, "unicode", "show", A).stdout
        == runs(history, "unicode", "show", A, FORCE_COLOR="1", NO_COLOR="1").stdout
    )
    assert (
        runs(history, "unicode", "show", A, "--no-color", FORCE_COLOR="1").stdout
        == runs(history, "unicode", "show", A).stdout
    )
    assert "\x1b[" not in runs(history, "unicode", "show", A).stdout


def test_a_terminal_gets_colours_without_being_asked(history: Path) -> None:
    master, slave = pty.openpty()
    tty.setraw(slave)
    argv = [*RUNS, "list", "--db", str(history)]
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, env=env("unicode", TERM="xterm-256color")
    )
    os.close(slave)
    screen = b""
    while chunk := _read(master):
        screen += chunk
    os.close(master)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert screen.count(b" \x1b[32mok\x1b[0m ") == 2
    assert runs(history, "unicode", "list").stdout.count(" ok ") == 2


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except OSError:  # EIO: the writer is gone
        return b""


def test_a_series_keeps_curves_of_a_bounded_number_of_metrics() -> None:
    series = RunState(job="j", phase="train", run="r", started=0.0)
    for epoch in (1, 2):
        series.observe({f"m{i}": float(i * epoch) for i in range(MAX_CURVES + 10)}, epoch)
    assert len(series.curves) == MAX_CURVES
    assert [(b.first, b.total) for b in series.curves["m3"].buckets] == [(1, 3.0), (2, 6.0)]
    assert series.snapshot().curves["m3"].buckets == series.curves["m3"].buckets


def test_a_curve_stays_bounded_and_keeps_its_extremes() -> None:
    curve = Curve()
    for epoch in range(1, 10_001):
        curve.add(epoch, float(10_001 - epoch) if epoch != 5000 else math.inf)
    assert len(curve.buckets) <= MAX_BUCKETS
    assert sum(b.size for b in curve.buckets) == 10_000
    assert (curve.buckets[0].first, curve.buckets[-1].last) == (1, 10_000)
    assert (min(b.low for b in curve.buckets), max(b.high for b in curve.buckets)) == (1.0, 10_000.0)
    line = sparkline(curve, 10_000, UNICODE, width=40)
    assert len(line) == 40 and line[0] == "█" and line[-1] == "●" and line.count("x") == 1


def test_sparkline_levels_and_marks() -> None:
    curve = Curve.of([(1, 0.0), (2, 1.0), (3, 2.0), (4, 3.0), (5, 4.0), (6, math.nan), (7, 5.0), (8, 6.0), (9, 7.0)])
    assert sparkline(curve, 1, UNICODE) == "●▂▃▄▅x▆▇█"
    assert sparkline(curve, None, ASCII) == "_..--x~~^"
    assert curve_lines({"loss": curve, "one": Curve.of([(1, 1.0)])}, {"loss": 1}, ASCII) == [
        "loss  *..--x~~^  min 0  max 7  best @1"
    ]


def _reference_add(curve: Curve, epoch: int, value: float) -> None:
    """Curve.add as first written, for one value an epoch: every value a Bucket, merged with Bucket.merge."""
    from gangplank_sidecar.curve import Bucket

    point = Bucket.of(epoch, value)
    last = curve.buckets[-1] if curve.buckets else None
    if last is not None and last.size < curve.span:
        curve.buckets[-1] = last.merge(point)
    else:
        if len(curve.buckets) == MAX_BUCKETS:
            curve.buckets = [a.merge(b) for a, b in zip(curve.buckets[::2], curve.buckets[1::2])]
            curve.span *= 2
        curve.buckets.append(point)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 1, 1, 2]),
            st.one_of(st.floats(), st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1e308])),
        ),
        max_size=700,
    )
)
@example([(1, 1.0)] * MAX_BUCKETS + [(1, -0.0), (1, math.nan)])  # -0.0 + 0.0 is 0.0, as Bucket.merge sums
@example([(1, 1.0)] * 300 + [(0, 5.0), (0, math.nan), (1, 2.0), (0, -1.0)])  # a repeat in a bucket of many epochs
def test_the_fast_add_builds_the_same_buckets_as_bucket_merge(steps: list[tuple[int, float]]) -> None:
    """Values of one epoch (a step of 0) replace each other, however full the curve is: the buckets are
    those of each epoch's last value, added with Bucket.merge."""
    fast, reference, epoch, last = Curve(), Curve(), 0, {}
    for step, value in steps:
        epoch += step
        fast.add(epoch, value)
        last[epoch] = value
    for epoch, value in last.items():
        _reference_add(reference, epoch, value)
    assert fast.span == reference.span
    assert [tuple(map(repr, b)) for b in fast.buckets] == [tuple(map(repr, b)) for b in reference.buckets]
