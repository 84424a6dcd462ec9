"""The file follower on real files: rotation, truncation, late files, several files, checkpoints.

Most tests drive one pass at a time (``scan``), so what happens between two looks is
exact; the ``follow`` tests run the real watchfiles loop in a thread. Every test asserts
on the follower's counters too, as mtail's tests do.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gangplank_sidecar.sources.checkpoint import HEAD, Checkpoints, Position, Saved, default_path, head_hash
from gangplank_sidecar.sources.files import Counts, Follower


class Lines:
    """A feed that records (source, line)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.reports: list[str] = []

    def __call__(self, source: str, line: bytes) -> None:
        self.got.append((source, line))

    def of(self, path: Path) -> list[bytes]:
        return [line for source, line in self.got if source == str(path)]


def make(
    *patterns: Path | str, checkpoints: Checkpoints | None = None, version: Callable[[], int] = lambda: 0
) -> tuple[Follower, Lines]:
    lines = Lines()
    return Follower([str(p) for p in patterns], lines, lines.reports.append, checkpoints, version), lines


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def following() -> Iterator[Callable[[Follower], None]]:
    """Runs ``Follower.follow`` (real watchfiles) in a thread until the test ends."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(follower: Follower) -> None:
        thread = threading.Thread(target=follower.follow, args=(stop,), daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def test_an_unseen_file_is_read_from_the_start_and_a_partial_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    log.write_bytes(b"one\ntwo\r\nthr")
    follower, lines = make(log)
    follower.scan()
    assert lines.of(log) == [b"one", b"two\r"]
    append(log, b"ee\n")
    follower.scan()
    assert lines.of(log) == [b"one", b"two\r", b"three"]
    assert follower.counts == Counts(opens=1, lines=3)


def test_rotation_by_rename_finishes_the_old_file_then_reads_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    log.write_bytes(b"1\n")
    follower, lines = make(log)
    follower.scan()
    with open(log, "ab") as writer:  # the writer still has the old file open
        log.rename(tmp_path / "m.log.1")
        writer.write(b"late\n")
    log.write_bytes(b"2\n")
    follower.scan()
    assert lines.of(log) == [b"1", b"late", b"2"]
    assert follower.counts == Counts(opens=2, lines=3, rotations=1)
    assert lines.reports == [f"{log} was rotated or removed; reading the next file there from the start"]


def test_rotation_with_the_path_missing_for_a_while(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    log.write_bytes(b"1\nunfinished")
    follower, lines = make(log)
    follower.scan()
    log.rename(tmp_path / "m.log.1")
    follower.scan()
    assert lines.of(log) == [b"1", b"unfinished"]
    log.write_bytes(b"2\n")
    follower.scan()
    assert lines.of(log) == [b"1", b"unfinished", b"2"]
    assert follower.counts == Counts(opens=2, lines=3, rotations=1)


def test_copytruncate_starts_over(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    log.write_bytes(b"first run, line 1\nfirst run, line 2\n")
    follower, lines = make(log)
    follower.scan()
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, b"second\n")
    follower.scan()
    assert lines.of(log) == [b"first run, line 1", b"first run, line 2", b"second"]
    assert follower.counts == Counts(opens=1, lines=3, truncations=1)


def test_truncated_and_regrown_past_the_old_offset_between_two_looks(tmp_path: Path) -> None:
    """Size alone cannot tell: the file is longer than before, but its first bytes changed."""
    log = tmp_path / "m.log"
    old = [b'{"gangplank": 1, "event": "epoch", "run": "A", "epoch": %d}' % i for i in range(8)]
    log.write_bytes(b"\n".join(old) + b"\n")
    follower, lines = make(log)
    follower.scan()
    offset = log.stat().st_size
    new = [b'{"gangplank": 1, "event": "epoch", "run": "B", "epoch": %d}' % i for i in range(12)]
    with open(log, "r+b") as f:
        f.truncate(0)
        f.write(b"\n".join(new) + b"\n")
    assert log.stat().st_size > offset > HEAD
    follower.scan()
    assert lines.of(log) == old + new
    assert follower.counts == Counts(opens=1, lines=20, truncations=1)


def test_a_file_that_grows_without_changing_its_start_is_not_truncated(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    log.write_bytes(b"short\n")  # shorter than HEAD: the head grows with the file
    follower, lines = make(log)
    follower.scan()
    append(log, b"x" * 400 + b"\n")
    follower.scan()
    append(log, b"more\n")
    follower.scan()
    assert lines.of(log) == [b"short", b"x" * 400, b"more"]
    assert follower.counts == Counts(opens=1, lines=3)


def test_a_file_created_late_in_a_directory_created_late(tmp_path: Path) -> None:
    log = tmp_path / "later" / "deeper" / "m.log"
    follower, lines = make(log)
    follower.scan()
    assert follower.counts == Counts()
    log.parent.mkdir(parents=True)
    log.write_bytes(b"hello\n")
    follower.scan()
    assert lines.of(log) == [b"hello"]
    assert follower.counts == Counts(opens=1, lines=1)


def test_two_files_are_two_streams_and_a_glob_finds_new_ones(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    a.write_bytes(b"a1\n")
    b.write_bytes(b"b1\n")
    (tmp_path / "other.txt").write_bytes(b"not followed\n")
    follower, lines = make(tmp_path / "*.jsonl")
    follower.scan()
    c.write_bytes(b"c1\n")
    append(a, b"a2\n")
    follower.scan()
    assert lines.got == [(str(a), b"a1"), (str(b), b"b1"), (str(a), b"a2"), (str(c), b"c1")]
    assert follower.counts == Counts(opens=3, lines=4)


def test_follow_with_watchfiles_late_file_rotation_and_truncation(tmp_path: Path, following) -> None:
    log = tmp_path / "logs" / "m.log"
    follower, lines = make(log)
    following(follower)
    time.sleep(0.3)
    log.parent.mkdir()
    log.write_bytes(b"1\n")
    wait_for(lambda: lines.of(log) == [b"1"])
    log.rename(tmp_path / "logs" / "m.log.1")  # logrotate: rename, create, write
    log.write_bytes(b"2\n")
    wait_for(lambda: lines.of(log) == [b"1", b"2"])
    with open(log, "r+b") as f:  # copytruncate
        f.truncate(0)
    append(log, b"3 after truncation\n")
    wait_for(lambda: lines.of(log) == [b"1", b"2", b"3 after truncation"])
    assert follower.counts == Counts(opens=2, lines=3, rotations=1, truncations=1)


def test_follow_two_files_at_once(tmp_path: Path, following) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    follower, lines = make(a, b)
    following(follower)
    for i in range(3):
        append(a, b"a%d\n" % i)
        append(b, b"b%d\n" % i)
    wait_for(lambda: len(lines.got) == 6)
    assert lines.of(a) == [b"a0", b"a1", b"a2"]
    assert lines.of(b) == [b"b0", b"b1", b"b2"]
    assert follower.counts == Counts(opens=2, lines=6)


# Checkpoints


def test_a_position_is_saved_only_once_its_version_is_delivered(tmp_path: Path) -> None:
    state = tmp_path / "state" / "follow.json"
    checkpoints = Checkpoints(state, print)
    delivered = [0]
    checkpoints._delivered = lambda: delivered[0]
    p1, p2 = Position(1, 2, 10, b"head"), Position(1, 2, 20, b"head")
    checkpoints.mark("/x.log", 5, p1)
    checkpoints.mark("/x.log", 7, p2)
    checkpoints.write()
    assert not state.exists()
    delivered[0] = 6
    checkpoints.write()
    saved = {"dev": 1, "ino": 2, "offset": 10, "head_len": 4, "head_sha256": head_hash(b"head")}
    assert json.loads(state.read_text()) == {"format": 1, "files": {"/x.log": saved}}
    delivered[0] = 7
    checkpoints.write()
    assert json.loads(state.read_text())["files"]["/x.log"]["offset"] == 20
    assert checkpoints.writes == 2
    assert os.listdir(state.parent) == ["follow.json"]  # no temporary file left behind
    assert Checkpoints(state, print).saved == {"/x.log": Saved(1, 2, 20, 4, head_hash(b"head"))}


def test_a_line_that_changes_nothing_moves_the_last_mark_on(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path / "s.json", print)
    checkpoints._delivered = lambda: 3
    checkpoints.mark("/x.log", 3, Position(1, 2, 10, b""))
    checkpoints.mark("/x.log", 3, Position(1, 2, 15, b""))
    checkpoints.write()
    assert checkpoints.saved["/x.log"].offset == 15


def test_a_broken_state_file_is_reported_and_ignored(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    state.write_text("{not json")
    reports: list[str] = []
    assert Checkpoints(state, reports.append).saved == {}
    assert reports == [f"ignoring the state file {state} (JSONDecodeError); reading every file from the start"]


def test_default_state_file_is_keyed_by_the_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    first = default_path(["a.log", "b.log"])
    assert first.parent == tmp_path / "xdg" / "gangplank"
    assert first == default_path([str(tmp_path / "b.log"), str(tmp_path / "a.log")])
    assert first != default_path(["a.log"])
    monkeypatch.setenv("XDG_STATE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path(["a.log"]).parent == tmp_path / "home" / ".local" / "state" / "gangplank"


def test_resume_replays_up_to_the_checkpoint_then_reads_on(tmp_path: Path) -> None:
    log, state = tmp_path / "m.log", tmp_path / "s.json"
    log.write_bytes(b"1\n2\n")
    version = [0]
    checkpoints = Checkpoints(state, print)
    checkpoints._delivered = lambda: version[0]
    follower, _ = make(log, checkpoints=checkpoints, version=lambda: version[0])
    follower.scan()
    checkpoints.write()
    append(log, b"3\n")

    again = Checkpoints(state, print)
    follower, lines = make(log, checkpoints=again)
    follower.resume()
    assert lines.of(log) == [b"1", b"2"]  # replayed before any sink starts
    follower.scan()
    assert lines.of(log) == [b"1", b"2", b"3"]
    assert follower.counts == Counts(opens=1, lines=3, resumed=1)
    assert lines.reports == [f"resuming {log} at byte 4"]


def test_resume_reads_a_different_file_from_the_start(tmp_path: Path) -> None:
    log, state = tmp_path / "m.log", tmp_path / "s.json"
    log.write_bytes(b"old run\n")
    checkpoints = Checkpoints(state, print)
    follower, _ = make(log, checkpoints=checkpoints)
    follower.scan()
    checkpoints.write()
    log.unlink()
    log.write_bytes(b"new run, longer than the old one\n")  # another inode, another head

    follower, lines = make(log, checkpoints=Checkpoints(state, print))
    follower.resume()
    assert lines.got == []
    follower.scan()
    assert lines.of(log) == [b"new run, longer than the old one"]
    assert follower.counts == Counts(opens=1, lines=1)
    assert lines.reports == [f"{log} is not the file of the last checkpoint; reading it from the start"]


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=30),
    looks=st.sets(st.integers(min_value=0, max_value=29), max_size=10),
    restarts=st.sets(st.integers(min_value=0, max_value=29), max_size=3),
)
def test_any_chunking_and_restarts_read_every_line_once(
    chunks: list[bytes], looks: set[int], restarts: set[int]
) -> None:
    """Written in any pieces, looked at any time, restarted anywhere: every whole line, once, in order."""
    with tempfile.TemporaryDirectory() as tmp:
        log, state = Path(tmp) / "m.log", Path(tmp) / "s.json"
        log.touch()
        checkpoints = Checkpoints(state, print)
        follower, lines = make(log, checkpoints=checkpoints)
        written = b""
        for i, chunk in enumerate(chunks):
            append(log, chunk)
            written += chunk
            if i in looks:
                follower.scan()
            if i in restarts:
                follower.scan()
                checkpoints.write()
                follower.close()
                checkpoints = Checkpoints(state, print)
                follower, lines = make(log, checkpoints=checkpoints)
                follower.resume()
                assert lines.of(log) == written.split(b"\n")[:-1]  # replayed up to the checkpoint
        follower.scan()
        assert lines.of(log) == written.split(b"\n")[:-1]
        follower.close()
