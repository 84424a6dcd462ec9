"""Keras progress logs (Keras 2, tf.keras and Keras 3; verbose 1 and 2), for jobs without the emitter.

With verbose=1 a whole epoch is one physical line that the bar rewrites with backspaces
and ``\\r``; only the segment after the last ``\\r`` is what a terminal finally shows, and
only that one, if its step counter is complete, holds the epoch's result:

    Epoch 3/10
    75/75 ━━━━━━━━━━━━━━━━━━━━ 0s 668us/step - accuracy: 0.6592 - loss: 1.5191 - val_loss: 1.3111
    75/75 - 0s - 511us/step - accuracy: 0.6592 - loss: 1.5191                       (verbose=2)
    60000/60000 [==============================] - 3s 51us/step - loss: 0.2950 - acc: 0.9150
     - 20s - loss: 0.4097 - acc: 0.8078                                (Keras 2 verbose=2)

Whether a result is training or an evaluate is the interpreter's call, not ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gangplank_sidecar.parsers.protocol import MARKER

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]")
_HEADER = re.compile(rb" *Epoch (\d{1,9})/(\d{1,9}) *")
_DURATION = rb"\d{1,12}(?:s|ms|us)(?:/[a-z]{1,10})?"
_TIMING = _DURATION + rb"(?: " + _DURATION + rb")?"
_NUMBER = rb"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"
_BAR = rb"(?:\[[=>.]*\] *|(?:\xe2\x94\x81)+ *)?"
# A step counter (then a bar and a time) or a time first, then " - " parts that are times or metrics.
_RESULT = re.compile(
    rb" *(?:(\d{1,15})/(\d{1,15}) *" + _BAR + rb"(?:" + _TIMING + rb")?|(?:- )?" + _TIMING + rb")"
    rb"(?: - (?:" + _TIMING + rb"|[^\s:]+: " + _NUMBER + rb"))+ *"
)
_METRIC = re.compile(rb" - ([^\s:]+): (" + _NUMBER + rb")")
MAX_RESULT = 1 << 16  # far above any real result (hundreds of metrics); keeps the time per line small


@dataclass(frozen=True, slots=True)
class EpochHeader:
    """``Epoch 3/10``: epoch 3 of 10 starts (Keras prints none when epochs=1)."""

    epoch: int
    epochs: int


@dataclass(frozen=True, slots=True)
class Result:
    """The values of a finished epoch (train, with any val_* keys) or of an evaluate."""

    metrics: dict[str, float]


def parse(line: bytes) -> list[EpochHeader | Result]:
    """The header or result that a terminal would finally show for ``line``, or nothing.

    Text before an embedded protocol record is a bar still in progress: it yields no result.
    """
    if not candidate(line):
        return []
    marker = line.find(MARKER)
    segment = _last_segment(line if marker < 0 else line[:marker])
    return [] if _unfinished(segment) else _items(_cleaned(segment), finished=marker < 0)


def _items(segment: bytes, finished: bool) -> list[EpochHeader | Result]:
    """The full parse of a final segment (cleaned): its header, or its result if ``finished``."""
    header = _HEADER.fullmatch(segment)
    if header:
        return [EpochHeader(int(header[1]), int(header[2]))]
    result = _RESULT.fullmatch(segment) if finished and len(segment) <= MAX_RESULT else None
    if result is None or (result[1] is not None and int(result[1]) != int(result[2])):
        return []
    metrics = {key.decode("utf-8", "replace"): float(number) for key, number in _METRIC.findall(segment)}
    return [Result(metrics)] if metrics else []


def candidate(line: bytes) -> bool:
    """Whether ``line`` may hold a header or a result: a few byte tests, no regex."""
    return b"Epoch " in line or (b" - " in line and b": " in line)


def _last_segment(line: bytes) -> bytes:
    """What follows the bar's last ``\\r``: the last rewrite, the one a terminal finally shows."""
    line = line.rstrip(b"\r\n")
    return line[line.rfind(b"\r") + 1 :]


def _unfinished(segment: bytes) -> bool:
    """A bar whose step counter is short of its target: neither a header nor a result.

    A few byte operations decide the shapes Keras prints (``  12/75 ...`` and Keras 3's
    ``\\x1b[1m 12/75\\x1b[0m ...``); any other segment is left to the regexes (False).
    """
    head = segment[:64].lstrip(b" ")
    if head[:4] == b"\x1b[1m":
        head = head[4:].lstrip(b" ")
    current, slash, rest = head.partition(b"/")
    if not slash or not current.isdigit():
        return False
    after = rest.lstrip(b"0123456789")
    digits = len(rest) - len(after)
    return digits > 0 and (after[:1] == b" " or after[:5] == b"\x1b[0m ") and int(current) != int(rest[:digits])


def _cleaned(segment: bytes) -> bytes:
    """The segment without colours or backspaces."""
    if b"\x1b" in segment:
        segment = _ANSI.sub(b"", segment)
    return segment.replace(b"\x08", b"")
