"""The daily CronJob that prunes the Pushgateway: a valid Kubernetes 1.33 object whose command works.

kubernetes-validate checks it strictly (no unknown field) against the 1.33 schema, which the
package ships (no network). The container's own arguments and environment are then run against
the real gateway: of a stale group and a fresh one, only the stale one goes.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import SIDECAR, Pushgateway
from gangplank_sidecar.prune import build_parser, duration

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "kubernetes" / "prune-cronjob.yaml"


@pytest.fixture(scope="module")
def cronjob() -> dict:
    (document,) = list(yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")))
    return document


def container(cronjob: dict) -> dict:
    (found,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return found


def test_the_cronjob_passes_strict_schema_validation_for_kubernetes_1_33(cronjob: dict) -> None:
    assert kubernetes_validate.validate(cronjob, "1.33.0", strict=True) == "1.33"
    misspelt = {**cronjob, "spec": {**cronjob["spec"], "concurencyPolicy": "Forbid"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, "1.33.0", strict=True)


def test_it_runs_daily_one_at_a_time(cronjob: dict) -> None:
    assert (cronjob["apiVersion"], cronjob["kind"]) == ("batch/v1", "CronJob")
    spec = cronjob["spec"]
    minute, hour, *every = spec["schedule"].split()
    assert (0 <= int(minute) < 60, 0 <= int(hour) < 24, every) == (True, True, ["*", "*", "*"])
    assert (spec["timeZone"], spec["concurrencyPolicy"]) == ("Etc/UTC", "Forbid")
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_its_arguments_are_a_prune_that_deletes_stale_groups_of_named_jobs(cronjob: dict) -> None:
    args = container(cronjob)["args"]
    assert args[0] == "prune"
    parsed = build_parser().parse_args(args[1:])
    assert (duration(parsed.older_than), parsed.job, parsed.yes) == (7 * 86400, "mnist.*", True)


def test_it_uses_the_sidecars_image_gateway_and_credentials(cronjob: dict) -> None:
    (job,) = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "job.yaml").read_text(encoding="utf-8")))
    (sidecar,) = job["spec"]["template"]["spec"]["initContainers"]
    prune = container(cronjob)
    assert prune["image"] == sidecar["image"]
    assert prune["env"] == [
        e
        for e in sidecar["env"]
        if e["name"] in {"GANGPLANK_PUSHGATEWAY", "GANGPLANK_BASIC_AUTH_USER", "GANGPLANK_BASIC_AUTH_PASSWORD_FILE"}
    ]
    volumes = {v["name"]: v for v in cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["pushgateway-credentials"] == next(
        v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "pushgateway-credentials"
    )
    assert prune["securityContext"] == sidecar["securityContext"]


def test_the_containers_command_prunes_the_real_gateway(
    cronjob: dict, pushgateway: Pushgateway, tmp_path: Path
) -> None:
    """Its args and environment as Kubernetes would pass them.

    The gateway's URL and the password file are the test's.
    """
    for path in (
        "/metrics/job/mnist/phase/train",
        "/metrics/job/mnist-big/phase/train",
        "/metrics/job/cifar/phase/train",
    ):
        request = urllib.request.Request(pushgateway.url + path, data=b"gangplank_train_loss 0.5\n", method="PUT")
        urllib.request.urlopen(request, timeout=5).close()
    (tmp_path / "password").write_text("not-checked-by-this-gateway\n")
    prune = container(cronjob)
    env = {e["name"]: e.get("value", "trainer") for e in prune["env"]}
    env |= {"GANGPLANK_PUSHGATEWAY": pushgateway.url, "GANGPLANK_BASIC_AUTH_PASSWORD_FILE": str(tmp_path / "password")}
    args = [a if a != "7d" else "1ms" for a in prune["args"]]  # every group is stale, only the job regex chooses
    done = subprocess.run([*SIDECAR, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    assert sorted(line.split("  ")[-1] for line in done.stdout.splitlines()) == [
        "job=mnist phase=train",
        "job=mnist-big phase=train",
    ]
    assert {k[0]: dict(k[1])["job"] for k in pushgateway.gangplank()} == {"gangplank_train_loss": "cifar"}
