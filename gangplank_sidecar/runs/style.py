"""Colours for ``gangplank-runs`` in a terminal: statuses, best values, firing checks.

termcolor decides (it is small, pure Python and dependency-free): colours are on only when
stdout is a terminal, and off under ``NO_COLOR`` (``FORCE_COLOR`` forces them) or ``TERM=dumb``;
``--no-color`` turns them off whatever the environment says. A cell carries its style as an
attribute of its text, so tables measure and pad the plain text and paint only the text.
"""

from __future__ import annotations

from termcolor import colored

STATUS = {"ok": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
SEVERITY = {"error": "red", "warning": "yellow"}


class Cell(str):
    """Text with the colour and attributes it is drawn in when colours are on."""

    color: str | None
    attrs: tuple[str, ...]

    def __new__(cls, text: str, color: str | None = None, *attrs: str) -> Cell:
        cell = super().__new__(cls, text)
        cell.color, cell.attrs = color, attrs
        return cell


def status(text: str) -> Cell:
    return Cell(text, STATUS.get(text))


def best(text: str) -> Cell:
    return Cell(text, "green", "bold")


class Painter:
    """``paint(cell)``: the cell's text in its colour, if colours are on; any other text as it is."""

    def __init__(self, no_color: bool = False) -> None:
        self.no_color = True if no_color else None  # None: termcolor looks at the environment and the terminal
        self.on = colored("x", "red", no_color=self.no_color) != "x"

    def __call__(self, cell: str) -> str:
        if not self.on or not isinstance(cell, Cell) or (cell.color is None and not cell.attrs):
            return str(cell)
        return colored(str(cell), cell.color, attrs=cell.attrs or None, no_color=self.no_color)


PLAIN = Painter(no_color=True)
