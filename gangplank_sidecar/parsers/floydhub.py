"""FloydHub metric lines: ``{"metric": "accuracy", "value": 0.985, "epoch": 5}``, one metric a line.

Users print these by hand, so a line that starts like one but is broken is reported
(ValueError) rather than silently dropped; any other line is simply not ours.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from gangplank_sidecar.parsers.protocol import MAX_COUNT, NON_FINITE

PREFIX = b'{"metric"'
_START = re.compile(rb"\s*" + re.escape(PREFIX))
# The common shape, as json.dumps and most hand-written prints give it: an ASCII name without
# escapes, a JSON number, one of step or epoch. Anything else takes the JSON decoder.
_COMMON = re.compile(
    rb'[ \t\r\n]*\{"metric": ?"([ !#-\[\]-~]{1,256})"'
    rb', ?"value": ?(-?(?:0|[1-9]\d{0,30})(\.\d{1,30})?([eE][-+]?\d{1,3})?)'
    rb', ?"(step|epoch)": ?(0|[1-9]\d{0,17})\}[ \t\r\n]*'
)


class Point(NamedTuple):
    """One metric value, with the epoch or step the user gave (if any); a tuple: built per line, cheaply."""

    metric: str
    value: float
    epoch: int | None
    step: int | None


def parse(line: bytes) -> list[Point]:
    """The point on a FloydHub line, or nothing for a line that is not one.

    Raises ValueError, with the reason, for a line that starts with ``{"metric"`` but is
    not valid JSON or lacks a metric name or a numeric value.
    """
    common = _COMMON.fullmatch(line)
    if common:
        metric, number, fraction, exponent, index, n = common.groups()
        value = float(number) if fraction or exponent else float(int(number))  # JSON: an int, then float
        at = int(n)
        if at > MAX_COUNT:
            return _parse(line)  # its error says why
        return [
            Point(metric.decode("ascii"), value, at if index == b"epoch" else None, at if index == b"step" else None)
        ]
    return _parse(line)


def _parse(line: bytes) -> list[Point]:
    """The full parser, for any line (``parse`` takes the common shape without it)."""
    if not _START.match(line):
        return []
    try:
        record = _DECODER.decode(line.decode("utf-8", "surrogatepass"))
    except RecursionError:
        raise ValueError("bad FloydHub line: nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("bad FloydHub line: not UTF-8") from None
    except ValueError as exc:
        raise ValueError(f"bad FloydHub line: {str(exc)[:120]}") from None
    metric = record.get("metric")
    if not isinstance(metric, str) or not metric:
        raise ValueError("bad FloydHub line: metric must be a non-empty string")
    return [Point(metric, _value(record.get("value")), _index(record, "epoch"), _index(record, "step"))]


def _value(value: object) -> float:
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("bad FloydHub line: value must be a number")
    return float(value)


def _int(digits: str) -> int | float:
    """An integer; one too long for any float is infinite, as ``1e999`` is."""
    return int(digits) if len(digits) <= 300 else float(digits)


_DECODER = json.JSONDecoder(parse_int=_int)  # what json.loads(line, parse_int=_int) builds for every call


def _index(record: dict, key: str) -> int | None:
    index = record.get(key)
    if index is None:
        return None
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"bad FloydHub line: {key} must be a non-negative integer")
    if index > MAX_COUNT:
        raise ValueError(f"bad FloydHub line: {key} must be at most 2**53")
    return index
