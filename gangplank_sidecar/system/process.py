"""CPU and memory of a job as the kernel accounts them: a process tree, or a cgroup.

Each target turns cumulative counters into one ``Usage`` per sample. A ratio needs two
samples, so the first sample of a target has memory but no CPU ratio.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from gangplank_sidecar.system.cgroup import PROC, ROOT, Cgroup


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
    """

    def __init__(self, pid: int, include_root: bool = True, cgroup_root: Path = ROOT, proc: Path = PROC) -> None:
        self.root = psutil.Process(pid)
        self.include_root = include_root
        self.cgroup_root = cgroup_root
        self.proc = proc
        self.describe = f"the process tree of pid {pid}" if include_root else "the wrapped command's process tree"
        self._last: dict[psutil.Process, float] = {}
        self._last_time: tuple[float, float] | None = None

    def _members(self) -> list[psutil.Process]:
        try:
            children = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [self.root, *children] if self.include_root else children

    def read(self) -> Usage | None:
        """None when no process of the tree is left (or none has started yet)."""
        wall, mono = time.time(), time.monotonic()
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
                max(0.0, t - self._last[p]) if p in self._last else t if p.create_time() >= since else 0.0
                for p, t in cpu.items()
            )
            limit = cgroup.cpu_limit() if cgroup is not None else math.inf
            ratio = _ratio(used, mono - last_mono, min(len(cpus), limit))
        self._last, self._last_time = cpu, (wall, mono)
        total = _memory_total(cgroup)
        return Usage(ratio, float(rss), rss / total)


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
