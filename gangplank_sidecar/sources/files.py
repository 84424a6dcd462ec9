"""Following log files like ``tail -F``: files that appear later, rotation and truncation.

watchfiles (inotify on Linux) wakes the follower when something happens to a followed
path; each wake-up is one pass over the files, so idle costs next to nothing and a burst
of writes is read in one go. A pass every RESCAN_MS also covers what no event announced
(a write just before the watch began, a watched directory that went away).

A pass reads each open file to its end, then looks at the path: gone or another inode
means the file was rotated (it is finished, and the new file is read from the start); a
file shorter than our offset, or whose first bytes changed, was truncated (copytruncate)
and is read again from the start.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from gangplank_sidecar.sources.checkpoint import HEAD, Checkpoints, Position, Saved
from gangplank_sidecar.sources.lines import LineSplitter
from gangplank_sidecar.sources.stdin import Feed

CHUNK = 1 << 16
DEBOUNCE_MS, STEP_MS = 200, 50
RESCAN_MS = 1000
END_GRACE = 2.0
STOP_POLL = 0.2  # how soon a stop signal is seen


@dataclass
class Counts:
    """What the follower did, for its tests and its log."""

    opens: int = 0
    lines: int = 0
    rotations: int = 0
    truncations: int = 0
    resumed: int = 0


@dataclass
class _Tail:
    """One open file: how far we have read, where the last whole line ended, its first bytes."""

    path: str
    fd: int
    dev: int
    ino: int
    offset: int = 0
    line_end: int = 0
    head: bytes = b""
    splitter: LineSplitter = field(default_factory=LineSplitter)

    def position(self) -> Position:
        return Position(self.dev, self.ino, self.line_end, self.head)


def _could_match(path: str, pattern: str) -> bool:
    """Whether ``path`` is a file ``pattern`` names, or a directory on the way to one."""
    want, have = Path(pattern).parts, Path(path).parts
    return len(have) <= len(want) and all(
        h == w or (glob.has_magic(w) and fnmatch.fnmatchcase(h, w)) for h, w in zip(have, want)
    )


def _anchor(pattern: str) -> str:
    """The deepest existing directory above the first wildcard in ``pattern``'s directory."""
    parts = Path(pattern).parent.parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    base = Path(*parts[: max(fixed, 1)])
    while not base.is_dir():
        base = base.parent
    return str(base)


def _same_file(path: str, tail: _Tail) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return True  # gone: nothing to read there
    return (st.st_dev, st.st_ino) == (tail.dev, tail.ino)


def watch(
    dirs: list[str],
    stop: threading.Event,
    timeout_ms: int,
    watch_filter: Callable[[watchfiles.Change, str], bool] | None = None,
) -> Iterator[set[tuple[watchfiles.Change, str]]]:
    """watchfiles' watch as the followers use it: these directories only (no recursion), a batch at
    least every ``timeout_ms`` even when nothing changed, and an end of its own when ``stop`` is set."""
    return watchfiles.watch(
        *dirs,
        watch_filter=watch_filter or watchfiles.DefaultFilter(),
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        stop_event=stop,
        rust_timeout=timeout_ms,
        yield_on_timeout=True,
        recursive=False,
        raise_interrupt=False,
    )


