"""Picks the parser for each line: one module per input format, each a pure function.

``auto`` tries the cheapest, most specific test first: the protocol marker, then the
FloydHub prefix, then the Keras patterns; a line none of them claims is "other".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gangplank_sidecar.parsers import floydhub, keras_log, protocol

FORMATS = ("auto", "gangplank", "floydhub", "keras")
Parsed = tuple[str, Sequence[object]]
OTHER: Parsed = ("other", ())


def parse(line: bytes, fmt: str = "auto") -> Parsed:
    """(format that recognised the line or "other", its items); ValueError for a bad record."""
    return PARSERS[fmt](line)


# One function per --format, so that the reading path makes no choice per line. Each parser
# is only called for a line that holds its cheap byte test (``in`` costs a fraction of a
# regex or a decode): most lines of a log are none of ours.


def _auto(line: bytes) -> Parsed:
    if protocol.MARKER in line:
        return "gangplank", protocol.parse(line)
    if floydhub.PREFIX in line:
        points = floydhub.parse(line)
        if points:
            return "floydhub", points
    if keras_log.candidate(line):
        items = keras_log.parse(line)
        if items:
            return "keras", items
    return OTHER


def _gangplank(line: bytes) -> Parsed:
    return ("gangplank", protocol.parse(line)) if protocol.MARKER in line else OTHER


def _floydhub(line: bytes) -> Parsed:
    points = floydhub.parse(line) if floydhub.PREFIX in line else None
    return ("floydhub", points) if points else OTHER


def _keras(line: bytes) -> Parsed:
    items = keras_log.parse(line) if keras_log.candidate(line) else None
    return ("keras", items) if items else OTHER


PARSERS: dict[str, Callable[[bytes], Parsed]] = {"auto": _auto, "gangplank": _gangplank, "floydhub": _floydhub, "keras": _keras}
