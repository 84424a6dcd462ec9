"""``name=value`` lines, read with Katib's default metrics filter: ``epoch=3 loss=0.41 accuracy=0.87``.

Never in ``auto``: too many logs hold ``a=b``. A line with ``epoch=N`` gives epoch N's values
(N as printed); ``step=N`` places them at a step; a pair whose value is empty or not a
number (``lr=``, ``mode=fast``) is not a metric.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Katib's default filter, as Katib writes it: ([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)
_PAIR = re.compile(rb"([\w|-]+)\s*=\s*([+-]?\d*(?:\.\d+)?(?:[Ee][+-]?\d+)?)")
MAX_LINE = 1 << 16
MAX_INDEX = 10**9  # an epoch or step beyond this is no counter: read as a metric


class Pairs(NamedTuple):
    """The metrics of one line; ``epoch`` and ``step`` as printed, if the line has them (a tuple: built per line)."""

    metrics: dict[str, float]
    epoch: int | None
    step: int | None


def parse(line: bytes) -> list[Pairs]:
    if b"=" not in line or len(line) > MAX_LINE:
        return []
    metrics: dict[str, float] = {}
    for key, number in _PAIR.findall(line):
        try:
            value = float(number)
        except ValueError:  # the filter also takes "", "-" and "-e5": no numbers
            continue
        metrics[key.decode("ascii", "replace")] = value
    if not metrics:
        return []
    epoch = _index(metrics, "epoch") if "epoch" in metrics else None
    step = _index(metrics, "step") if "step" in metrics else None
    return [Pairs(metrics, epoch, step)]


def _index(metrics: dict[str, float], key: str) -> int | None:
    """``epoch``/``step`` as a counter when it is a whole number in range (then it is no metric)."""
    value = metrics[key]
    if not 0 <= value <= MAX_INDEX or value != int(value):  # NaN and infinities are out of range
        return None
    del metrics[key]
    return int(value)
