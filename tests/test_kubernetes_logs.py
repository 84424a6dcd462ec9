"""The node agent's source, in process: discovery, labels, CRI lines, restarts, rotation, deleted pods, checkpoints."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gangplank_sidecar.aggregation.state import RunState, Store
from gangplank_sidecar.cli import main, settings_from
from gangplank_sidecar.pipeline import Pipeline
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.settings import ConfigError
from gangplank_sidecar.sources import kubernetes
from gangplank_sidecar.sources.checkpoint import Checkpoints
from gangplank_sidecar.sources.kubernetes import KubernetesLogs
from kubelet import T0, Kubelet, cri, epoch, start


class Agent:
    """A store, a pipeline and the source over one log directory; ``fed`` counts content lines."""

    def __init__(self, root: Path, state: Path | None = None, **options: object) -> None:
        self.store = Store()
        self.reports: list[str] = []
        self.pipeline = Pipeline(self.store, SelfMetrics(), self.reports.append)
        self.fed: list[tuple[str, bytes]] = []
        feed = self.pipeline.feed

        def counted(source: str, line: bytes, when: float | None = None) -> None:
            self.fed.append((source, line))
            feed(source, line, when)

        self.pipeline.feed = counted
        self.checkpoints = Checkpoints(state, self.reports.append) if state else None
        self.source = KubernetesLogs(
            str(root),
            self.pipeline,
            self.reports.append,
            self.checkpoints,
            lambda: self.store.version,
            **options,
        )

    def series(self, pod: str, phase: str = "train") -> RunState:
        (found,) = [s for s in self.store.snapshot() if s.labels.get("pod") == pod and s.phase == phase]
        return found

    def lines(self) -> list[bytes]:
        return [line for _, line in self.fed]

    def run_once(self, close: bool = True) -> None:
        """An agent's life in short: resume, one pass, its checkpoints saved; ``close`` ends its files too."""
        assert self.checkpoints is not None
        self.source.resume()
        self.checkpoints.start(lambda: self.store.version)
        self.source.scan()
        self.checkpoints.close()
        if close:
            self.source.close()


def test_labels_job_and_cri_time_for_every_container(tmp_path: Path) -> None:
    k = Kubelet(tmp_path / "pods")
    k.write(
        "ml",
        "trainer-0",
        "main",
        cri(start("r1", job="mnist")) + cri(epoch("r1", 1, {"loss": 0.5, "accuracy": 0.75}), split=2),
    )
    k.write("ml", "trainer-0", "side", cri("just noise"))
    k.write(
        "research",
        "floyd",
        "train",
        cri('{"metric": "loss", "value": 0.25, "epoch": 1}', when=T0 + 7.5, stream="stderr"),
    )
    agent = Agent(tmp_path / "pods")
    agent.source.scan()

    main = agent.series("trainer-0")
    assert (main.job, main.labels, main.metrics, main.epoch) == (
        "mnist",
        {"namespace": "ml", "pod": "trainer-0", "container": "main"},
        {"loss": 0.5, "accuracy": 0.75},
        1,
    )
    floyd = agent.series("floyd")
    assert (floyd.job, floyd.labels, floyd.metrics, floyd.time) == (
        "floyd",
        {"namespace": "research", "pod": "floyd", "container": "train"},
        {"loss": 0.25},
        T0 + 7.5,
    )
    assert agent.lines() == [
        start("r1", job="mnist").encode(),
        epoch("r1", 1, {"loss": 0.5, "accuracy": 0.75}).encode(),
        b"just noise",
        b'{"metric": "loss", "value": 0.25, "epoch": 1}',
    ]


