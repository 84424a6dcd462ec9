"""`gangplank-runs`: list, show, compare, export and search, as tables for a person and as JSON.

Two made-up runs with fixed times (TZ=UTC) give exact tables; a real Keras fit through the
sidecar gives exact exports of what the emitter wrote.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import ROOT, SIDECAR, keras_env
from gangplank_sidecar.runs import search

RUNS = [sys.executable, "-m", "gangplank_sidecar.runs"]
T0 = 1764065730.0  # 2025-11-25 10:15:30 UTC
A, B = "20251125-101530-aaaa", "20251125-113000-bbbb"


def rec(event: str, run: str, phase: str = "train", at: float = T0, **fields: object) -> str:
    return json.dumps({"gangplank": 1, "event": event, "run": run, "phase": phase, "time": at, **fields}) + "\n"


def ep(run: str, n: int, metrics: dict, t0: float = T0) -> str:
    return rec("epoch", run, at=t0 + 10 * n, epoch=n, elapsed_seconds=10.0 * n, metrics=metrics, params={"total": 650})


def stream_a() -> str:
    text = rec("start", A, job="mnist", params={"total": 650}, epochs=4, framework="keras-3.6.0/jax")
    for i, (loss, val) in enumerate([(0.9, 0.8), (0.5, 0.45), (0.3, 0.47), (0.2, 0.52)]):
        text += ep(A, i + 1, {"loss": loss, "val_loss": val, "accuracy": 0.7 + 0.05 * i})
    text += rec("end", A, at=T0 + 41, status="ok", elapsed_seconds=40.5)
    text += rec("start", A, phase="test", at=T0 + 42, params={"total": 650})
    text += rec(
        "evaluate",
        A,
        phase="test",
        at=T0 + 43,
        elapsed_seconds=0.75,
        metrics={"loss": 0.5, "accuracy": 0.81},
        params={"total": 650},
    )
    return text + rec("end", A, phase="test", at=T0 + 43, status="ok", elapsed_seconds=0.75)


def stream_b() -> str:
    t1 = T0 + 3600
    text = rec("start", B, job="cifar", at=t1, params={"total": 650}, epochs=5)
    for i, (loss, val) in enumerate([(2.0, 1.9), (1.5, 1.4), ("NaN", "NaN")]):
        text += ep(B, i + 1, {"loss": loss, "val_loss": val}, t0=t1)
    return text + rec("end", B, at=t1 + 31, status="failed", elapsed_seconds=30.0)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "runs.db"
    for text, args in ((stream_a(), ["--label", "team=vision"]), (stream_b(), [])):
        done = subprocess.run(
            [*SIDECAR, "--quiet", "--system-interval", "0", "--db", str(path), *args],
            input=text.encode(),
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    return path


def runs(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNS, *args, "--db", str(path)], capture_output=True, text=True, timeout=60, env={**os.environ, "TZ": "UTC"}
    )


def out(path: Path, *args: str) -> str:
    done = runs(path, *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def test_list(history: Path) -> None:
    assert out(history, "list") == (
        "RUN                   PHASE  JOB    STATUS  STARTED              EPOCHS  ELAPSED  LABELS\n"
        "20251125-101530-aaaa  train  mnist  ok      2025-11-25 10:15:30       4   40.5 s  team=vision\n"
        "20251125-101530-aaaa  test   mnist  ok      2025-11-25 10:16:12            0.8 s  team=vision\n"
        "20251125-113000-bbbb  train  cifar  failed  2025-11-25 11:15:30       3   30.0 s\n"
    )


def test_list_filters_and_sorts(history: Path) -> None:
    assert (
        out(history, "list", "--job", "cifar")
        == out(history, "list", "--status", "failed")
        == out(history, "list", "--since", "2025-11-25 11:00")
        == (
            "RUN                   PHASE  JOB    STATUS  STARTED              EPOCHS  ELAPSED\n"
            "20251125-113000-bbbb  train  cifar  failed  2025-11-25 11:15:30       3   30.0 s\n"
        )
    )
    assert out(history, "list", "--sort", "val_loss") == (
        "RUN                   PHASE  JOB    STATUS  STARTED              EPOCHS  ELAPSED  LABELS       BEST val_loss\n"
        "20251125-101530-aaaa  train  mnist  ok      2025-11-25 10:15:30       4   40.5 s  team=vision           0.45\n"
        "20251125-113000-bbbb  train  cifar  failed  2025-11-25 11:15:30       3   30.0 s                         1.4\n"
    )
    assert out(history, "list", "--label", "team=vision", "--phase", "test").splitlines()[1].split() == [
        A,
        "test",
        "mnist",
        "ok",
        "2025-11-25",
        "10:16:12",
        "0.8",
        "s",
        "team=vision",
    ]
    assert out(history, "list", "--until", "2025-11-25") == "no runs\n"


def test_show(history: Path) -> None:
    assert out(history, "show", "20251125-1015") == (
        "run 20251125-101530-aaaa (train)\n"
        "  job        mnist\n"
        "  status     ok\n"
        "  started    2025-11-25 10:15:30\n"
        "  ended      2025-11-25 10:16:11\n"
        "  elapsed    40.5 s\n"
        "  epochs     4 of 4\n"
        "  params     650\n"
        "  framework  keras-3.6.0/jax\n"
        "  source     stdin\n"
        "  labels     team=vision\n"
        "\n"
        "     epoch  accuracy  loss  val_loss\n"
        "         1       0.7   0.9       0.8\n"
        "         2      0.75   0.5      0.45\n"
        "         3       0.8   0.3      0.47\n"
        "         4      0.85   0.2      0.52\n"
        "      best      0.85   0.2      0.45\n"
        "  at epoch         4     4         2\n"
        "\n"
        "  curves over epochs 1-4\n"
        "  accuracy  ▁▃▆●  min 0.7  max 0.85  best @4\n"
        "  loss      █▄▂●  min 0.2  max 0.9  best @4\n"
        "  val_loss  █●▁▂  min 0.45  max 0.8  best @2\n"
        "\n"
        "  checks: none fired\n"
        "\n"
        "run 20251125-101530-aaaa (test)\n"
        "  job        mnist\n"
        "  status     ok\n"
        "  started    2025-11-25 10:16:12\n"
        "  ended      2025-11-25 10:16:13\n"
        "  elapsed    0.8 s\n"
        "  params     650\n"
        "  source     stdin\n"
        "  labels     team=vision\n"
        "\n"
        "  epoch  accuracy  loss\n"
        "      -      0.81   0.5\n"
        "\n"
        "  checks: none fired\n"
    )


def test_show_defaults_to_the_latest_run_and_lists_its_checks(history: Path) -> None:
    assert (
        out(history, "show")
        == out(history, "show", B, "--phase", "train")
        == (
            "run 20251125-113000-bbbb (train)\n"
            "  job        cifar\n"
            "  status     failed\n"
            "  started    2025-11-25 11:15:30\n"
            "  ended      2025-11-25 11:16:01\n"
            "  elapsed    30.0 s\n"
            "  epochs     3 of 5\n"
            "  params     650\n"
            "  source     stdin\n"
            "\n"
            "     epoch  loss  val_loss\n"
            "         1     2       1.9\n"
            "         2   1.5       1.4\n"
            "         3   NaN       NaN\n"
            "      best   1.5       1.4\n"
            "  at epoch     2         2\n"
            "\n"
            "  curves over epochs 1-3\n"
            "  loss      █●x  min 1.5  max 2  best @2\n"
            "  val_loss  █●x  min 1.4  max 1.9  best @2\n"
            "\n"
            "  check non_finite (-, error, epoch 3, firing): non-finite loss=NaN, val_loss=NaN at epoch 3\n"
        )
    )


def test_compare(history: Path) -> None:
    assert out(history, "compare", A, B) == (
        "                     20251125-101530-aaaa  20251125-113000-bbbb\n"
        "phase                               train                 train\n"
        "job                                 mnist                 cifar\n"
        "status                                 ok                failed\n"
        "epochs                                  4                     3\n"
        "elapsed                            40.5 s                30.0 s\n"
        "params                                650                   650\n"
        "accuracy last                        0.85\n"
        "accuracy best (max)               0.85 @4\n"
        "loss last                             0.2                   NaN\n"
        "loss best (min)                    0.2 @4                1.5 @2\n"
        "val_loss last                        0.52                   NaN\n"
        "val_loss best (min)               0.45 @2                1.4 @2\n"
        "checks                                  -            non_finite\n"
    )


def test_export_csv_and_json(history: Path) -> None:
    assert out(history, "export", B, "--format", "csv") == "epoch,loss,val_loss\n1,2.0,1.9\n2,1.5,1.4\n3,NaN,NaN\n"
    assert json.loads(out(history, "export", B, "--format", "json")) == [
        {"epoch": 1, "loss": 2.0, "val_loss": 1.9},
        {"epoch": 2, "loss": 1.5, "val_loss": 1.4},
        {"epoch": 3, "loss": "NaN", "val_loss": "NaN"},
    ]
    assert out(history, "export", A, "--phase", "test") == "epoch,accuracy,loss\n,0.81,0.5\n"


def test_search(history: Path) -> None:
    assert (
        out(history, "search", "val_loss<0.5 label.team=vision")
        == out(history, "search", "val_loss<0.5", "job=mnist")
        == (
            "RUN                   PHASE  JOB    STATUS  STARTED              EPOCHS  ELAPSED  LABELS\n"
            "20251125-101530-aaaa  train  mnist  ok      2025-11-25 10:15:30       4   40.5 s  team=vision\n"
        )
    )
    assert [r["run"] for r in json.loads(out(history, "search", "status!=ok", "--json"))] == [B]
    assert [r["phase"] for r in json.loads(out(history, "search", "accuracy>=0.81", "--json"))] == ["train", "test"]


def test_json_for_a_script(history: Path) -> None:
    listed = json.loads(out(history, "list", "--json"))
    assert listed[2] == {
        "run": B,
        "phase": "train",
        "job": "cifar",
        "labels": {},
        "status": "failed",
        "started": T0 + 3600,
        "ended": T0 + 3631,
        "epochs": 3,
        "planned_epochs": 5,
        "elapsed": 30.0,
        "params": 650,
        "framework": None,
        "source": "stdin",
        "last": {"loss": "NaN", "val_loss": "NaN"},
        "best": {"loss": {"value": 1.5, "epoch": 2}, "val_loss": {"value": 1.4, "epoch": 2}},
        "checks": ["non_finite"],
    }
    (shown,) = json.loads(out(history, "show", B, "--json"))
    assert shown["rows"][0] == {"epoch": 1, "loss": 2.0, "val_loss": 1.9}
    assert shown["checks"] == [
        {
            "name": "non_finite",
            "code": "",
            "severity": "error",
            "message": "non-finite loss=NaN, val_loss=NaN at epoch 3",
            "first_epoch": 3,
            "last_epoch": 3,
            "fired": 1,
        }
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "20251125"], 2, f"gangplank-runs: '20251125' matches 2 runs: {A}, {B}\n"),
        (["show", "nope"], 1, "gangplank-runs: no run 'nope'\n"),
        (["search", "val_loss<abc"], 2, "gangplank-runs: bad search term 'val_loss<abc': 'abc' is not a number\n"),
        (["search", "job<mnist"], 2, "gangplank-runs: bad search term 'job<mnist': job takes = or !=\n"),
        (
            ["list", "--since", "yesterday"],
            2,
            "gangplank-runs: bad date 'yesterday': expected YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]\n",
        ),
        (
            ["export", B, "--format", "xml"],
            2,
            "gangplank-runs: argument --format: invalid choice: 'xml' (choose from 'csv', 'json')\n",
        ),
    ],
)
def test_errors_are_one_line(history: Path, args: list[str], code: int, message: str) -> None:
    done = runs(history, *args)
    assert (done.returncode, done.stdout, done.stderr) == (code, "", message)


def test_a_missing_history(tmp_path: Path) -> None:
    done = runs(tmp_path / "none.db", "list")
    assert (done.returncode, done.stderr) == (1, f"gangplank-runs: no run history at {tmp_path / 'none.db'}\n")
    assert not (tmp_path / "none.db").exists()


def test_a_real_keras_run_is_shown_and_exported_exactly(tmp_path: Path) -> None:
    """train_digits.py | tee | gangplank-sidecar --db, then the history equals what the emitter wrote."""
    path, tee = tmp_path / "runs.db", tmp_path / "train.out"
    train = [sys.executable, str(ROOT / "tests/scripts/train_digits.py"), str(tmp_path / "expected.json")]
    pipeline = (
        f"{shlex.join(train)} | tee {shlex.quote(str(tee))} | "
        f"{shlex.join([*SIDECAR, '--quiet', '--system-interval', '0', '--db', str(path)])}"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, env=keras_env(TZ="UTC"), timeout=180
    )
    assert done.returncode == 0, done.stderr
    records = [
        json.loads(line[line.index('{"gangplank":') :])
        for line in tee.read_text().splitlines()
        if '{"gangplank":' in line
    ]
    epochs = [r for r in records if r["event"] == "epoch"]
    (evaluate,) = [r for r in records if r["event"] == "evaluate"]
    run = epochs[0]["run"]
    keys = sorted(epochs[0]["metrics"])
    expected_csv = io.StringIO()
    csv.writer(expected_csv, lineterminator="\n").writerows(
        [["epoch", *keys], *([r["epoch"], *(repr(r["metrics"][k]) for k in keys)] for r in epochs)]
    )
    assert out(path, "export", run) == expected_csv.getvalue()
    assert json.loads(out(path, "export", run, "--format", "json", "--phase", "test")) == [
        {"epoch": None, **evaluate["metrics"]}
    ]
    shown = out(path, "show", run, "--phase", "train").splitlines()
    table = shown[shown.index("") + 1 :]
    width = [max(len(k), *(len(f"{r['metrics'][k]:.6g}") for r in epochs)) for k in keys]
    assert table[0] == "  " + "   epoch  " + "  ".join(k.rjust(w) for k, w in zip(keys, width))
    for line, r in zip(table[1:4], epochs):
        assert line == "  " + f"{r['epoch']:>8}  " + "  ".join(
            f"{r['metrics'][k]:.6g}".rjust(w) for k, w in zip(keys, width)
        )
    assert shown[1:3] == ["  job        gangplank", "  status     ok"]
    assert shown[-1] == "  checks: none fired"
    listed = json.loads(out(path, "list", "--json"))
    assert [(r["run"], r["phase"], r["status"], r["epochs"], r["params"]) for r in listed] == [
        (run, "train", "ok", 3, epochs[0]["params"]["total"]),
        (run, "test", "ok", None, epochs[0]["params"]["total"]),
    ]


NAMES = st.from_regex(r"[a-z_][a-z0-9_.]{0,10}", fullmatch=True).filter(
    lambda n: n not in search.TEXT_FIELDS and not n.startswith("label.")
)


@given(NAMES, st.sampled_from(["<", "<=", ">", ">=", "=", "!="]), st.floats(allow_nan=False, allow_infinity=False))
def test_search_parses_every_metric_term(name: str, op: str, number: float) -> None:
    assert search.parse(f"{name}{op}{number!r}  job=mnist") == [
        search.Term(name, op, repr(number)),
        search.Term("job", "=", "mnist"),
    ]


@given(st.text(max_size=40))
def test_search_rejects_anything_else_with_one_line(query: str) -> None:
    try:
        terms = search.parse(query)
    except ValueError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("bad search term ")
    else:
        assert len(terms) == len(query.split())
