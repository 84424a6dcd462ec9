"""Turns chunks of bytes into lines, holding at most one capped line in memory.

Every source shares it: stdin, a wrapped command's pipes and followed files. The echo is
the source's business and sees every byte; the parser only sees lines, and a line longer
than ``MAX_LINE`` is dropped rather than kept whole: ``OVERSIZED`` takes its place, so that
whoever is fed the lines counts it (and numbers the lines after it right).
"""

from __future__ import annotations

from collections.abc import Iterator

MAX_LINE = 1 << 20


class _Oversized(bytes):
    """An empty bytes that is told apart by identity: consumers that pass lines on need no change."""


OVERSIZED: bytes = _Oversized()


class LineSplitter:
    """Splits a byte stream at ``\\n``; a trailing ``\\r`` is kept (Keras logs need it)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._pending = b""
        self._overflow = False

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The complete lines in ``chunk`` (without their ``\\n``)."""
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if lines and (self._pending or self._overflow):
            line, self._pending = self._pending + lines[0], b""
            if self._overflow or len(line) > self.max_line:
                self._overflow = False
                line = OVERSIZED
            lines[0] = line
        for line in lines:
            if len(line) > self.max_line:
                line = OVERSIZED
            yield line
        if rest and not self._overflow:
            self._pending += rest
            if len(self._pending) > self.max_line:
                self._pending = b""
                self._overflow = True

    def flush(self) -> Iterator[bytes]:
        """The unfinished last line, at the end of the stream."""
        if self._overflow:
            yield OVERSIZED
        elif self._pending:
            yield self._pending
        self._pending = b""
        self._overflow = False
