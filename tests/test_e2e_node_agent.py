"""The node agent end to end: a kubelet-style log directory -> gangplank-sidecar --kubernetes-logs -> the real
Pushgateway and /metrics, through a rotation, a container restart, a new pod, a deleted pod and an agent restart."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import SIDECAR, Pushgateway, Samples, free_port, scrape, value, wait_http
from kubelet import T0, Kubelet, cri, epoch, start

POLL_TIMEOUT = 30.0


def wait_until(what: str, condition: Callable[[], bool], timeout: float = POLL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def labelled(samples: Samples, name: str, **labels: str) -> float | None:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    return found[0] if len(found) == 1 else None


class NodeAgent:
    def __init__(self, tmp_path: Path, gateway: str, root: Path) -> None:
        self.port = free_port()
        self.err = tmp_path / f"agent-{time.monotonic_ns()}.err"
        argv = [
            *SIDECAR,
            "--kubernetes-logs",
            str(root),
            "--pushgateway",
            gateway,
            "--listen",
            str(self.port),
            "--state-file",
            str(tmp_path / "state.json"),
            "--kubernetes-forget-after",
            "2s",
            "--label",
            "cluster=lab",
            "--no-history",
            "--push-timeout",
            "2",
            "--retry-backoff",
            "0.05",
            "--retry-backoff-max",
            "0.2",
        ]
        with self.err.open("wb") as err:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        wait_http(f"http://127.0.0.1:{self.port}/-/ready", timeout=POLL_TIMEOUT)

    def metrics(self) -> Samples:
        return scrape(f"http://127.0.0.1:{self.port}/metrics")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def stderr(self) -> str:
        return self.err.read_text()


@pytest.fixture
def agents() -> Iterator[list[NodeAgent]]:
    started: list[NodeAgent] = []
    yield started
    for agent in started:
        if agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait()


TRAINER = {
    "namespace": "ml",
    "pod": "trainer-0",
    "container": "main",
    "job": "mnist",
    "phase": "train",
    "cluster": "lab",
}
FLOYD = {
    "namespace": "research",
    "pod": "floyd-1",
    "container": "train",
    "job": "floyd-1",
    "phase": "train",
    "cluster": "lab",
}
LATE = {"namespace": "ml", "pod": "late-0", "container": "main", "job": "late-0", "phase": "train", "cluster": "lab"}
OLD = {"namespace": "ml", "pod": "old-0", "container": "main", "job": "old-0", "phase": "train", "cluster": "lab"}


def floyd(metric: str, v: float, n: int) -> str:
    return f'{{"metric": "{metric}", "value": {v}, "epoch": {n}}}'


def test_node_agent_end_to_end(tmp_path: Path, pushgateway: Pushgateway, agents: list[NodeAgent]) -> None:
    k = Kubelet(tmp_path / "pods")
    main = k.write(
        "ml", "trainer-0", "main", cri(start("r1", job="mnist", epochs=9)) + cri(epoch("r1", 1, {"loss": 0.5}), split=2)
    )
    k.write(
        "research", "floyd-1", "train", cri(floyd("loss", 0.75, 1), when=T0 + 1.25) + cri("some noise", stream="stderr")
    )
    k.write("ml", "old-0", "main", cri(start("o")) + cri(epoch("o", 1, {"loss": 2.0})))
    k.write("kube-system", "coredns-1", "coredns", cri("[INFO] plugin/reload"))

    agents.append(agent := NodeAgent(tmp_path, pushgateway.url, tmp_path / "pods"))
    gateway = pushgateway.gangplank
    first = {frozenset(TRAINER.items()), frozenset(FLOYD.items()), frozenset(OLD.items())}
    wait_until(
        "the first values",
        lambda: None not in [labelled(gateway(), "gangplank_train_loss", **dict(ls)) for ls in first],
    )
    pushed = gateway()
    assert value(pushed, "gangplank_train_loss", **OLD) == 2.0
    assert value(pushed, "gangplank_train_loss", **TRAINER) == 0.5  # split over P/P/F
    assert value(pushed, "gangplank_train_epochs_count", **TRAINER) == 1
    assert value(pushed, "gangplank_train_loss", **FLOYD) == 0.75
    assert value(pushed, "gangplank_run_last_record_timestamp_seconds", **FLOYD) == T0 + 1.25  # the CRI time
    scraped = agent.metrics()
    assert value(scraped, "gangplank_train_loss", **TRAINER) == 0.5
    assert value(scraped, "gangplank_train_loss", **FLOYD) == 0.75
    assert {ls for (n, ls) in scraped if n == "gangplank_train_loss"} == first

    # A pod that appears later, a restarted container, a kubelet rotation (rename, reopen, gzip), a deleted pod.
    k.write("ml", "late-0", "main", cri(start("l")) + cri(epoch("l", 1, {"loss": 0.125})))
    k.write("research", "floyd-1", "train", cri(floyd("loss", 0.5, 2), when=T0 + 2.5), restart=1)
    with open(main, "ab") as still_open:
        k.rotate(main, "20261203-101500")
        still_open.write(cri(epoch("r1", 2, {"loss": 0.25})))
    k.write("ml", "trainer-0", "main", cri(epoch("r1", 3, {"loss": 0.125})))
    k.rotate(main, "20261203-101600")
    k.write("ml", "trainer-0", "main", cri(epoch("r1", 4, {"loss": 0.0625}), split=1))
    k.delete("ml", "old-0")

    wait_until(
        "the new state",
        lambda: (
            labelled(gateway(), "gangplank_train_loss", **LATE) == 0.125
            and labelled(gateway(), "gangplank_train_epochs_count", **TRAINER) == 4
            and labelled(gateway(), "gangplank_train_epochs_count", **FLOYD) == 2
        ),
    )
    pushed = gateway()
    assert value(pushed, "gangplank_train_loss", **TRAINER) == 0.0625
    assert value(pushed, "gangplank_train_loss", **FLOYD) == 0.5
    assert value(pushed, "gangplank_run_last_record_timestamp_seconds", **FLOYD) == T0 + 2.5
    wait_until("the deleted pod's groups to go", lambda: not [k for k in gateway() if ("pod", "old-0") in k[1]])
    assert "ml/old-0 container main is gone; its runs ended" in agent.stderr()
    assert not [ls for (_, ls) in agent.metrics() if ("pod", "old-0") in ls]
    assert not [ls for (_, ls) in pushed if ("namespace", "kube-system") in ls]
    assert agent.stop() == 0
    own = {"job": "gangplank-node-agent", "phase": "sidecar", "cluster": "lab"}
    assert value(pushgateway.samples(), "gangplank_sidecar_pushes_total", result="failure", **own) == 0

    # An agent restart: the state is rebuilt from the files up to the checkpoints, nothing is pushed again;
    # a pod deleted while the agent was away has its groups deleted.
    pushed_at = value(pushgateway.samples(), "push_time_seconds", **TRAINER)
    assert value(gateway(), "gangplank_train_loss", **LATE) == 0.125
    k.delete("ml", "late-0")
    agents.append(again := NodeAgent(tmp_path, pushgateway.url, tmp_path / "pods"))
    wait_until(
        "the groups of the pod deleted meanwhile to go", lambda: not [k for k in gateway() if ("pod", "late-0") in k[1]]
    )
    wait_until("the replayed state", lambda: labelled(again.metrics(), "gangplank_train_epochs_count", **TRAINER) == 4)
    time.sleep(1.5)
    assert value(pushgateway.samples(), "push_time_seconds", **TRAINER) == pushed_at
    assert f"resuming 4 logs under {tmp_path / 'pods'} from {tmp_path / 'state.json'}" in again.stderr().splitlines()[0]
    k.write("ml", "trainer-0", "main", cri(epoch("r1", 5, {"loss": 0.03125})))
    wait_until("the next epoch", lambda: labelled(gateway(), "gangplank_train_epochs_count", **TRAINER) == 5)
    assert value(gateway(), "gangplank_train_loss", **TRAINER) == 0.03125
    assert value(again.metrics(), "gangplank_train_loss", **TRAINER) == 0.03125
    assert again.stop() == 0
    assert "Traceback" not in agent.stderr() + again.stderr()
