"""Picks the parser for each line: one module per input format, each a pure function."""

from __future__ import annotations

from gangplank_sidecar.parsers import protocol

FORMATS = ("auto", "gangplank")


def parse(line: bytes, fmt: str = "auto") -> tuple[str, list[object]]:
    """(format that recognised the line or "other", its items); ValueError for a bad record."""
    if protocol.MARKER in line:
        return "gangplank", protocol.parse(line)
    return "other", []
