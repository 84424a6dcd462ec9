"""The CRI log format the kubelet's container runtime writes: ``<time> <stream> <tag> <content>``.

``time`` is RFC 3339 with nanoseconds, ``stream`` is ``stdout`` or ``stderr``, ``tag`` is ``F``
for a full line or ``P`` for a part of one (containerd splits a line at 16 KiB by default): the
parts of one stream are joined up to the next ``F``. A joined line longer than the parse cap
becomes ``OVERSIZED``, as a long line of any other source does; a line that is not CRI is counted
and skipped (it cannot be told from a torn write).
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Iterator

from gangplank_sidecar.sources.lines import MAX_LINE, OVERSIZED

LATEST = 253402300800.0  # 10000-01-01T00:00:00Z: a time past it (or before 1970) is no runtime's
_LINE = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) (stdout|stderr) ([PF])(?: |\Z)")


@functools.lru_cache(maxsize=64)
def _second(stamp: bytes, zone: bytes) -> float:
    """Unix time of a whole second (lines come in bursts within one second: cached)."""
    y, mo, d, h, mi, s = (
        int(stamp[:4]),
        int(stamp[5:7]),
        int(stamp[8:10]),
        int(stamp[11:13]),
        int(stamp[14:16]),
        int(stamp[17:19]),
    )
    offset = 0 if zone == b"Z" else (1 if zone[:1] == b"+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset)


def parse(line: bytes) -> tuple[float, bool, bool, bytes] | None:
    """(Unix time, stderr?, partial?, content) of one CRI line; None if it is not one."""
    m = _LINE.match(line)
    if m is None:
        return None
    stamp, fraction, zone, stream, tag = m.groups()
    try:
        when = _second(stamp, zone)
    except ValueError:  # a month 13, a day 32
        return None
    if fraction:
        when += int(fraction) / 10 ** len(fraction)
    if not 0 <= when < LATEST:
        return None
    return when, stream == b"stderr", tag == b"P", line[m.end() :]


class Decoder:
    """Turns one file's CRI lines into its content lines, joining each stream's parts."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.malformed = 0
        self.oversized = 0
        self._parts: list[list[bytes]] = [[], []]  # stdout, stderr
        self._sizes = [0, 0]
        self._overflow = [False, False]

    def feed(self, line: bytes) -> Iterator[tuple[float | None, bytes]]:
        """The content lines ``line`` completes, with the runtime's time (None for an unparsable oversized one)."""
        if line is OVERSIZED:  # a CRI line past the cap: which stream it was is lost with it
            self._parts, self._sizes, self._overflow = [[], []], [0, 0], [False, False]
            self.oversized += 1
            yield None, OVERSIZED
            return
        parsed = parse(line)
        if parsed is None:
            self.malformed += 1
            return
        when, stderr, partial, content = parsed
        i = int(stderr)
        if not partial and not self._sizes[i] and not self._overflow[i]:  # most lines: whole, nothing pending
            if len(content) > self.max_line:
                self.oversized += 1
                yield when, OVERSIZED
            else:
                yield when, content
            return
        if not self._overflow[i]:
            self._sizes[i] += len(content)
            if self._sizes[i] > self.max_line:
                self._overflow[i] = True
                self._parts[i] = []
            else:
                self._parts[i].append(content)
        if partial:
            return
        parts, overflow = self._parts[i], self._overflow[i]
        self._parts[i], self._sizes[i], self._overflow[i] = [], 0, False
        if overflow:
            self.oversized += 1
            yield when, OVERSIZED
        else:
            yield when, parts[0] if len(parts) == 1 else b"".join(parts)
