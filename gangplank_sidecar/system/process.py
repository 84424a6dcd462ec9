"""CPU and memory of a job as the kernel accounts them: a process tree, or a cgroup.

Each target turns cumulative counters into one ``Usage`` per sample. A ratio needs two
samples, so the first sample of a target has memory but no CPU ratio.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from gangplank_sidecar.system.cgroup import PROC, ROOT, Cgroup, read_text

_TICK = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    cpu_ratio: float | None = None
    memory_used: float | None = None
    memory_ratio: float | None = None
    missing: str | None = None  # why a series is absent, for the log


def _ratio(cpu_seconds: float, wall_seconds: float, cpus: float) -> float | None:
    return cpu_seconds / (wall_seconds * cpus) if wall_seconds > 0 and cpus > 0 else None


def _memory_total(cgroup: Cgroup | None) -> float:
    limit = cgroup.memory_limit() if cgroup is not None else math.inf
    return min(limit, psutil.virtual_memory().total)


class ProcessTree:
    """A process and all its descendants (``include_root=False``: only the descendants).

    CPU time is counted per process between two samples; a process born since the last
    sample counts whole. What a process used between the last sample and its exit is lost.
    The tree is walked through ``/proc/PID/task/TID/children``, so a sample costs the same on
    a machine with thousands of processes; psutil's walk (which reads every process) is the
    fallback for kernels without those files.
    """

    def __init__(
        self,
        pid: int,
        include_root: bool = True,
        cgroup_root: Path = ROOT,
        proc: Path = PROC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = psutil.Process(pid)
        self.clock = clock
        self.include_root = include_root
        self.cgroup_root = cgroup_root
        self.proc = proc
        self.describe = f"the process tree of pid {pid}" if include_root else "the wrapped command's process tree"
        self._last: dict[psutil.Process, float] = {}
        self._last_time: tuple[float, float] | None = None
        self._fast = (proc / "thread-self" / "children").exists()
        self._boot = psutil.boot_time()
        self._known: dict[int, psutil.Process] = {pid: self.root}

    def _started(self, p: psutil.Process) -> float:
        """Seconds from boot to the process' start, a clock tick early (the kernel counts whole ticks).

        psutil adds a boot time rounded to the second, so it is taken off again.
        """
        return p.create_time() - self._boot + _TICK

    def _children(self, pid: int) -> list[int]:
        pids: list[int] = []
        with contextlib.suppress(OSError):  # the process or one of its threads has just exited
            for task in (self.proc / str(pid) / "task").iterdir():
                pids += [int(child) for child in (task / "children").read_text().split()]
        return pids

    def _members(self) -> list[psutil.Process]:
        if not self._fast:
            try:
                children = self.root.children(recursive=True)
            except psutil.NoSuchProcess:
                return []
            return [self.root, *children] if self.include_root else children
        found, todo = [], self._children(self.root.pid)
        while todo:
            found.append(todo.pop())
            todo += self._children(found[-1])
        known: dict[int, psutil.Process] = {self.root.pid: self.root}
        for pid in found:
            try:
                known[pid] = self._known.get(pid) or psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
        self._known = known
        return list(known.values()) if self.include_root else [p for pid, p in known.items() if pid != self.root.pid]

    def read(self) -> Usage | None:
        """None when no process of the tree is left (or none has started yet)."""
        booted, mono = time.clock_gettime(time.CLOCK_BOOTTIME), self.clock()
        cpu: dict[psutil.Process, float] = {}
        rss, cpus, cgroup = 0, set[int](), None
        for p in self._members():
            try:
                with p.oneshot():
                    if p.status() == psutil.STATUS_ZOMBIE:  # exited, not yet waited for: nothing left to measure
                        continue
                    times, memory = p.cpu_times(), p.memory_info()
                    cpus.update(p.cpu_affinity() or ())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            cpu[p], rss = times.user + times.system, rss + memory.rss
            cgroup = cgroup or Cgroup.of(p.pid, self.cgroup_root, self.proc)
        if not cpu:
            return None
        ratio = None
        if self._last_time is not None:
            since, last_mono = self._last_time
            used = sum(
                max(0.0, t - self._last[p]) if p in self._last else t if self._started(p) >= since else 0.0
                for p, t in cpu.items()
            )
            limit = cgroup.cpu_limit() if cgroup is not None else math.inf
            ratio = _ratio(used, mono - last_mono, min(len(cpus), limit))
        self._last, self._last_time = cpu, (booted, mono)
        total = _memory_total(cgroup)
        return Usage(ratio, float(rss), rss / total)


def shared_pod(proc: Path = PROC) -> bool:
    """A Kubernetes pod with ``shareProcessNamespace``: its infra container ("pause") is PID 1."""
    return read_text(proc / "1" / "comm") == "pause\n"


class PodProcesses(ProcessTree):
    """The pod's other containers, seen through its shared process namespace: every process
    but PID 1 and those in the sidecar's own cgroup (the sidecar's container)."""

    def __init__(self, cgroup_root: Path = ROOT, proc: Path = PROC) -> None:
        super().__init__(os.getpid(), include_root=False, cgroup_root=cgroup_root, proc=proc)
        self.describe = "the pod's other containers"
        self._ours = read_text(proc / "self" / "cgroup")

    def _members(self) -> list[psutil.Process]:
        members = []
        for pid in psutil.pids():
            if pid == 1 or read_text(self.proc / str(pid) / "cgroup") in (None, self._ours):
                continue
            try:
                members.append(self._known.get(pid) or psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        self._known = {p.pid: p for p in members}
        return members


class CgroupTarget:
    """Every process in one cgroup (the sidecar's own, by default: its container)."""

    def __init__(self, cgroup: Cgroup, clock: Callable[[], float] = time.monotonic) -> None:
        self.cgroup = cgroup
        self.clock = clock
        self.describe = f"cgroup {cgroup.path}"
        self._last: tuple[float, float] | None = None

    def read(self) -> Usage:
        mono, seconds, memory = self.clock(), self.cgroup.cpu_seconds(), self.cgroup.memory_used()
        ratio = None
        if seconds is not None and self._last is not None:
            cpus = min(len(os.sched_getaffinity(0)), self.cgroup.cpu_limit())
            ratio = _ratio(seconds - self._last[1], mono - self._last[0], cpus)
        self._last = None if seconds is None else (mono, seconds)
        missing = [name for name, got in (("cpu.stat", seconds), ("memory.current", memory)) if got is None]
        why = f"no {' or '.join(missing)} in {self.cgroup.dir}" if missing else None
        if memory is None:
            return Usage(ratio, missing=why)
        return Usage(ratio, float(memory), memory / _memory_total(self.cgroup), why)
