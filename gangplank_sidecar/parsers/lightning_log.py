"""PyTorch Lightning's console output: the TQDM progress bar, and the results tables of validate() and test().

    Epoch 3: 100%|██████████| 16/16 [00:00<00:00, 717.17it/s, v_num=0, train_loss_step=0.00644, val_loss=0.00927]

A whole epoch (and often the next one's start) is one physical line of ``\\r`` rewrites; the
last complete segment of ``Epoch N`` in a line holds epoch N's values so far (N counts from
0; the interpreter adds one). ``v_num`` is the logger's version, not a metric.

    ────────────────────────────────────────────────────────────────────
         Validate metric           DataLoader 0            (or, with rich installed:
    ────────────────────────────────────────────────────────────────────       ┃ Validate metric ┃ DataLoader 0 ┃
            val_loss            0.01607692614197731                           │ val_loss │ 0.0160769... │)
    ────────────────────────────────────────────────────────────────────

Lightning prints a table with one ``print``, but a stream hands it over line by line: the
rows are only known to be a table's from the header above them, so ``Tables`` (one per
stream) keeps that much state. With rich installed, the progress bar (RichProgressBar)
prints in a pipe only a final frame wrapped at the terminal's width: it is not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = rb"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_IS_NUMBER = re.compile(_NUMBER)
_BAR = re.compile(rb"Epoch (\d{1,9}): *(?:\d{1,3}%)?\|[^|]*\| *(\d{1,15})/(\d{1,15}|\?) \[([^\]]{0,65536})\]")
_POSTFIX = re.compile(rb"([^\s=,]+)=(" + _NUMBER + rb")(?=,|$)")
_HEADER = re.compile(rb"[\s\xe2\x94\x83|]*(Validate|Test|Predict) metric\b")
_CELL = rb"[\s\xe2\x94\x82|]"  # blanks and rich's │ (UTF-8 e2 94 82) between cells
_ROW = re.compile(
    _CELL
    + rb"*([^\s\xe2\x94\x82|]{1,512})"
    + _CELL
    + rb"+("
    + _NUMBER
    + rb")(?:"
    + _CELL
    + rb"+(?:"
    + _NUMBER
    + rb"))*"
    + _CELL
    + rb"*"
)
_BORDER = set("─━┏┓┗┛┡┩└┘┳┻╇┴┼┬├┤═╞╡ \r".encode())  # rich's and plain boxes: UTF-8 bytes of the drawing characters
MAX_LINE = 1 << 20
MAX_ROWS = 1000  # a results table has a row per logged value: more is no table, and memory stays bounded
NOT_METRICS = frozenset({"v_num"})


@dataclass(frozen=True, slots=True)
class Bar:
    """The values a finished ``Epoch N`` bar segment shows (N from 0)."""

    epoch: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class Results:
    """A validate() or test() results table: an evaluate, keys as printed."""

    stage: str
    metrics: dict[str, float]


def parse_bar(line: bytes) -> list[Bar]:
    """Each epoch's last complete segment in ``line``, in epoch order."""
    if b"Epoch " not in line or len(line) > MAX_LINE:
        return []
    if b"100%|" not in line and b"/? [" not in line:  # no segment can be finished: no split, no loop
        return []
    found: dict[int, Bar] = {}
    for segment in reversed(line.split(b"\r")):
        start = segment.find(b"Epoch ")
        # a segment short of its total (not 100%, no unknown total) holds no epoch's result: no regex for it
        if start < 0 or (b"100%|" not in segment and b"/? [" not in segment):
            continue
        bar = _BAR.match(segment, start)
        if bar is None or (bar[3] != b"?" and bar[2] != bar[3]):
            continue
        epoch = int(bar[1])
        if epoch not in found:
            found[epoch] = Bar(epoch, _postfix(bar[4]))
    return [found[epoch] for epoch in sorted(found)]


def _postfix(text: bytes) -> dict[str, float]:
    metrics = {}
    for part in text.split(b", "):
        pair = _POSTFIX.fullmatch(part)
        if pair is not None:
            key = pair[1].decode("utf-8", "replace")
            if key not in NOT_METRICS:
                metrics[key] = float(pair[2])
    return metrics


class Tables:
    """The results tables of one stream: rows after a ``... metric`` header until the closing border."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.rows: dict[str, float] = {}

    def parse(self, line: bytes) -> list[Results]:
        if self.stage is None:
            if b" metric" in line:
                header = _HEADER.match(line)
                if header is not None:
                    self.stage, self.rows = header[1].decode().lower(), {}
            return []
        if _is_border(line):
            if not self.rows:
                return []  # the border under the header
            results = Results(self.stage, self.rows)
            self.stage, self.rows = None, {}
            return [results]
        row = _ROW.fullmatch(line) if len(line) <= 4096 else None
        if row is None or len(self.rows) >= MAX_ROWS:
            self.stage, self.rows = None, {}  # not a table after all: whatever came is dropped
            return []
        self.rows[row[1].decode("utf-8", "replace")] = float(row[2])
        return []

    @property
    def open(self) -> bool:
        return self.stage is not None


def _is_border(line: bytes) -> bool:
    line = line.rstrip(b"\r\n")
    return (
        len(line) >= 3
        and line[:3] in (b"\xe2\x94\x80", b"\xe2\x94\x81", b"\xe2\x94\xa1", b"\xe2\x94\x94")
        and set(line) <= _BORDER
    )