class Follower:
    """Follows every file the patterns name; each file is its own stream, named by its path."""

    def __init__(
        self,
        patterns: Sequence[str],
        feed: Feed,
        report: Callable[[str], None],
        checkpoints: Checkpoints | None = None,
        version: Callable[[], int] = lambda: 0,
    ) -> None:
        self.patterns = list(dict.fromkeys(os.path.abspath(os.path.expanduser(p)) for p in patterns))
        self.feed = feed
        self.report = report
        self.checkpoints = checkpoints
        self.version = version
        self.counts = Counts()
        self.opened: set[str] = set()
        self.last_data = time.monotonic()
        self._tails: dict[str, _Tail] = {}
        self._unreadable: set[str] = set()

    def paths(self) -> list[str]:
        """The files the patterns name now (a literal path whether it exists or not)."""
        found: list[str] = []
        for pattern in self.patterns:
            if glob.has_magic(pattern):
                found.extend(p for p in sorted(glob.glob(pattern)) if os.path.isfile(p))
            else:
                found.append(pattern)
        return list(dict.fromkeys(found))

    def resume(self) -> None:
        """Replays each file up to its checkpoint: that state was delivered before a restart.

        Call it before the sink starts, then tell the sink the state is delivered.
        """
        saved = self.checkpoints.saved if self.checkpoints else {}
        for path in self.paths():
            if path not in saved:
                self._take_over(path, self.rotated(path)[-1:])
                continue
            tail = self._open(path)
            if tail is None:
                continue
            head = os.pread(tail.fd, HEAD, 0)
            if saved[path].matches(tail.dev, tail.ino, os.fstat(tail.fd).st_size, head):
                self._read(tail, limit=saved[path].offset)
                self.counts.resumed += 1
                self.report(f"resuming {path} at byte {tail.line_end}")
            elif rotated := self.rotated(path)[-1:]:
                self._forget(tail)
                self._take_over(path, rotated, saved[path])
            else:
                self.report(f"{path} is not the file of the last checkpoint; reading it from the start")

    def rotated(self, path: str) -> list[str]:
        """The rotated files of ``path`` that are still plain, oldest first (none by default)."""
        return []

    def _take_over(self, path: str, rotated: list[str], saved: Saved | None = None) -> None:
        """Reads a rotated file first, as the stream of ``path``: from ``saved`` if that is its checkpoint,
        else whole; once it is read to its end, the next pass goes on with ``path``."""
        for old in rotated:
            tail = self._open(path, at=old)
            if tail is None:
                continue
            if saved is not None and saved.matches(
                tail.dev, tail.ino, os.fstat(tail.fd).st_size, os.pread(tail.fd, HEAD, 0)
            ):
                self._read(tail, limit=saved.offset)
                self.counts.resumed += 1
                self.report(f"resuming {path} in its rotated file {old} at byte {tail.line_end}")
            else:
                self.report(f"reading the rotated file {old} before {path}")
            return

    def _forget(self, tail: _Tail) -> None:
        os.close(tail.fd)
        del self._tails[tail.path]

    def scan(self) -> None:
        """One pass: read every open file to its end, then open, rotate or truncate as the paths say."""
        for path in dict.fromkeys([*self._tails, *self.paths()]):
            self._visit(path)

    def _visit(self, path: str) -> None:
        """Reads ``path``'s open file to its end, then opens the file the path names now if it is another."""
        tail = self._tails.get(path)
        if tail is not None:
            self._read(tail)
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == (tail.dev, tail.ino):
                return
            self._finish(tail)
            self.counts.rotations += 1
            self.report(f"{path} was rotated or removed; reading the next file there from the start")
            if skipped := [r for r in self.rotated(path)[-1:] if not _same_file(r, tail)]:
                self._take_over(path, skipped)  # rotated twice between two looks: that one first
                self._visit(path)
                return
        tail = self._open(path)
        if tail is not None:
            self._read(tail)

    def follow(self, stop: threading.Event, done: Callable[[], bool] = lambda: False) -> None:
        """Reads what there is, then what comes, until ``stop`` is set or ``done()``; then a last pass."""
        for path in self.paths():
            if not os.path.exists(path):
                self.report(f"waiting for {path}")
        self.scan()
        while not stop.is_set() and not done():
            dirs = self._watch_dirs()
            try:
                for _ in watch(dirs, stop, RESCAN_MS, self._relevant):
                    self.scan()
                    if done() or self._watch_dirs() != dirs:
                        break
            except OSError:  # a watched directory went away before the watch began
                stop.wait(RESCAN_MS / 1000)
        self.scan()

    def runs_ended(self, runs: Iterable[tuple[str, str | None]]) -> bool:
        """Every literal path opened, every run read from the files ended, nothing new for a while.

        ``runs``: the (source, status) of every run seen; a source knows the run state only through it.
        """
        literal = [p for p in self.patterns if not glob.has_magic(p)]
        if not self.opened or not self.opened.issuperset(literal):
            return False
        statuses = [status for source, status in runs if source in self.opened]
        if not statuses or any(status is None for status in statuses):
            return False
        return time.monotonic() - self.last_data >= END_GRACE

    def close(self) -> None:
        for tail in list(self._tails.values()):
            os.close(tail.fd)
        self._tails.clear()

    def _watch_dirs(self) -> list[str]:
        dirs = {_anchor(p) for p in self.patterns}
        for pattern in self.patterns:
            parent = os.path.dirname(pattern)
            if glob.has_magic(parent):
                dirs.update(d for d in glob.glob(parent) if os.path.isdir(d))
        return sorted(dirs)

    def _relevant(self, change: watchfiles.Change, path: str) -> bool:
        return path in self._tails or any(_could_match(path, p) for p in self.patterns)

    def _open(self, path: str, at: str | None = None) -> _Tail | None:
        """Opens ``path`` (or the file ``at``, read as ``path``'s stream) and follows it."""
        try:
            if not stat.S_ISREG(os.stat(at or path).st_mode):
                self._not_regular(path)
                return None
            fd = os.open(
                at or path, os.O_RDONLY | os.O_NONBLOCK
            )  # O_NONBLOCK: should a FIFO replace it, open() must not block
        except FileNotFoundError:
            return None
        except OSError as exc:
            if path not in self._unreadable:
                self._unreadable.add(path)
                self.report(f"cannot open {path}: {exc.strerror}")
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._not_regular(path)
            return None
        self._unreadable.discard(path)
        tail = self._tails[path] = _Tail(path, fd, st.st_dev, st.st_ino)
        self.counts.opens += 1
        self.opened.add(path)
        return tail

    def _not_regular(self, path: str) -> None:
        if path not in self._unreadable:
            self._unreadable.add(path)
            self.report(f"not following {path}: not a regular file")

    def _read(self, tail: _Tail, limit: int | None = None) -> None:
        if os.fstat(tail.fd).st_size < tail.offset or (tail.head and os.pread(tail.fd, len(tail.head), 0) != tail.head):
            self.counts.truncations += 1
            self.report(f"{tail.path} was truncated; reading it from the start")
            tail.offset = tail.line_end = 0
            tail.head = b""
            tail.splitter = LineSplitter()
        while limit is None or tail.offset < limit:
            chunk = os.pread(tail.fd, CHUNK if limit is None else min(CHUNK, limit - tail.offset), tail.offset)
            if not chunk:
                return
            self._take(tail, chunk)

    def _take(self, tail: _Tail, chunk: bytes) -> None:
        """Feeds the chunk's lines; after each, marks where it ended for the checkpoint."""
        start = tail.offset
        tail.offset += len(chunk)
        if len(tail.head) < HEAD:
            tail.head = (tail.head + chunk)[:HEAD]
        self.last_data = time.monotonic()
        i = 0
        while (j := chunk.find(b"\n", i)) >= 0:
            self._lines(tail, tail.splitter.feed(chunk[i : j + 1]))
            i = j + 1
            tail.line_end = start + i
            if self.checkpoints is not None:
                self.checkpoints.mark(tail.path, self.version(), tail.position())
        self._lines(tail, tail.splitter.feed(chunk[i:]))

    def _lines(self, tail: _Tail, lines: Iterable[bytes]) -> None:
        for line in lines:
            self.counts.lines += 1
            self.feed(tail.path, line)

    def _finish(self, tail: _Tail) -> None:
        self._lines(tail, tail.splitter.flush())
        os.close(tail.fd)
        del self._tails[tail.path]


