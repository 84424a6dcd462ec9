"""Where each followed file was, so that a restarted sidecar resumes instead of pushing again.

A position names a file by (device, inode) and by a hash of its first bytes, and gives the
offset of the end of a line. The reading thread marks, after each line, the store version
that line produced; a position is written only once the sink has delivered that version,
so the state file never claims more than the gateway holds. A restart replays each file up
to its position without pushing (that state was delivered) and pushes what follows.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from gangplank_sidecar.environment import xdg_dir

HEAD = 256
MAX_MARKS = 4096
MAX_NOTED_RUNS = 16
POLL = 0.1
FORMAT = 1


def head_hash(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


@dataclass(frozen=True)
class Position:
    """A line end in one file: ``head`` is its first bytes (at most ``HEAD``)."""

    dev: int
    ino: int
    offset: int
    head: bytes

    def saved(self) -> Saved:
        return Saved(self.dev, self.ino, self.offset, len(self.head), head_hash(self.head))


@dataclass(frozen=True)
class Saved:
    """A position as the state file holds it."""

    dev: int
    ino: int
    offset: int
    head_len: int
    head_sha256: str

    def matches(self, dev: int, ino: int, size: int, head: bytes) -> bool:
        """Whether a file is still the one this position is in, and still that long."""
        return (
            (dev, ino) == (self.dev, self.ino)
            and size >= self.offset
            and len(head) >= self.head_len
            and head_hash(head[: self.head_len]) == self.head_sha256
        )


def default_path(patterns: Sequence[str]) -> Path:
    """Under $XDG_STATE_HOME/gangplank (or ~/.local/state/gangplank), one file per set of paths."""
    key = "\0".join(sorted(os.path.abspath(os.path.expanduser(p)) for p in patterns))
    return (
        xdg_dir("XDG_STATE_HOME", ".local/state")
        / "gangplank"
        / f"follow-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    )


class Checkpoints:
    """Positions per followed path: marked by the reader, written as the sink delivers them."""

    def __init__(self, path: Path, report: Callable[[str], None], interval: float = POLL) -> None:
        """``interval``: the least time between two writes of the state file."""
        self.path = path
        self.interval = interval
        self.report = report
        self.streams: dict[str, dict[str, str]] = {}
        self.saved: dict[str, Saved] = self._load()
        self.writes = 0
        self._marks: dict[str, deque[tuple[int, Position]]] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._failing = False
        self._dirty = False
        self._delivered: Callable[[], int] = lambda: 0
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)

    def _load(self) -> dict[str, Saved]:
        try:
            data = json.loads(self.path.read_text())
            saved = {name: Saved(**fields) for name, fields in data["files"].items()}
            self.streams = {str(k): {str(r): str(j) for r, j in v.items()} for k, v in data.get("streams", {}).items()}
            return saved
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            self.report(
                f"ignoring the state file {self.path} ({exc.__class__.__name__}); reading every file from the start"
            )
            return {}

    def mark(self, name: str, version: int, position: Position) -> None:
        """After each line: ``position`` is safe to save once ``version`` is delivered."""
        with self._cond:
            marks = self._marks.setdefault(name, deque())
            if marks and (marks[-1][0] == version or len(marks) >= MAX_MARKS):
                marks[-1] = (max(version, marks[-1][0]), position)
                return
            marks.append((version, position))
            if len(marks) == 1:
                self._cond.notify()

    def note(self, stream: str, run: str, job: str) -> None:
        """The job a stream's run named in its start record, which a restart may not find in the files left."""
        with self._cond:
            runs = self.streams.setdefault(stream, {})
            if runs.get(run) == job:
                return
            runs[run] = job
            while len(runs) > MAX_NOTED_RUNS:
                del runs[next(iter(runs))]
            self._dirty = True
            self._cond.notify()

    def drop(self, gone: Callable[[str], bool]) -> None:
        """Forgets the positions (and notes) that ``gone`` names: gone for good (a deleted pod's logs)."""
        with self._cond:
            for name in [n for n in self.streams if gone(n)]:
                del self.streams[name]
            for name in [n for n in self._marks if gone(n)]:
                del self._marks[name]
            for name in [n for n in self.saved if gone(n)]:
                del self.saved[name]
                self._dirty = True

    def start(self, delivered: Callable[[], int]) -> None:
        """``delivered``: the store version up to which every change has been delivered."""
        self._delivered = delivered
        self._thread.start()

    def close(self) -> None:
        """Writes what the final push delivered."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()
        self.write()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._dirty or any(self._marks.values()))
                if self._stopping:
                    return
            self.write()
            with self._cond:
                self._cond.wait_for(lambda: self._stopping, self.interval)

    def write(self) -> None:
        """Saves every position whose version is delivered, atomically (temporary file, rename)."""
        delivered = self._delivered()
        changed = False
        with self._cond:
            for name, marks in self._marks.items():
                while marks and marks[0][0] <= delivered:
                    self.saved[name] = marks.popleft()[1].saved()
                    changed = True
            changed, self._dirty = changed or self._dirty, False
            if not changed:
                return
            data = {
                "format": FORMAT,
                "files": {name: asdict(saved) for name, saved in sorted(self.saved.items())},
                **(
                    {"streams": {name: dict(runs) for name, runs in sorted(self.streams.items())}}
                    if self.streams
                    else {}
                ),
            }
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", dir=self.path.parent)
            with os.fdopen(fd, "w") as out:
                json.dump(data, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            self.writes += 1
            self._failing = False
        except OSError as exc:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            if not self._failing:
                self._failing = True
                self.report(f"cannot write the state file {self.path}: {exc}")
