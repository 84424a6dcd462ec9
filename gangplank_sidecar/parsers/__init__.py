"""Picks the parser for each line: one module per input format, each a pure function.

``auto`` tries the cheapest, most specific test first: the protocol marker, then the
FloydHub prefix, then the Keras patterns; a line none of them claims is "other".
"""

from __future__ import annotations

from gangplank_sidecar.parsers import floydhub, keras_log, protocol

FORMATS = ("auto", "gangplank", "floydhub", "keras")


def parse(line: bytes, fmt: str = "auto") -> tuple[str, list[object]]:
    """(format that recognised the line or "other", its items); ValueError for a bad record."""
    auto = fmt == "auto"
    if (auto or fmt == "gangplank") and protocol.MARKER in line:
        return "gangplank", protocol.parse(line)
    if auto or fmt == "floydhub":
        points = floydhub.parse(line)
        if points:
            return "floydhub", points
    if auto or fmt == "keras":
        items = keras_log.parse(line)
        if items:
            return "keras", items
    return "other", []
