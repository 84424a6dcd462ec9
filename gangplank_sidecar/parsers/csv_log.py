"""Metrics CSV files as training writes them: Keras' CSVLogger and Lightning's CSVLogger ``metrics.csv``.

    epoch,accuracy,loss,val_accuracy,val_loss          (Keras: one row per epoch, epochs from 0)
    0,0.4572,1.7891,0.7417,1.1537
    epoch,step,train_loss_epoch,train_loss_step,val_loss    (Lightning: sparse rows, epochs from 0)
    0,1,,0.5312,
    0,7,,,0.1184

The header row names the keys, so the parser of a file keeps it: one ``CsvLog`` per stream.
A row of two or more cells that are all names is a header (a logger that rewrites its file with new keys
writes a new one); a row with another number of cells than its header is a bad row.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import NamedTuple

MAX_LINE = 1 << 16
MAX_INDEX = 10**9
PLACES = ("epoch", "step")


@dataclass(frozen=True, slots=True)
class Header:
    """The keys of the rows that follow."""

    keys: tuple[str, ...]


class Row(NamedTuple):
    """One row's values; ``epoch`` (from 0) and ``step`` as the logger wrote them, if it did (a tuple: one a row)."""

    metrics: dict[str, float]
    epoch: int | None
    step: int | None


_new_row = tuple.__new__  # a Row without NamedTuple's Python-level __new__: one is built per line


class CsvLog:
    """The parser of one CSV file: it remembers the file's header."""

    def __init__(self) -> None:
        self._keys: tuple[str, ...] | None = None
        self._lead: tuple[str, ...] = ()  # the places that open every row (Lightning's ``epoch,step``), if any
        self._metrics: tuple[str, ...] = ()  # the keys after them

    @property
    def keys(self) -> tuple[str, ...] | None:
        return self._keys

    @keys.setter
    def keys(self, keys: tuple[str, ...] | None) -> None:
        """The header's keys, and how the fast path reads them: its places first, then only metrics."""
        self._keys, self._lead, self._metrics = keys, (), ()
        if keys is not None:
            lead = keys[: next((i for i, key in enumerate(keys) if key not in PLACES), len(keys))]
            if len(set(lead)) == len(lead) and not set(PLACES) & set(keys[len(lead) :]):
                self._lead, self._metrics = lead, keys[len(lead) :]

    def parse(self, line: bytes) -> list[Header | Row]:
        """The header or the row on ``line``; ValueError for a row that does not fit its header."""
        line = line.rstrip(b"\r\n")
        if not line or len(line) > MAX_LINE:
            return []
        # The fast path, inline (one call a row): a row of numbers and empty cells as the header has keys,
        # read without decoding. Such a row is no header (a name is no number) and, as long as its header, no
        # bad row: the full parse's answer. Any other row goes to the full parse.
        keys, cells = self._keys, line.split(b",")
        if keys is None or len(cells) != len(keys) or 0x22 in line:  # 0x22: '"', an int test is 10x a bytes one
            return self._full(line)
        try:
            lead = self._lead
            if lead:  # the places by position, each read as an int when it is plain digits
                n = len(lead)
                first, second = _place(cells[0]), _place(cells[1]) if n == 2 else None
                epoch, step = (first, second) if lead[0] == "epoch" else (second, first)
                values = {}
                for key, cell in zip(self._metrics, cells[n:]):  # a loop, not a comprehension: no frame a row
                    if cell:
                        values[key] = float(cell)
            else:
                values = {key: float(cell) for key, cell in zip(keys, cells) if cell}
                epoch, step = _index(values.pop("epoch", None)), _index(values.pop("step", None))
        except ValueError:
            return self._full(line)  # text, blanks or non-ASCII in a cell: the full parse says what it is
        return [_new_row(Row, (values, epoch, step))] if values or epoch is not None else []

    def _full(self, line: bytes) -> list[Header | Row]:
        text = line.decode("utf-8", "replace")
        try:
            cells = next(csv.reader([text])) if '"' in text else text.split(",")
        except csv.Error as exc:
            raise ValueError(f"bad CSV row: {exc}") from None
        cells = [cell.strip() for cell in cells]
        if len(cells) >= 2 and all(_is_name(cell) for cell in cells):
            self.keys = tuple(cells)
            return [Header(self.keys)]
        if self.keys is None:
            return []
        if len(cells) != len(self.keys):
            raise ValueError(f"CSV row has {len(cells)} cells, its header {len(self.keys)}")
        values: dict[str, float] = {}
        for key, cell in zip(self.keys, cells):
            if cell:
                try:
                    values[key] = float(cell)
                except ValueError:
                    continue  # text in a metrics file: no metric
        places = {key: _index(values.pop(key, None)) for key in PLACES}
        if not values and places["epoch"] is None:
            return []
        return [Row(values, places["epoch"], places["step"])]


def _is_name(cell: str) -> bool:
    """A header cell: a key, not a number, no blanks (which no logger's keys hold, and noise does)."""
    return bool(cell) and not any(c.isspace() for c in cell) and not _is_number(cell)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _place(cell: bytes) -> int | None:
    """An epoch or step cell: plain digits read as an int (no float), None when empty; ValueError for text."""
    if cell.isdigit() and len(cell) < 10:
        return int(cell)
    return _index(float(cell)) if cell else None


def _index(value: float | None) -> int | None:
    if value is None or not 0 <= value <= MAX_INDEX or value != int(value):  # NaN and infinities are out of range
        return None
    return int(value)
