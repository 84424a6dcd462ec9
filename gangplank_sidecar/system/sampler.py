"""A thread that samples the job's CPU, memory, disk and GPUs every ``interval`` seconds.

Each series keeps its last good value: a process that has exited, or a device that does not
answer once, leaves the previous value in place (so the final push after the job exits still
shows it); a series that could never be measured is absent, and one log line says why.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from gangplank_sidecar.system.cgroup import PROC, ROOT, Cgroup
from gangplank_sidecar.system.gpu import Gpus, GpuUsage
from gangplank_sidecar.system.process import CgroupTarget, PodProcesses, ProcessTree, Usage, shared_pod


class Target(Protocol):
    describe: str

    def read(self) -> Usage | None: ...


@dataclass(frozen=True)
class Reading:
    """One look at the job; None (or a GPU left out) means not measured."""

    cpu_ratio: float | None = None
    memory_used: float | None = None
    memory_ratio: float | None = None
    disk_used: float | None = None
    disk_ratio: float | None = None
    gpus: dict[str, GpuUsage] = field(default_factory=dict)

    def merged(self, newer: Reading) -> Reading:
        """``newer`` where it measured something, this reading elsewhere."""
        values = {
            f.name: getattr(newer, f.name)
            for f in dataclasses.fields(self)
            if f.name != "gpus" and getattr(newer, f.name) is not None
        }
        return dataclasses.replace(self, **values, gpus={**self.gpus, **newer.gpus})


@dataclass
class Totals:
    """What the end-of-run summary shows: peak memory, mean CPU and mean GPU over the samples."""

    samples: int = 0
    peak_memory: float | None = None
    cpu: list[float] = field(default_factory=list)
    gpu: list[float] = field(default_factory=list)

    def add(self, reading: Reading) -> None:
        self.samples += 1
        if reading.memory_used is not None:
            self.peak_memory = max(self.peak_memory or 0.0, reading.memory_used)
        if reading.cpu_ratio is not None:
            self.cpu.append(reading.cpu_ratio)
        self.gpu.extend(g.utilization_ratio for g in reading.gpus.values())

    @staticmethod
    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None


def choose_target(
    pid: int | None, wrapped: bool, report: Callable[[str], None], cgroup_root: Path = ROOT, proc: Path = PROC
) -> Target | None:
    """``--pid``'s tree, else the wrapped command's tree, else the pod's other containers when it
    shares its process namespace, else the sidecar's own cgroup (v2)."""
    if pid is not None:
        try:
            return ProcessTree(pid, cgroup_root=cgroup_root, proc=proc)
        except psutil.Error as exc:
            report(f"no CPU or memory series: cannot watch pid {pid} ({exc.__class__.__name__})")
            return None
    if wrapped:
        return ProcessTree(os.getpid(), include_root=False, cgroup_root=cgroup_root, proc=proc)
    if shared_pod(proc):
        return PodProcesses(cgroup_root, proc)
    cgroup = Cgroup.of("self", cgroup_root, proc)
    if cgroup is None:
        report(f"no CPU or memory series: no cgroup v2 at {cgroup_root} (pass --pid PID, or wrap the command)")
        return None
    return CgroupTarget(cgroup)


class Sampler:
    def __init__(
        self,
        interval: float,
        report: Callable[[str], None],
        target: Target | None,
        disk_path: str | None,
        gpus: bool = True,
    ) -> None:
        self.interval = interval
        self.report = report
        self.target = target
        self.disk_path = disk_path
        self.use_gpus = gpus
        self.gpus: Gpus | None = None
        self.latest = Reading()
        self.totals = Totals()
        self.version = 0
        self.listeners: list[Callable[[Reading], None]] = []
        self._told: set[str] = set()
        self._failed: set[str] = set()
        self._measured_target = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="system-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Takes a last sample (after the job exits it changes nothing), then lets NVML go."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sample(final=True)
        if self.gpus is not None:
            self.gpus.close()

    def _run(self) -> None:
        if self.use_gpus:
            self.gpus = Gpus.open(self.report)
        self.sample()
        while not self._stopping.wait(self.interval):
            self.sample()

    def _tell(self, message: str) -> None:
        if message not in self._told:
            self._told.add(message)
            self.report(message)

    def sample(self, final: bool = False) -> Reading:
        """One look at every source; a source that raises is dropped for good, with one log line."""
        values: dict[str, Any] = {}  # Reading's fields, by name
        for name, read in (("process", self._read_target), ("disk", self._read_disk), ("GPU", self._read_gpus)):
            if name in self._failed:
                continue
            try:
                values.update(read(final))
            except Exception as exc:  # sampling must never stop the sidecar
                self._failed.add(name)
                self._tell(
                    f"system sampling of the {name} failed ({exc.__class__.__name__}: {exc}); left out from now on"
                )
        reading = Reading(**values)
        self.totals.add(reading)
        self.latest = self.latest.merged(reading)
        self.version += 1
        for listener in self.listeners:
            listener(reading)
        return reading

    def _read_target(self, final: bool) -> dict[str, object]:
        if self.target is None:
            return {}
        usage = self.target.read()
        if usage is None:
            if self._measured_target:
                self._tell(f"{self.target.describe} has no process left; keeping its last sample")
            elif final:
                self._tell(f"no CPU or memory series: {self.target.describe} ended before it could be sampled")
            return {}
        self._measured_target = True
        if usage.missing:
            self._tell(f"some system series are absent: {usage.missing}")
        return {k: v for k, v in dataclasses.asdict(usage).items() if k != "missing" and v is not None}

    def _read_disk(self, final: bool) -> dict[str, object]:
        if self.disk_path is None:
            return {}
        try:
            disk = psutil.disk_usage(self.disk_path)
        except OSError as exc:
            self._tell(f"no disk series: {self.disk_path}: {exc.strerror or exc}")
            return {}
        return {"disk_used": float(disk.used), "disk_ratio": disk.used / (disk.used + disk.free)}

    def _read_gpus(self, final: bool) -> dict[str, object]:
        return {"gpus": self.gpus.read()} if self.gpus is not None else {}
