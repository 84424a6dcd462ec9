"""cgroup v2 accounting files, read from a root that can be pointed anywhere (tests use fixtures).

Only v2 is read: it is what a container sees of itself, so a Kubernetes sidecar that does not
share its pod's process namespace still reports the container it runs in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")


def _uint(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def parse_keyed(text: str) -> dict[str, int]:
    """``cpu.stat`` and ``memory.stat``: one ``key value`` pair a line."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, number = line.strip().partition(" ")
        if key and (value := _uint(number)) is not None:
            out[key] = value
    return out


def parse_cpu_max(text: str) -> float:
    """``cpu.max`` (``$MAX $PERIOD``, ``max`` for no quota) as a number of CPUs; inf when unlimited."""
    fields = [_uint(f) for f in text.split()]
    if len(fields) != 2 or fields[0] is None or not fields[1]:
        return math.inf
    return fields[0] / fields[1]


def parse_memory_max(text: str) -> float:
    """``memory.max``: bytes, or ``max`` for no limit (inf)."""
    value = _uint(text)
    return math.inf if value is None else float(value)


def own_path(proc_cgroup: str) -> str | None:
    """The v2 path in a ``/proc/PID/cgroup`` text (its ``0::/path`` line)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


@dataclass(frozen=True)
class Cgroup:
    """One cgroup: its directory under ``root``; limits are the tightest on the way to the root."""

    root: Path
    path: str = "/"

    @classmethod
    def of(cls, pid: int | str = "self", root: Path = ROOT, proc: Path = PROC) -> Cgroup | None:
        """The v2 cgroup of a process, or None when there is no v2 hierarchy at ``root``."""
        if not (root / "cgroup.controllers").exists():
            return None
        text = read_text(proc / str(pid) / "cgroup")
        path = own_path(text) if text is not None else None
        return None if path is None else cls(root, path)

    @property
    def dir(self) -> Path:
        return self.root.joinpath(*PurePosixPath(self.path).parts[1:])

    def _dirs(self) -> list[Path]:
        """This cgroup's directory and its ancestors up to ``root``, innermost first."""
        here, dirs = self.dir, []
        while True:
            dirs.append(here)
            if here == self.root or here.parent == here:
                return dirs
            here = here.parent

    def cpu_seconds(self) -> float | None:
        """CPU time used by every process in the cgroup since it was made (``usage_usec``)."""
        text = read_text(self.dir / "cpu.stat")
        usage = parse_keyed(text).get("usage_usec") if text is not None else None
        return None if usage is None else usage / 1e6

    def cpu_limit(self) -> float:
        """CPUs the cgroup may use by its ``cpu.max`` quota (inf: no quota anywhere up the tree)."""
        limits = [parse_cpu_max(text) for d in self._dirs() if (text := read_text(d / "cpu.max")) is not None]
        return min(limits, default=math.inf)

    def memory_used(self) -> int | None:
        """The working set: ``memory.current`` less the inactive file cache the kernel can drop."""
        current = read_text(self.dir / "memory.current")
        if current is None:
            return None
        stat = read_text(self.dir / "memory.stat")
        inactive = parse_keyed(stat).get("inactive_file", 0) if stat is not None else 0
        used = _uint(current)
        return None if used is None else max(0, used - inactive)

    def memory_limit(self) -> float:
        limits = [parse_memory_max(text) for d in self._dirs() if (text := read_text(d / "memory.max")) is not None]
        return min(limits, default=math.inf)
