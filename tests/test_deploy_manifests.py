"""The Dockerfile, the Kubernetes Job and the docker-compose file agree with each other and with the sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UID = 10001
METRICS_FILE = "/var/log/train/metrics.jsonl"


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        instruction, _, arguments = pending.partition(" ")
        out.append((instruction.upper(), " ".join(arguments.split())))
        pending = ""
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions((DEPLOY / "Dockerfile").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pod() -> dict:
    (job,) = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "job.yaml").read_text(encoding="utf-8")))
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    return job["spec"]["template"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def _env(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container["env"]}


def test_dockerfile_parser() -> None:
    text = "# c\nFROM a\nRUN x \\\n    && y\n\nUSER 1:1\n"
    assert dockerfile_instructions(text) == [("FROM", "a"), ("RUN", "x && y"), ("USER", "1:1")]


def test_dockerfile_is_slim_python_as_a_numeric_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    assert dockerfile[0] == ("FROM", "python:3.11-slim")
    users = [args for instruction, args in dockerfile if instruction == "USER"]
    assert users == [f"{UID}:{UID}"]
    assert [i for i, _ in dockerfile].index("USER") > max(i for i, (name, _) in enumerate(dockerfile) if name == "RUN")
    assert dockerfile[-1] == ("ENTRYPOINT", '["gangplank-sidecar"]')
    assert ("EXPOSE", "9100") in dockerfile


def test_dockerfile_installs_only_the_sidecar_distribution(dockerfile: list[tuple[str, str]]) -> None:
    copies = [args.split() for instruction, args in dockerfile if instruction == "COPY"]
    sources = {source for args in copies for source in args[:-1]}
    assert sources == {"pyproject.toml", "README.md", "gangplank_sidecar"}
    assert all((ROOT / source).exists() for source in sources), sorted(s for s in sources if not (ROOT / s).exists())
    runs = [args for instruction, args in dockerfile if instruction == "RUN"]
    assert runs[0] == "pip install /tmp/src && rm -rf /tmp/src"
    assert "keras" not in " ".join(args for _, args in dockerfile).lower()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["name"] == "gangplank-sidecar"
    assert project["project"]["readme"] in sources
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["gangplank_sidecar*"]
    assert project["project"]["scripts"]["gangplank-sidecar"] == "gangplank_sidecar.cli:main"
    runtime = " ".join(project["project"]["dependencies"]).lower()
    assert [name for name in ("keras", "jax", "tensorflow", "torch", "gangplank-emitter") if name in runtime] == []


def test_job_runs_the_sidecar_as_a_native_sidecar(pod: dict) -> None:
    spec = pod["spec"]
    (sidecar,) = spec["initContainers"]
    (train,) = spec["containers"]
    assert (sidecar["name"], sidecar["image"], sidecar["restartPolicy"]) == (
        "gangplank-sidecar",
        "gangplank-sidecar:0.1.0",
        "Always",
    )
    assert sidecar["args"] == [METRICS_FILE]
    assert spec["restartPolicy"] == "Never"
    assert train["command"] == ["python", "/app/examples/mnist/train.py", "--metrics-file", METRICS_FILE]
    assert train["workingDir"] == "/tmp"
    assert {"name": "scratch", "mountPath": "/tmp"} in train["volumeMounts"]


def test_job_shares_the_log_file_through_an_emptydir(pod: dict) -> None:
    spec = pod["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["train-logs"] == {"name": "train-logs", "emptyDir": {}}
    assert volumes["sidecar-state"] == {"name": "sidecar-state", "emptyDir": {}}
    (sidecar,) = spec["initContainers"]
    (train,) = spec["containers"]
    sidecar_mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    train_mounts = {m["name"]: m for m in train["volumeMounts"]}
    assert sidecar_mounts["train-logs"] == {"name": "train-logs", "mountPath": "/var/log/train", "readOnly": True}
    assert train_mounts["train-logs"] == {"name": "train-logs", "mountPath": "/var/log/train"}
    assert METRICS_FILE.startswith(train_mounts["train-logs"]["mountPath"] + "/")
    # The sidecar's checkpoints and history outlive a restart of the sidecar container.
    assert sidecar_mounts["sidecar-state"]["mountPath"] == "/var/lib/gangplank"
    mounted = {m["name"] for c in (sidecar, train) for m in c["volumeMounts"]}
    assert mounted == set(volumes)


def test_job_configures_the_sidecar_by_environment_with_credentials_from_a_secret(pod: dict) -> None:
    (sidecar,) = pod["spec"]["initContainers"]
    env = _env(sidecar)
    assert {name: item["value"] for name, item in env.items() if "value" in item} == {
        "GANGPLANK_PUSHGATEWAY": "http://pushgateway.monitoring.svc:9091",
        "GANGPLANK_JOB": "mnist",
        "GANGPLANK_LABELS": "team=vision",
        "GANGPLANK_LISTEN": "0.0.0.0:9100",
        "GANGPLANK_FLUSH_TIMEOUT": "10",
        "GANGPLANK_BASIC_AUTH_PASSWORD_FILE": "/etc/gangplank/pushgateway/password",
    }
    assert env["GANGPLANK_BASIC_AUTH_USER"]["valueFrom"] == {
        "secretKeyRef": {"name": "gangplank-pushgateway", "key": "username"}
    }
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert volumes["pushgateway-credentials"]["secret"] == {
        "secretName": "gangplank-pushgateway",
        "defaultMode": 0o440,
        "items": [{"key": "password", "path": "password"}],
    }
    mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "pushgateway-credentials")
    assert (mount["mountPath"] + "/password", mount["readOnly"]) == (
        env["GANGPLANK_BASIC_AUTH_PASSWORD_FILE"]["value"],
        True,
    )
    assert "password" not in json.dumps(sidecar["args"])


def test_job_grace_period_covers_the_final_flush(pod: dict) -> None:
    (sidecar,) = pod["spec"]["initContainers"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert float(_env(sidecar)["GANGPLANK_FLUSH_TIMEOUT"]["value"]) < pod["spec"]["terminationGracePeriodSeconds"]


def test_job_containers_are_locked_down(pod: dict) -> None:
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (UID, UID)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in (*spec["initContainers"], *spec["containers"]):
        assert container["securityContext"] == {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }, container["name"]


def test_job_scrape_annotations_point_at_the_listen_port(pod: dict) -> None:
    annotations = pod["metadata"]["annotations"]
    (sidecar,) = pod["spec"]["initContainers"]
    (port,) = sidecar["ports"]
    listen_port = _env(sidecar)["GANGPLANK_LISTEN"]["value"].rpartition(":")[2]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9100",
        "prometheus.io/path": "/metrics",
    }
    assert (port["name"], str(port["containerPort"]), listen_port) == ("metrics", "9100", "9100")


def test_compose_wires_the_sidecar_to_the_gateway_and_prometheus(compose: dict) -> None:
    services = compose["services"]
    assert sorted(services) == ["grafana", "prometheus", "pushgateway", "sidecar"]
    sidecar = services["sidecar"]
    assert sidecar["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert sidecar["command"] == ["/logs/metrics.jsonl"]
    assert sidecar["environment"] == {
        "GANGPLANK_PUSHGATEWAY": "http://pushgateway:9091",
        "GANGPLANK_LISTEN": "0.0.0.0:9100",
        "GANGPLANK_FLUSH_TIMEOUT": "10",
    }
    assert sidecar["volumes"] == ["./logs:/logs:ro", "sidecar-state:/var/lib/gangplank"]
    assert (sidecar["read_only"], sidecar["cap_drop"], sidecar["security_opt"]) == (
        True,
        ["ALL"],
        ["no-new-privileges:true"],
    )
    assert sidecar["stop_grace_period"] == "30s"

    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in prometheus["scrape_configs"]}
    assert targets == {"pushgateway": ["pushgateway:9091"], "gangplank-sidecar": ["sidecar:9100"]}
    assert services["prometheus"]["volumes"][0] == "./prometheus:/etc/prometheus:ro"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def test_compose_pins_the_versions_the_tests_run_against(compose: dict) -> None:
    images = {name: service.get("image") for name, service in compose["services"].items()}
    assert images == {
        "pushgateway": "prom/pushgateway:v1.5.1",
        "prometheus": "prom/prometheus:v2.42.0",
        "grafana": "grafana/grafana:10.4.2",
        "sidecar": "gangplank-sidecar:0.1.0",
    }
    ports = [port for service in compose["services"].values() for port in service["ports"]]
    assert ports == ["127.0.0.1:9091:9091", "127.0.0.1:9090:9090", "127.0.0.1:3000:3000", "127.0.0.1:9100:9100"]


def test_every_environment_variable_in_deploy_is_one_the_sidecar_reads() -> None:
    import re

    from gangplank_sidecar.options import OPTIONS

    known = {name for option in OPTIONS for name in (option.env, option.secret_env) if name}
    used = {
        name
        for path in (ROOT / "deploy").rglob("*")
        if path.is_file() and path.suffix in {".yaml", ".yml", ""}
        for name in re.findall(r"GANGPLANK_[A-Z_]+", path.read_text(errors="replace"))
    }
    assert used and used <= known, sorted(used - known)


@pytest.fixture(scope="module")
def node_agent() -> list[dict]:
    return list(yaml.safe_load_all((DEPLOY / "kubernetes" / "node-agent.yaml").read_text(encoding="utf-8")))


def _agent_pod(documents: list[dict]) -> dict:
    (daemonset,) = [d for d in documents if d["kind"] == "DaemonSet"]
    return daemonset["spec"]["template"]


def test_node_agent_passes_strict_schema_validation_for_kubernetes_1_33(node_agent: list[dict]) -> None:
    import kubernetes_validate

    assert [(d["apiVersion"], d["kind"]) for d in node_agent] == [("v1", "ConfigMap"), ("apps/v1", "DaemonSet")]
    for document in node_agent:
        assert kubernetes_validate.validate(document, "1.33.0", strict=True) == "1.33"
    broken = json.loads(json.dumps(node_agent[1]))
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFs"] = True  # a misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.33.0", strict=True)


def test_node_agent_arguments_are_the_sidecars_options(node_agent: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    from gangplank_sidecar.cli import settings_from

    (container,) = _agent_pod(node_agent)["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["GANGPLANK_PUSHGATEWAY"]["valueFrom"]["configMapKeyRef"] == {
        "name": "gangplank-node-agent",
        "key": "pushgateway",
        "optional": True,
    }
    assert node_agent[0]["data"] == {"pushgateway": ""}  # the gateway is optional: empty means no pushes
    for name in (
        "GANGPLANK_PUSHGATEWAY",
        "GANGPLANK_LABELS",
        "GANGPLANK_KUBERNETES_LOGS",
        "GANGPLANK_KUBERNETES_NAMESPACES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GANGPLANK_KUBERNETES_FORGET_AFTER", env["GANGPLANK_KUBERNETES_FORGET_AFTER"]["value"])
    settings = settings_from([a.replace("$(NODE_NAME)", "gpu-node-1") for a in container["args"]])
    assert (settings.kubernetes_logs, settings.state_file, settings.listen) == (
        "/var/log/pods",
        "/var/lib/gangplank/state.json",
        "0.0.0.0:9100",
    )
    assert (settings.labels, settings.kubernetes_forget_after, settings.history, settings.pushgateway) == (
        {"node": "gpu-node-1"},
        600.0,
        False,
        None,
    )


def test_node_agent_reads_the_logs_read_only_and_keeps_its_state_on_the_node(node_agent: list[dict]) -> None:
    pod = _agent_pod(node_agent)
    (container,) = pod["spec"]["containers"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["pod-logs"]["hostPath"] == {"path": "/var/log/pods", "type": "Directory"}
    assert mounts["pod-logs"] == {"name": "pod-logs", "mountPath": "/var/log/pods", "readOnly": True}
    assert volumes["state"]["hostPath"]["type"] == "DirectoryOrCreate"
    assert "--state-file=" + mounts["state"]["mountPath"] + "/state.json" in container["args"]
    assert not mounts["state"].get("readOnly")


def test_node_agent_has_the_least_privilege_that_reads_the_logs(node_agent: list[dict]) -> None:
    pod = _agent_pod(node_agent)
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]},
    }
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod["spec"] and "hostPID" not in pod["spec"]


def test_node_agent_runs_on_gpu_nodes_with_requests_and_limits(node_agent: list[dict]) -> None:
    pod = _agent_pod(node_agent)
    tolerated = {(t["key"], t["operator"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert ("nvidia.com/gpu", "Exists", "NoSchedule") in tolerated and (
        "amd.com/gpu",
        "Exists",
        "NoSchedule",
    ) in tolerated
    (container,) = pod["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "20m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "200Mi"},
    }


def test_node_agent_scrape_annotations_point_at_the_listen_port(node_agent: list[dict]) -> None:
    pod = _agent_pod(node_agent)
    (container,) = pod["spec"]["containers"]
    annotations = pod["metadata"]["annotations"]
    (port,) = container["ports"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port["containerPort"]),
        "prometheus.io/path": "/metrics",
    }
    assert f"--listen=0.0.0.0:{port['containerPort']}" in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
