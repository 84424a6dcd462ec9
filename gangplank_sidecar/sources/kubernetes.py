"""The node agent: every container log the kubelet keeps on a node, one stream per container.

The kubelet lays logs out as ``<root>/<namespace>_<pod>_<uid>/<container>/<restart>.log``, in
the CRI format (``cri.py``). Each container is one stream (stdout and stderr together, as
``2>&1`` would be), whatever its restarts: ``1.log`` goes on where ``0.log`` left off. Its
series carry the labels namespace, pod and container; a run that names no job takes the pod's.

Rotation is the kubelet's: ``0.log`` is renamed ``0.log.<YYYYMMDD-hhmmss>`` and reopened, and
older rotated files are gzipped. The follower finishes the file it has open through the rename;
after a restart of the agent the newest plain rotated file is read first. Gzipped files are never
read (Vector and Fluent Bit skip them too).

Watching: one inotify watch per directory (the root, each pod's and each container's), never
per file; a batch of events reads only the files it names, and a full scan every
``FULL_SCAN`` seconds catches what no event announced. When the kernel has no watches left,
the agent says so once and scans every ``POLL`` seconds instead.

A pod whose directory is gone has its runs ended (status ``ended``); ``forget_after`` seconds
later its series leave the store, so the Pushgateway sink deletes their groups. The groups of a
pod deleted while the agent was away are named from the state file (``orphans``) for deletion.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

import watchfiles

from gangplank_sidecar.sources import cri
from gangplank_sidecar.sources.checkpoint import Checkpoints
from gangplank_sidecar.sources.files import Follower, watch

FULL_SCAN = 5.0
POLL = 2.0
WAKE_MS = 1000
ENDED = "ended"
PHASES = ("train", "test")

_POD = re.compile(r"([^_]+)_([^_]+)_([^_]+)\Z")  # namespaces and pod names are DNS names: no "_"
_LOG = re.compile(r"(\d+)\.log\Z")
_ROTATED = re.compile(r"\.\d{8}-\d{6}\Z")


@dataclass(frozen=True)
class Container:
    """One container of one pod: its directory names its stream."""

    directory: str
    namespace: str
    pod: str
    name: str

    @property
    def labels(self) -> dict[str, str]:
        return {"namespace": self.namespace, "pod": self.pod, "container": self.name}


def _entries(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:  # gone between two looks, or not ours to read
        return []


def _restart(path: str) -> tuple[str, int]:
    """Sorts a container's logs by restart count, numerically (``9.log`` before ``10.log``)."""
    m = _LOG.match(os.path.basename(path))
    return os.path.dirname(path), int(m.group(1)) if m else -1


Group = tuple[str, str, dict[str, str]]  # a Pushgateway group: job, phase, labels


class Streams(Protocol):
    """What the agent drives downstream (the pipeline): a source names streams and never sees the run state."""

    def open(self, source: str, labels: dict[str, str], default_job: str, jobs: dict[str, str] | None = None) -> None:
        """Declares a stream before its first line."""

    def feed(self, source: str, line: bytes, when: float | None = None) -> None:
        """One line of a stream."""

    def close(self, source: str) -> None:
        """A stream that has ended for good."""

    def end(self, source: str, status: str) -> None:
        """Ends the stream's runs that are still going, with ``status``."""

    def forget(self, source: str) -> None:
        """Drops the stream's runs from the state the sinks show."""

    def on_start(self, callback: Callable[[str, str, str], None]) -> None:
        """Calls ``callback(source, run, job)`` as each run starts."""


