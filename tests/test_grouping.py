"""Grouping keys: whatever a job name or label value holds, the push lands in its own group.

``/``, ``.``, ``..``, ``@``, spaces, unicode and empty values go in the gateway's base64 form;
checked against the real Pushgateway, through the sidecar and by property.
"""

from __future__ import annotations

import json
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from conftest import SIDECAR, Pushgateway, start_pushgateway
from gangplank_sidecar.delivery import TransportConfig
from gangplank_sidecar.sinks.pushgateway import group_path
from gangplank_sidecar.sinks.transport import Transport

NASTY = [
    "a/b",
    "",
    " ",
    "x y",
    "é☃ 中",
    "a@b",
    "@base64",
    ".",
    "..",
    "../job/other",
    "%2F",
    "a+b",
    "a?b#c",
    "job/x/phase/test",
    "=",
    "a\\b",
]


def groups(gateway: Pushgateway, name: str) -> dict[float, dict[str, str]]:
    """Each sample's value -> the labels of the group it landed in."""
    return {v: dict(ls) for (n, ls), v in gateway.samples().items() if n == name}


def test_unusual_job_names_and_label_values_land_in_their_own_group(pushgateway: Pushgateway) -> None:
    jobs = [j for j in NASTY if j.strip()]  # a job name must not be blank
    lines = "".join(
        json.dumps(
            {
                "gangplank": 1,
                "event": "start",
                "run": f"r{i}",
                "phase": "train",
                "job": job,
                "time": 1.0,
                "params": {"total": 1},
            }
        )
        + "\n"
        + json.dumps(
            {
                "gangplank": 1,
                "event": "epoch",
                "run": f"r{i}",
                "phase": "train",
                "time": 1.0,
                "epoch": i,
                "elapsed_seconds": 1.0,
                "metrics": {"loss": 1.0},
                "params": {"total": 1},
            }
        )
        + "\n"
        for i, job in enumerate(jobs, start=1)
    )
    args = ["--pushgateway", pushgateway.url, "--label", "team=a/b c@d", "--system-interval", "0", "--quiet"]
    done = subprocess.run([*SIDECAR, *args], input=lines.encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    landed = groups(pushgateway, "gangplank_train_epochs_count")
    assert landed == {
        float(i): {"job": job, "phase": "train", "team": "a/b c@d", "instance": ""}
        for i, job in enumerate(jobs, start=1)
    }


def test_label_values_through_the_command_line(pushgateway: Pushgateway) -> None:
    teams = ["a/b", "", "..", "é☃ 中@x y"]
    for i, team in enumerate(teams, start=1):
        line = (
            json.dumps(
                {
                    "gangplank": 1,
                    "event": "epoch",
                    "run": "r",
                    "phase": "train",
                    "time": 1.0,
                    "epoch": i,
                    "elapsed_seconds": 1.0,
                    "metrics": {"loss": 1.0},
                    "params": {"total": 1},
                }
            )
            + "\n"
        )
        args = [
            "--pushgateway",
            pushgateway.url,
            "--job",
            "j/k",
            "--label",
            f"team={team}",
            "--system-interval",
            "0",
            "--quiet",
        ]
        done = subprocess.run([*SIDECAR, *args], input=line.encode(), capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
    landed = groups(pushgateway, "gangplank_train_epochs_count")
    assert landed == {
        float(i): {"job": "j/k", "phase": "train", "team": team, "instance": ""}
        for i, team in enumerate(teams, start=1)
    }


def test_group_path_encodings() -> None:
    assert group_path("mnist", {"phase": "train"}) == "/metrics/job/mnist/phase/train"
    assert group_path("a/b", {"phase": "train", "team": ""}) == "/metrics/job@base64/YS9i/phase/train/team@base64/="
    assert group_path("..", {"phase": "x y"}) == "/metrics/job@base64/Li4=/phase@base64/eCB5"


_gateway: Pushgateway | None = None
_transport = Transport(TransportConfig())
_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(job=_values.filter(str.strip), value=_values)
def test_any_value_round_trips_through_the_real_gateway(job: str, value: str) -> None:
    global _gateway
    if _gateway is None:
        _gateway = start_pushgateway()
    registry = CollectorRegistry()
    Gauge("probe", "probe", registry=registry).set(1)
    path = group_path(job, {"phase": "train", "team": value})
    headers = [("Content-Type", "text/plain; version=0.0.4")]
    _transport.send(_gateway.url + path, "PUT", generate_latest(registry), headers)
    try:
        assert list(groups(_gateway, "probe").values()) == [
            {"job": job, "phase": "train", "team": value, "instance": ""}
        ]
    finally:
        _transport.send(_gateway.url + path, "DELETE", b"", headers)


def teardown_module() -> None:
    if _gateway is not None:
        _gateway.stop()