def test_namespaces_filter_the_pods_read(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    k.write("ml", "a", "c", cri("x"))
    k.write("kube-system", "b", "c", cri("y"))
    k.write("other", "c", "c", cri("z"))
    agent = Agent(tmp_path, namespaces=["ml", "other"])
    agent.source.scan()
    assert agent.lines() == [b"x", b"z"]


def test_a_restarted_container_goes_on_in_the_same_stream_in_restart_order(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    for restart in (10, 9):  # 9.log before 10.log, whatever the names sort as
        k.write(
            "ml", "p", "c", cri(f'{{"metric": "loss", "value": {restart / 100}, "epoch": {restart}}}'), restart=restart
        )
    agent = Agent(tmp_path)
    agent.source.scan()
    assert agent.lines() == [
        b'{"metric": "loss", "value": 0.09, "epoch": 9}',
        b'{"metric": "loss", "value": 0.1, "epoch": 10}',
    ]
    assert {source for source, _ in agent.fed} == {str(k.pod_dir("ml", "p") / "c")}
    k.write("ml", "p", "c", cri('{"metric": "loss", "value": 0.11, "epoch": 11}'), restart=11)
    agent.source.scan()
    series = agent.series("p")
    assert (series.epoch, series.metrics) == (11, {"loss": 0.11})


def test_a_kubelet_rotation_reads_every_line_once_and_never_a_gz(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    log = k.write("ml", "p", "c", cri("one"))
    agent = Agent(tmp_path)
    agent.source.scan()
    with open(log, "ab") as still_open:  # the runtime writes on until it reopens the path
        k.rotate(log, "20261203-101500")
        still_open.write(cri("two"))
    k.write("ml", "p", "c", cri("three"))
    agent.source.scan()
    k.rotate(log, "20261203-101600")  # 0.log.20261203-101500 is gzipped now
    k.write("ml", "p", "c", cri("four"))
    agent.source.scan()
    assert agent.lines() == [b"one", b"two", b"three", b"four"]
    assert sorted(p.name for p in log.parent.iterdir()) == [
        "0.log",
        "0.log.20261203-101500.gz",
        "0.log.20261203-101600",
    ]
    assert gzip.decompress((log.parent / "0.log.20261203-101500.gz").read_bytes()) == cri("one") + cri("two")


def test_a_deleted_pod_ends_its_runs_and_is_forgotten_later(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    k.write("ml", "gone", "c", cri(start("r")) + cri(epoch("r", 1, {"loss": 1.0})))
    k.write("ml", "stays", "c", cri(start("s")))
    agent = Agent(tmp_path, forget_after=0.3)
    agent.source.scan()
    k.delete("ml", "gone")
    agent.source.scan()
    assert (agent.series("gone").status, agent.series("stays").status) == ("ended", None)
    assert "ml/gone container c is gone; its runs ended" in agent.reports
    time.sleep(0.4)
    agent.source.scan()
    assert [s.labels["pod"] for s in agent.store.snapshot()] == ["stays"]


def test_an_agent_restart_neither_replays_nor_skips_across_a_rotation(tmp_path: Path) -> None:
    k = Kubelet(tmp_path / "pods")
    state = tmp_path / "state.json"
    log = k.write("ml", "p", "c", cri(start("r")) + cri(epoch("r", 1, {"loss": 1.0}), split=1))
    first = Agent(tmp_path / "pods", state)
    first.run_once()

    with open(log, "ab") as still_open:  # while the agent is away: a line more, a rotation, a new file
        still_open.write(cri(epoch("r", 2, {"loss": 0.5}), split=2))
        k.rotate(log, "20261203-101500")
    k.write("ml", "p", "c", cri(epoch("r", 3, {"loss": 0.25})))

    second = Agent(tmp_path / "pods", state)
    second.source.resume()  # replays the rotated file up to the checkpoint: that state was delivered
    assert second.series("p").epoch == 1 and second.source.counts.resumed == 1
    replayed = len(second.fed)
    second.source.scan()
    assert second.lines()[replayed:] == [epoch("r", 2, {"loss": 0.5}).encode(), epoch("r", 3, {"loss": 0.25}).encode()]
    assert (second.series("p").epoch, second.series("p").metrics) == (3, {"loss": 0.25})


def test_pods_deleted_while_the_agent_was_away_are_named_for_deletion(tmp_path: Path) -> None:
    k = Kubelet(tmp_path / "pods")
    state = tmp_path / "state.json"
    k.write("ml", "gone", "c", cri(start("r", job="mnist")) + cri(epoch("r", 1, {"loss": 1.0})))
    k.write("ml", "stays", "c", cri("noise"))
    first = Agent(tmp_path / "pods", state)
    first.run_once(close=False)
    k.delete("ml", "gone")
    second = Agent(tmp_path / "pods", state)
    second.source.resume()
    labels = {"container": "c", "namespace": "ml", "pod": "gone"}
    assert second.source.orphans == [
        ("gone", "train", labels),
        ("gone", "test", labels),
        ("mnist", "train", labels),
        ("mnist", "test", labels),
    ]
    second.checkpoints.close()
    assert [os.path.basename(os.path.dirname(os.path.dirname(n))) for n in json.loads(state.read_text())["files"]] == [
        k.pod_dir("ml", "stays").name
    ]


def test_a_fresh_agent_reads_the_plain_rotated_file_first(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    log = k.write("ml", "p", "c", cri("old"))
    k.rotate(log, "20261203-101500")
    k.write("ml", "p", "c", cri("new"))
    agent = Agent(tmp_path)
    agent.source.resume()
    agent.source.scan()
    assert agent.lines() == [b"old", b"new"]


@contextlib.contextmanager
def following(agent: Agent) -> Iterator[threading.Thread]:
    """The agent's follow loop in a thread, stopped and joined at the end of the block."""
    stop = threading.Event()
    thread = threading.Thread(target=agent.source.follow, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(10)


def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_no_watches_left_means_periodic_scans_reported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_watches(*args: object, **kwargs: object) -> None:
        raise OSError("OS file watch limit reached")

    monkeypatch.setattr(kubernetes.watchfiles, "watch", no_watches)
    monkeypatch.setattr(kubernetes, "POLL", 0.05)
    k = Kubelet(tmp_path)
    k.write("ml", "p", "c", cri("one"))
    agent = Agent(tmp_path)
    with following(agent):
        until(lambda: agent.source.polling)
        k.write("ml", "q", "c", cri("two"))
        until(lambda: agent.lines() == [b"one", b"two"])
    assert agent.source.polling
    (reported,) = [r for r in agent.reports if "cannot watch" in r]
    assert re.fullmatch(
        r"cannot watch the 3 log directories \(OS file watch limit reached\); scanning every 0\.05 s instead "
        r"\(raise fs\.inotify\.max_user_watches to watch again\)",
        reported,
    )


def test_follow_with_real_watches_finds_a_new_pod_and_new_lines(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    k.write("ml", "p", "c", cri("one"))
    agent = Agent(tmp_path)
    with following(agent) as thread:
        until(lambda: agent.lines() == [b"one"])
        k.write("ml", "later", "c", cri("two"))
        until(lambda: agent.lines() == [b"one", b"two"])
        k.write("ml", "later", "c", cri("three"))
        until(lambda: agent.lines() == [b"one", b"two", b"three"])
    assert not agent.source.polling and not thread.is_alive()


def test_two_rotations_between_two_looks_read_the_plain_one_between(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    log = k.write("ml", "p", "c", cri("one"))
    agent = Agent(tmp_path)
    agent.source.scan()
    k.rotate(log, "20261203-101500")
    k.write("ml", "p", "c", cri("two"))
    k.rotate(log, "20261203-101600")
    k.write("ml", "p", "c", cri("three"))
    agent.source.scan()
    assert agent.lines() == [b"one", b"two", b"three"]


def test_the_job_a_start_record_named_survives_a_restart_without_that_record(tmp_path: Path) -> None:
    k = Kubelet(tmp_path / "pods")
    state = tmp_path / "state.json"
    log = k.write("ml", "p", "c", cri(start("r", job="mnist")) + cri(epoch("r", 1, {"loss": 1.0})))
    first = Agent(tmp_path / "pods", state)
    first.run_once()
    k.rotate(log, "20261203-101500").unlink()  # as if gzipped by now: the start record is out of reach
    k.write("ml", "p", "c", cri(epoch("r", 2, {"loss": 0.5})))
    second = Agent(tmp_path / "pods", state)
    second.source.resume()
    second.source.scan()
    assert (second.series("p").job, second.series("p").epoch) == ("mnist", 2)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("GANGPLANK_KUBERNETES_LOGS", "GANGPLANK_KUBERNETES_NAMESPACES", "GANGPLANK_KUBERNETES_FORGET_AFTER"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_options_defaults_environment_and_durations(clean_env: pytest.MonkeyPatch) -> None:
    assert settings_from(["--kubernetes-logs"]).kubernetes_logs == "/var/log/pods"
    given = settings_from(
        [
            "--kubernetes-logs",
            "/logs",
            "--kubernetes-namespace",
            "ml",
            "--kubernetes-namespace",
            "research",
            "--kubernetes-forget-after",
            "30s",
        ]
    )
    assert (given.kubernetes_logs, given.kubernetes_namespaces, given.kubernetes_forget_after) == (
        "/logs",
        ["ml", "research"],
        30.0,
    )
    assert settings_from(["--kubernetes-logs"]).kubernetes_forget_after == 600.0
    assert settings_from([]).kubernetes_logs is None
    clean_env.setenv("GANGPLANK_KUBERNETES_LOGS", "/from/env")
    clean_env.setenv("GANGPLANK_KUBERNETES_NAMESPACES", "a, b")
    clean_env.setenv("GANGPLANK_KUBERNETES_FORGET_AFTER", "1.5h")
    from_env = settings_from([])
    assert (from_env.kubernetes_logs, from_env.kubernetes_namespaces, from_env.kubernetes_forget_after) == (
        "/from/env",
        ["a", "b"],
        5400.0,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--kubernetes-logs", "/l", "--kubernetes-forget-after", "10 minutes"],
            "--kubernetes-forget-after: bad duration '10 minutes': expected a number of seconds or one like 30s, 10m, "
            "1h",
        ),
        (["--kubernetes-namespace", "ml"], "--kubernetes-namespaces: needs --kubernetes-logs"),
        (
            ["--kubernetes-logs", "/l", "--exit-on-end"],
            "--kubernetes-logs: it follows every container's logs: no FILE, command or --exit-on-end with it",
        ),
        (
            ["--kubernetes-logs=/l", "x.log"],
            "--kubernetes-logs: it follows every container's logs: no FILE, command or --exit-on-end with it",
        ),
    ],
)
def test_bad_options_are_usage_errors(clean_env: pytest.MonkeyPatch, argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from(argv)
    assert str(error.value) == message


def test_a_missing_log_directory_exits_2_before_reading(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--kubernetes-logs", str(tmp_path / "nope"), "--no-history"]) == 2
    assert capsys.readouterr().err == f"gangplank-sidecar: --kubernetes-logs: {tmp_path / 'nope'} is not a directory\n"