class KubernetesLogs(Follower):
    """Follows every container log under ``root`` into ``pipeline``."""

    def __init__(
        self,
        root: str,
        pipeline: Streams,
        report: Callable[[str], None],
        checkpoints: Checkpoints | None = None,
        version: Callable[[], int] = lambda: 0,
        namespaces: Collection[str] = (),
        forget_after: float = 600.0,
    ) -> None:
        super().__init__([], self._feed, report, checkpoints, version)
        self.root = os.path.abspath(root)
        self.pipeline = pipeline
        self.namespaces = frozenset(namespaces)
        self.forget_after = forget_after
        self.polling = False
        self.full_scans = 0
        self._containers: dict[str, Container] = {}
        self._pods: list[str] = []
        self._gone: list[Container] = []
        self._ending: dict[str, float] = {}
        self._decoders: dict[str, tuple[str, cri.Decoder]] = {}
        self._last_full = 0.0
        self.orphans: list[Group] = []
        pipeline.on_start(self._learn)

    def paths(self) -> list[str]:
        """Every container log under the root now, each container's in restart order; opens new streams."""
        found: list[str] = []
        containers: dict[str, Container] = {}
        pods: list[str] = []
        for pod in _entries(self.root):
            m = _POD.match(pod.name)
            if m is None or not pod.is_dir() or (self.namespaces and m.group(1) not in self.namespaces):
                continue
            pods.append(pod.path)
            for entry in _entries(pod.path):
                if not entry.is_dir():
                    continue
                containers[entry.path] = Container(entry.path, m.group(1), m.group(2), entry.name)
                found.extend(sorted((f.path for f in _entries(entry.path) if _LOG.match(f.name)), key=_restart))
        for directory, container in containers.items():
            if directory not in self._containers:
                self._containers[directory] = container
                noted = self.checkpoints.streams.get(directory) if self.checkpoints is not None else None
                self.pipeline.open(directory, container.labels, container.pod, noted)
        self._gone = [c for d, c in self._containers.items() if d not in containers]
        self._pods = pods
        return found

    def rotated(self, path: str) -> list[str]:
        """``0.log.20261203-101500`` for ``0.log``: plain rotated files, oldest first; never ``.gz``."""
        name = os.path.basename(path)
        return [
            e.path
            for e in _entries(os.path.dirname(path))
            if e.name.startswith(name) and _ROTATED.match(e.name, len(name))
        ]

    def resume(self) -> None:
        """As files do; the positions of logs that are gone (pods deleted while we were away) are dropped,
        and the groups those pods may have left on a gateway are listed in ``orphans``. Hundreds of logs
        resume at once: they are reported in one line."""
        report, resumed = self.report, self.counts.resumed
        self.report = lambda message: None if message.startswith("resuming ") else report(message)
        try:
            super().resume()
        finally:
            self.report = report
        if self.counts.resumed > resumed:
            report(
                f"resuming {self.counts.resumed - resumed} logs under {self.root} from "
                f"{self.checkpoints.path if self.checkpoints else ''}"
            )
        if self.checkpoints is None:
            return
        live = self._containers
        gone = {
            d
            for d in [*self.checkpoints.streams, *map(os.path.dirname, self.checkpoints.saved)]
            if d.startswith(self.root + os.sep) and d not in live
        }
        for directory in sorted(gone):
            m = _POD.match(os.path.basename(os.path.dirname(directory)))
            if m is None:
                continue
            labels = Container(directory, m.group(1), m.group(2), os.path.basename(directory)).labels
            jobs = {m.group(2), *self.checkpoints.streams.get(directory, {}).values()}
            self.orphans += [(job, phase, labels) for job in sorted(jobs) for phase in PHASES]
        self.checkpoints.drop(
            lambda name: name.startswith(self.root + os.sep) and name not in live and os.path.dirname(name) not in live
        )

    def scan(self) -> None:
        """A full pass: discovery, every file read, the streams of deleted pods ended."""
        super().scan()
        self.full_scans += 1
        self._last_full = time.monotonic()
        self._end_gone()
        self._forget_due()

    def follow(self, stop: threading.Event, done: Callable[[], bool] = lambda: False) -> None:
        """Reads what there is, then what the watches announce, until ``stop``; then a last pass."""
        self.scan()
        while not stop.is_set() and not done():
            if self.polling:
                stop.wait(POLL)
                self.scan()
                continue
            dirs = self._watch_dirs()
            try:
                for changes in watch(dirs, stop, WAKE_MS):
                    self._changed(changes)
                    if done() or self._watch_dirs() != dirs:
                        break
            except OSError as exc:
                if all(os.path.isdir(d) for d in dirs):
                    self.polling = True
                    self.report(
                        f"cannot watch the {len(dirs)} log directories ({exc}); scanning every {POLL:g} s instead "
                        "(raise fs.inotify.max_user_watches to watch again)"
                    )
                self.scan()
        self.scan()

    def _watch_dirs(self) -> list[str]:
        return [self.root, *self._pods, *self._containers]

    def _changed(self, changes: Iterable[tuple[watchfiles.Change, str]]) -> None:
        """Reads the logs the events name; a pod or container that came or went means a full pass."""
        visit: set[str] = set()
        for _, path in changes:
            parent = os.path.dirname(path)
            if path in self._tails or (parent in self._containers and _LOG.match(os.path.basename(path))):
                visit.add(path)
            elif parent == self.root or path in self._containers:
                self.scan()
                return
            elif parent in self._pods:  # a container directory came or went
                self.scan()
                return
        for path in sorted(visit, key=_restart):
            self._visit(path)
        if time.monotonic() - self._last_full >= FULL_SCAN:
            self.scan()
        else:
            self._forget_due()

    def _feed(self, path: str, line: bytes) -> None:
        """Called for every line: a path's stream and decoder are looked up once."""
        found = self._decoders.get(path)
        if found is None:
            container = self._containers.get(os.path.dirname(path))
            if container is None:
                return
            found = self._decoders[path] = (container.directory, cri.Decoder())
        stream, decoder = found
        malformed = decoder.malformed
        for when, content in decoder.feed(line):
            self.pipeline.feed(stream, content, when)
        if decoder.malformed and not malformed:
            self.report(f"{path}: skipping a line that is not in the CRI log format (further ones are not reported)")

    def _learn(self, source: str, run: str, job: str) -> None:
        """Notes the job a run named, so that an agent restart still finds it."""
        container = self._containers.get(source)
        if container is not None and self.checkpoints is not None and job != container.pod:
            self.checkpoints.note(source, run, job)

    def _end_gone(self) -> None:
        """The pods whose directory is gone: their files were read to the end; their runs end now."""
        now = time.monotonic()
        for container in self._gone:
            self.pipeline.end(container.directory, ENDED)
            self.pipeline.close(container.directory)
            prefix = container.directory + os.sep
            for path in [p for p in self._decoders if p.startswith(prefix)]:
                del self._decoders[path]
            if self.checkpoints is not None:
                self.checkpoints.drop(lambda name: name.startswith(prefix) or name == container.directory)  # noqa: B023 - called at once
            del self._containers[container.directory]
            self._ending[container.directory] = now + self.forget_after
            self.report(f"{container.namespace}/{container.pod} container {container.name} is gone; its runs ended")
        self._gone = []

    def _forget_due(self) -> None:
        """RunState of pods deleted ``forget_after`` ago leave the store (and their Pushgateway groups)."""
        now = time.monotonic()
        for directory, due in list(self._ending.items()):
            if now < due:
                continue
            del self._ending[directory]
            self.pipeline.forget(directory)
