"""Each example runs with its one README line and writes what the sidecar expects."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import SIDECAR, Pushgateway, value
from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MARKER = '{"gangplank":'
TRAIN_KEYS = ["accuracy", "loss", "val_accuracy", "val_loss"]
DIGITS_MLP_PARAMS = 64 * 32 + 32 + 32 * 10 + 10
MNIST_CONVNET_PARAMS = 104202


def run_example(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=240, env=env, cwd=cwd or EXAMPLES.parent
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def records(text: str) -> list[dict]:
    return [json.loads(line[line.index(MARKER) :]) for line in text.splitlines() if MARKER in line]


def events(recs: list[dict]) -> list[tuple[str, str]]:
    return [(r["event"], r["phase"]) for r in recs]


def test_plain_loop_reports_every_epoch_and_the_evaluate() -> None:
    recs = records(run_example("examples/plain_loop.py", "3"))
    assert events(recs) == [
        ("start", "train"),
        ("epoch", "train"),
        ("epoch", "train"),
        ("epoch", "train"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
        ("end", "train"),
    ]
    epochs = [r for r in recs if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert all(sorted(r["metrics"]) == TRAIN_KEYS for r in epochs)
    assert [r["weights"]["count"] for r in epochs] == [650, 650, 650]
    assert recs[0]["params"] == {"total": 650}
    assert (recs[0]["job"], recs[0]["epochs"], recs[0]["framework"]) == ("digits-numpy", 3, "numpy")
    losses = [r["metrics"]["loss"] for r in epochs]
    assert losses == sorted(losses, reverse=True)
    assert sorted(recs[5]["metrics"]) == ["accuracy", "loss"]
    assert [r["status"] for r in recs if r["event"] == "end"] == ["ok", "ok"]


def test_floydhub_print_writes_one_metric_per_line() -> None:
    lines = [json.loads(line) for line in run_example("examples/floydhub_print.py", "4").splitlines()]
    assert [(line["metric"], line["epoch"]) for line in lines] == [
        (metric, epoch) for epoch in range(1, 5) for metric in ("loss", "val_loss")
    ]
    assert all(sorted(line) == ["epoch", "metric", "value"] and isinstance(line["value"], float) for line in lines)


def floydhub_through_sidecar(*args: str) -> tuple[list[dict], str]:
    """``python examples/floydhub_print.py 4 | gangplank-sidecar --job floydhub ...``: the echoed lines and stderr."""
    training = subprocess.Popen([sys.executable, str(EXAMPLES / "floydhub_print.py"), "4"], stdout=subprocess.PIPE)
    sidecar = subprocess.run(
        [*SIDECAR, "--job", "floydhub", "--no-history", "--system-interval", "0", *args],
        stdin=training.stdout,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert training.stdout is not None
    training.stdout.close()
    assert (training.wait(30), sidecar.returncode) == (0, 0), sidecar.stderr
    return [json.loads(line) for line in sidecar.stdout.splitlines()], sidecar.stderr


def test_floydhub_print_shows_in_the_summary() -> None:
    lines, summary = floydhub_through_sidecar()
    last = {line["metric"]: line["value"] for line in lines if line["epoch"] == 4}
    first = {line["metric"]: line["value"] for line in lines if line["epoch"] == 1}
    assert first["val_loss"] > last["val_loss"]  # the best is the last epoch's: gradient descent converges
    run_line, header, loss, val_loss, curves, loss_curve, val_loss_curve = summary.splitlines()
    assert re.fullmatch(r"gangplank-sidecar: run \S+ \(job floydhub, train\): 4 epochs, no end record", run_line)
    assert header.split() == ["metric", "last", "best"]
    assert loss.split() == ["loss", f"{last['loss']:.6g}", f"{last['loss']:.6g}", "(epoch", "4)", "[min]"]
    assert val_loss.split() == [
        "val_loss",
        f"{last['val_loss']:.6g}",
        f"{last['val_loss']:.6g}",
        "(epoch",
        "4)",
        "[min]",
    ]
    assert curves == "  curves over epochs 1-4"
    assert loss_curve.split()[0] == "loss" and loss_curve.endswith(
        f"min {last['loss']:.4g}  max {first['loss']:.4g}  best @4"
    )
    assert (
        val_loss_curve.split()[0] == "val_loss"
        and len(val_loss_curve.split()[1]) == 4
        and val_loss_curve.split()[1][-1] == "●"
    )


def test_floydhub_print_reaches_the_gateway(pushgateway: Pushgateway) -> None:
    lines, _ = floydhub_through_sidecar("--pushgateway", pushgateway.url)
    samples = pushgateway.gangplank()
    train = {"job": "floydhub", "phase": "train"}
    for line in lines[-2:]:
        assert value(samples, f"gangplank_train_{line['metric']}", **train) == line["value"]
    assert value(samples, "gangplank_train_epochs_count", **train) == 4


def test_digits_demo_prints_records_that_match_the_keras_log() -> None:
    out = run_example("examples/digits.py", "2")
    recs = records(out)
    assert events(recs) == [
        ("start", "train"),
        ("epoch", "train"),
        ("epoch", "train"),
        ("end", "train"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
    ]
    assert recs[0]["params"] == {"total": DIGITS_MLP_PARAMS, "trainable": DIGITS_MLP_PARAMS}
    last = recs[2]
    assert (last["epoch"], sorted(last["metrics"]), last["weights"]["le"]) == (
        2,
        TRAIN_KEYS,
        HISTOGRAM_WEIGHT_BUCKETS_1_0,
    )
    assert last["weights"]["count"] == DIGITS_MLP_PARAMS
    # Keras' own verbose=2 line of the last epoch shows the same values, rounded to 4 digits.
    keras_line = [line for line in out.splitlines() if "val_loss:" in line][-1]
    shown = {key: float(value) for key, value in re.findall(r"(\w+): ([0-9.e+-]+)", keras_line)}
    assert shown == {key: round(last["metrics"][key], 4) for key in TRAIN_KEYS}
    assert sorted(recs[5]["metrics"]) == ["accuracy", "loss"]


def test_tail_file_writes_the_records_to_the_file_only(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "metrics.jsonl"
    out = run_example("examples/tail_file.py", str(path), "2")
    assert MARKER not in out
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert events(recs) == [
        ("start", "train"),
        ("epoch", "train"),
        ("epoch", "train"),
        ("end", "train"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
    ]
    assert (recs[0]["job"], recs[0]["params"]["total"]) == ("digits-file", DIGITS_MLP_PARAMS)


def test_mnist_train_then_test_offline(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    train = str(EXAMPLES / "mnist" / "train.py")
    test = str(EXAMPLES / "mnist" / "test.py")
    run_example(train, "--offline", "--epochs", "1", "--metrics-file", str(metrics), cwd=tmp_path)
    assert (tmp_path / "mnist_convnet.keras").is_file()
    run_example(test, "--offline", "--metrics-file", str(metrics), cwd=tmp_path)
    recs = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    assert events(recs) == [
        ("start", "train"),
        ("epoch", "train"),
        ("end", "train"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
    ]
    assert recs[0]["params"] == {"total": MNIST_CONVNET_PARAMS, "trainable": MNIST_CONVNET_PARAMS}
    assert (recs[0]["job"], recs[0]["epochs"], sorted(recs[1]["metrics"])) == ("mnist", 1, TRAIN_KEYS)
    evaluate = recs[4]
    assert (evaluate["weights"]["le"], evaluate["weights"]["count"]) == (
        HISTOGRAM_WEIGHT_BUCKETS_0_3,
        MNIST_CONVNET_PARAMS,
    )
    assert sorted(evaluate["metrics"]) == ["accuracy", "loss"]


def test_readme_has_one_line_for_every_example() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Dashboards and Kubernetes") :]
    section = section[: section.index("\n## ", 1)]
    commands = [line for line in section.splitlines() if re.match(r"(KERAS_BACKEND=jax )?python examples/", line)]
    scripts = [re.search(r"python (examples/\S+\.py)", line).group(1) for line in commands]
    # The runnable examples; the helper modules they share (mnist_data.py, _digits.py) have no main.
    runnable = [p for p in EXAMPLES.rglob("*.py") if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8")]
    shipped = sorted(str(p.relative_to(EXAMPLES.parent)) for p in runnable)
    assert len(shipped) == 8
    assert sorted(scripts) == shipped
    assert all("| gangplank-sidecar" in line or "& gangplank-sidecar" in line for line in commands)


def test_transformers_finetune_records_match_the_trainers_log() -> None:
    out = run_example("examples/transformers_finetune.py", "2")
    recs = records(out)
    assert events(recs) == [
        ("start", "train"),
        ("epoch", "train"),
        ("epoch", "train"),
        ("end", "train"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
    ]
    params = recs[0]["params"]
    assert params["total"] == params["trainable"] == recs[2]["weights"]["count"] and params["total"] > 0
    assert (recs[0]["job"], recs[0]["epochs"], recs[2]["weights"]["le"]) == (
        "tiny-bert",
        2,
        HISTOGRAM_WEIGHT_BUCKETS_1_0,
    )
    # The Trainer prints its own logs rounded to 4 significant digits: the same values.
    shown = [ast.literal_eval(line) for line in out.splitlines() if line.startswith("{'loss'")]
    assert [{k: s[k] for k in ("loss", "grad_norm", "learning_rate")} for s in shown] == [
        {k: f"{r['metrics'][k]:.4g}" for k in ("loss", "grad_norm", "learning_rate")} for r in recs[1:3]
    ]
    assert sorted(recs[5]["metrics"]) == ["loss", "runtime", "samples_per_second", "steps_per_second"]


def test_lightning_fit_validate_and_test_records() -> None:
    recs = records(run_example("examples/lightning_fit.py", "2"))
    assert events(recs) == [
        ("start", "train"),
        ("epoch", "train"),
        ("epoch", "train"),
        ("end", "train"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
    ]
    assert recs[0]["params"] == {"total": DIGITS_MLP_PARAMS, "trainable": DIGITS_MLP_PARAMS}
    assert [sorted(r["metrics"]) for r in recs[1:3]] == [TRAIN_KEYS, TRAIN_KEYS]
    assert recs[2]["weights"]["count"] == DIGITS_MLP_PARAMS
    assert recs[5]["metrics"] == {
        k: recs[2]["metrics"][k] for k in ("val_accuracy", "val_loss")
    }  # validate() after fit
    assert sorted(recs[8]["metrics"]) == ["test_accuracy", "test_loss"]
