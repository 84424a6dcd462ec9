"""Turns chunks of bytes into lines, holding at most one capped line in memory.

Every source shares it: stdin, a wrapped command's pipes and followed files. The echo is
the source's business and sees every byte; the parser only sees lines, and a line longer
than ``MAX_LINE`` is dropped (and counted) rather than kept whole.
"""

from __future__ import annotations

from collections.abc import Iterator

MAX_LINE = 1 << 20


class LineSplitter:
    """Splits a byte stream at ``\\n``; a trailing ``\\r`` is kept (Keras logs need it)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._pending = b""
        self._overflow = False
        self.oversized = 0

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The complete lines in ``chunk`` (without their ``\\n``)."""
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            line = chunk[start:end]
            start = end + 1
            if self._pending or self._overflow:
                line = self._pending + line
                self._pending = b""
                if self._overflow or len(line) > self.max_line:
                    self._overflow = False
                    self.oversized += 1
                    continue
            elif len(line) > self.max_line:
                self.oversized += 1
                continue
            yield line
        rest = chunk[start:]
        if rest and not self._overflow:
            self._pending += rest
            if len(self._pending) > self.max_line:
                self._pending = b""
                self._overflow = True

    def flush(self) -> Iterator[bytes]:
        """The unfinished last line, at the end of the stream."""
        if self._overflow:
            self.oversized += 1
        elif self._pending:
            yield self._pending
        self._pending = b""
        self._overflow = False
