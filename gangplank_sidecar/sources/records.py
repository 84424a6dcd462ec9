"""The echo for a person: a byte stream without its protocol records (``--echo text``).

Protocol records are for machines. A record starts at the marker anywhere in a line and runs
to the end of that line: Keras' verbose=1 bar text may precede it on the same line, so only
the record and its newline go; the bar text stays, and the bar's final line, which starts with
``\\r``, overwrites it on the terminal as it would without the emitter. Everything else passes
through as it came. Works across chunk boundaries: a chunk that ends in what may be the start
of the marker holds those few bytes back until the next chunk (or the end) tells.
"""

from __future__ import annotations

from gangplank_sidecar.parsers.protocol import MARKER


def _partial(data: bytes) -> int:
    """The length of the longest end of ``data`` that begins the marker (at most its length - 1)."""
    for n in range(min(len(MARKER) - 1, len(data)), 0, -1):
        if MARKER.startswith(data[-n:]):
            return n
    return 0


class RecordFilter:
    """``filter(chunk)`` -> the bytes to show; ``end()`` -> what was held back, at the end of the stream."""

    def __init__(self) -> None:
        self.in_record = False
        self.held = b""

    def __call__(self, chunk: bytes) -> bytes:
        data, self.held = self.held + chunk, b""
        out: list[bytes] = []
        at = 0
        while at < len(data):
            if self.in_record:
                newline = data.find(b"\n", at)
                if newline < 0:
                    return b"".join(out)
                self.in_record = False
                at = newline + 1
                continue
            start = data.find(MARKER, at)
            if start < 0:
                keep = _partial(data[at:])
                out.append(data[at : len(data) - keep])
                self.held = data[len(data) - keep :]
                break
            out.append(data[at:start])
            self.in_record = True
            at = start + len(MARKER)
        return b"".join(out)

    def end(self) -> bytes:
        held, self.held = self.held, b""
        return held
