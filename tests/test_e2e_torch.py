"""End to end: a real transformers Trainer and real Lightning fits on CPU, piped into gangplank-sidecar
and the real gateway; the gateway shows the frameworks' own values to the last bit."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, SIDECAR, keras_env, start_pushgateway, value
from gangplank_emitter import HISTOGRAM_WEIGHT_BUCKETS_0_3
from gangplank_sidecar.parsers import protocol

BOUNDS = [*(f"{b:g}" for b in HISTOGRAM_WEIGHT_BUCKETS_0_3), "+Inf"]  # as the gateway prints them


def pipeline(
    tmp_path, script: str, gateway_url: str, job: str, **env: str
) -> tuple[dict, list[dict], subprocess.CompletedProcess]:
    """``python tests/scripts/SCRIPT | tee train.out | gangplank-sidecar --job JOB``, as a user would type it."""
    expected, tee = tmp_path / "expected.json", tmp_path / "train.out"
    command = [sys.executable, str(ROOT / "tests/scripts" / script), str(expected)]
    sidecar = [*SIDECAR, "--pushgateway", gateway_url, "--job", job]
    line = f"{shlex.join(command)} | tee {shlex.quote(str(tee))} | {shlex.join(sidecar)}"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", line], capture_output=True, env=keras_env(**env), timeout=240
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    marker = b'{"gangplank":'
    records = [json.loads(x[x.index(marker) :]) for x in tee.read_bytes().splitlines() if marker in x]
    return json.loads(expected.read_text()), records, done


@pytest.fixture(scope="module")
def gateway(request):
    started = start_pushgateway()
    request.addfinalizer(started.stop)
    return started


@pytest.fixture(scope="module")
def hf(gateway, tmp_path_factory):
    """One Trainer fit (3 epochs, evaluation each epoch) and one trainer.evaluate() after it."""
    return pipeline(tmp_path_factory.mktemp("hf"), "train_transformers.py", gateway.url, "hf")


@pytest.fixture(scope="module")
def pl(gateway, tmp_path_factory):
    """One Lightning fit (3 epochs), then trainer.validate() and trainer.test() (the ``pytorch_lightning``
    package's Emitter is run in tests/test_torch_emitters.py)."""
    return "lightning", *pipeline(tmp_path_factory.mktemp("pl"), "train_lightning.py", gateway.url, "lightning")


def test_transformers_train_metrics_equal_log_history(gateway, hf) -> None:
    expected, _, _ = hf
    samples = gateway.gangplank()
    train = {"job": "hf", "phase": "train"}
    in_fit = expected["log_history"][:-2]  # the run's summary and the evaluate after training follow
    last_train = [entry for entry in in_fit if "loss" in entry][-1]
    last_eval = [entry for entry in in_fit if "eval_loss" in entry][-1]
    for key in ("loss", "grad_norm", "learning_rate"):
        assert value(samples, f"gangplank_train_{key}", **train) == last_train[key]
    for key in ("loss", "runtime", "samples_per_second"):
        assert value(samples, f"gangplank_train_val_{key}", **train) == last_eval[f"eval_{key}"]
    assert value(samples, "gangplank_train_epochs_count", **train) == 3
    assert value(samples, "gangplank_train_model_parameters_count", **train) == expected["params"]
    names = {name for name, _ in samples}
    assert not names & {
        "gangplank_train_eval_loss",
        "gangplank_train_train_loss",
        "gangplank_train_epoch",
        "gangplank_train_step",
    }


def test_transformers_epoch_records_carry_each_epochs_own_values(hf) -> None:
    expected, records, _ = hf
    epochs = [r for r in records if r["event"] == "epoch"]
    history = expected["log_history"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert [r["metrics"]["loss"] for r in epochs] == [e["loss"] for e in history if "loss" in e]
    assert [r["metrics"]["val_loss"] for r in epochs] == [e["eval_loss"] for e in history if "eval_loss" in e][:3]
    assert [(r["event"], r["phase"]) for r in records if r["event"] != "epoch"] == [
        ("start", "train"),
        ("end", "train"),
        ("start", "test"),
        ("evaluate", "test"),
        ("end", "test"),
    ]
    assert records[0]["epochs"] == 3 and records[0]["framework"].startswith("transformers-")


def test_transformers_histogram_equals_numpy_brute_force(gateway, hf) -> None:
    expected, _, _ = hf
    samples = gateway.gangplank()
    train = {"job": "hf", "phase": "train"}
    assert [value(samples, "gangplank_train_model_weights_bucket", le=le, **train) for le in BOUNDS] == expected[
        "counts"
    ]
    assert value(samples, "gangplank_train_model_weights_sum", **train) == pytest.approx(expected["sum"], rel=1e-12)


def test_transformers_evaluate_lands_in_the_test_phase(gateway, hf) -> None:
    expected, _, _ = hf
    samples = gateway.gangplank()
    test = {"job": "hf", "phase": "test"}
    assert value(samples, "gangplank_test_loss", **test) == expected["evaluate"]["eval_loss"]
    assert value(samples, "gangplank_test_runtime", **test) == expected["evaluate"]["eval_runtime"]
    assert value(samples, "gangplank_test_model_parameters_count", **test) == expected["params"]
    assert [value(samples, "gangplank_test_model_weights_bucket", le=le, **test) for le in BOUNDS] == expected["counts"]
    assert not [name for name, _ in samples if name in ("gangplank_test_epochs_count", "gangplank_test_eval_loss")]


def test_lightning_train_metrics_equal_callback_metrics(gateway, pl) -> None:
    job, expected, records, _ = pl
    samples = gateway.gangplank()
    train = {"job": job, "phase": "train"}
    assert sorted(expected["fit"]) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for key, v in expected["fit"].items():
        assert value(samples, f"gangplank_train_{key}", **train) == v
    assert value(samples, "gangplank_train_epochs_count", **train) == 3
    assert value(samples, "gangplank_train_model_parameters_count", **train) == expected["params"]
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [1, 2, 3]
    assert records[0]["framework"].startswith("lightning-")


def test_lightning_histogram_equals_numpy_brute_force(gateway, pl) -> None:
    job, expected, _, _ = pl
    samples = gateway.gangplank()
    train = {"job": job, "phase": "train"}
    assert [value(samples, "gangplank_train_model_weights_bucket", le=le, **train) for le in BOUNDS] == expected[
        "counts"
    ]
    assert value(samples, "gangplank_train_model_weights_count", **train) == expected["params"]
    assert value(samples, "gangplank_train_model_weights_sum", **train) == pytest.approx(expected["sum"], rel=1e-12)


def test_lightning_validate_and_test_land_in_the_test_phase(gateway, pl) -> None:
    job, expected, records, _ = pl
    samples = gateway.gangplank()
    test = {"job": job, "phase": "test"}
    for key, v in {**expected["validate"], **expected["test"]}.items():
        assert value(samples, f"gangplank_test_{key}", **test) == v
    assert not [name for name, _ in samples if name == "gangplank_test_epochs_count"]
    assert [r["event"] for r in records if r["phase"] == "test"] == ["start", "evaluate", "end"] * 2


def test_every_record_is_valid_v1_and_read_by_the_sidecar(gateway, hf, pl) -> None:
    samples = gateway.gangplank()
    for job, (_, records, _) in (("hf", hf), (pl[0], pl[1:])):
        assert all(protocol.parse(json.dumps(r).encode())[0].event == r["event"] for r in records)
        assert value(samples, "gangplank_sidecar_lines_total", format="gangplank", job=job, phase="sidecar") == len(
            records
        )
        assert value(samples, "gangplank_sidecar_pushes_total", result="failure", job=job, phase="sidecar") == 0
