"""Pipe mode: read stdin in chunks, echo every byte at once, hand complete lines on."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import BinaryIO

from gangplank_sidecar.sources.lines import LineSplitter
from gangplank_sidecar.sources.records import RecordFilter

CHUNK = 1 << 16

Feed = Callable[[str, bytes], None]


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


def pump(fd: int, name: str, feed: Feed, echo: Callable[[bytes], None], splitter: LineSplitter | None = None) -> LineSplitter:
    """Reads ``fd`` to its end: each chunk is echoed before its lines are parsed."""
    splitter = splitter or LineSplitter()
    while chunk := os.read(fd, CHUNK):
        echo(chunk)
        for line in splitter.feed(chunk):
            feed(name, line)
    echo(b"")
    for line in splitter.flush():
        feed(name, line)
    return splitter


def read_stdin(feed: Feed, echo: Echo) -> LineSplitter:
    return pump(sys.stdin.fileno(), "stdin", feed, echo)