def unusable(pattern: str) -> str | None:
    """Why a FILE given on the command line can never be followed, or None.

    A missing file is fine (it is waited for), and so is a glob (it names regular files only);
    a directory, a device, a FIFO or a file we may not read is a mistake to say at start.
    """
    if not pattern.strip():
        return "FILE '': an empty path"
    if glob.has_magic(pattern):
        return None
    path = os.path.expanduser(pattern)
    try:
        mode = os.stat(path).st_mode  # not opened first: opening a FIFO would release a writer waiting on it
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read {pattern}: {exc.strerror}"
    if stat.S_ISDIR(mode):
        return f"{pattern} is a directory (name the files in it, or a glob such as '{os.path.join(pattern, '*.log')}')"
    if not stat.S_ISREG(mode):
        return (
            f"{pattern} is not a regular file: only files can be followed (pipe a stream to the sidecar's stdin "
            "instead)"
        )
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as exc:
        return f"cannot read {pattern}: {exc.strerror}"
    return None


def follow(
    follower: Follower,
    runs: Callable[[], Iterable[tuple[str, str | None]]] | None,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Follows until ``stopped()`` (a signal: SIGTERM, Ctrl-C) or, given ``runs`` (--exit-on-end), every run's end.

    The files are read in a thread of their own: the main thread only waits, looking at
    ``stopped`` (set by a signal handler, which watchfiles would not let through), and the
    reader makes its last pass before the caller delivers the final state.
    """
    stop, finished = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def read() -> None:
        try:
            follower.follow(stop, (lambda: follower.runs_ended(runs())) if runs is not None else (lambda: False))
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)
        finally:
            finished.set()

    threading.Thread(target=read, name="follow", daemon=True).start()
    try:
        while not finished.wait(STOP_POLL) and not stopped():
            pass
    finally:
        stop.set()
        finished.wait()
        follower.close()
    if failed:
        raise failed[0]
