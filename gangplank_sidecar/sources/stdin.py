"""Pipe mode: read stdin in chunks, echo every byte at once, hand complete lines on."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from gangplank_sidecar.sources.lines import LineSplitter
from gangplank_sidecar.sources.records import RecordFilter

CHUNK = 1 << 16

Feed = Callable[[str, bytes], None]  # one line of a stream
FeedLines = Callable[[str, Iterable[bytes]], None]  # the lines of one chunk of a stream


class Echo:
    """Copies bytes to an output; a closed output stops the echo, never the reading.

    ``records=False`` (``--echo text``) leaves the protocol records out; an empty chunk is the
    end of the stream, which lets out what the filter held back.
    """

    def __init__(self, out: BinaryIO | None, report: Callable[[str], None], records: bool = True) -> None:
        self.out = out
        self.report = report
        self.mid_line = False
        self.filter = None if records else RecordFilter()

    def __call__(self, chunk: bytes) -> None:
        if self.out is None:
            return
        if self.filter is not None:
            chunk = self.filter(chunk) if chunk else self.filter.end()
        if not chunk:
            return
        self.mid_line = not chunk.endswith(b"\n")
        try:
            self.out.write(chunk)
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            self.out = None
            self.report(f"echo stopped ({exc.__class__.__name__}); still reading and pushing")


def pump(
    fd: int,
    name: str,
    feed: FeedLines,
    echo: Callable[[bytes], None],
    splitter: LineSplitter | None = None,
    readable: Callable[[], bool] = lambda: True,
) -> None:
    """Reads ``fd`` to its end: each chunk is echoed before its lines are parsed.

    ``readable`` waits for data and says False when we are to stop first (the last partial
    line is then dropped, not parsed).
    """
    splitter = splitter or LineSplitter()
    while True:
        if not readable():
            return
        chunk = os.read(fd, CHUNK)
        if not chunk:
            break
        echo(chunk)
        feed(name, splitter.feed(chunk))
    echo(b"")
    feed(name, splitter.flush())


@contextlib.contextmanager
def _signal_wakeup() -> Iterator[int]:
    """A pipe that every signal writes a byte to: a poll on it wakes up, whatever the handler does."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    try:
        yield r
    finally:
        signal.set_wakeup_fd(old)
        os.close(r)
        os.close(w)


def read_stdin(feed: FeedLines, echo: Echo, stopped: Callable[[], bool] = lambda: False) -> None:
    """Reads stdin to EOF or until ``stopped()`` (a signal's handler says so).

    The handler only sets a flag: an exception raised from it could land in the middle of
    ``feed`` and leave the run state half-updated (and that record never pushed).
    """
    fd = sys.stdin.fileno()
    with _signal_wakeup() as wake:
        poller = select.poll()
        for watched in (fd, wake):
            poller.register(watched, select.POLLIN)

        def readable() -> bool:
            while not stopped():
                events = dict(poller.poll())
                if wake in events:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake, 512)
                if fd in events and not stopped():
                    return True
            return False

        pump(fd, "stdin", feed, echo, readable=readable)
