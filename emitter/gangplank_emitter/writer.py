"""One record, one line, one write: to stdout (flushed at once) or appended to a file."""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path

_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def finite_or_token(value: float) -> float | str:
    """Non-finite floats as the protocol's strings, so every line is strict JSON."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _NONFINITE[value]


def _plain(value: object) -> object:
    """A numpy (or jax, torch) scalar a caller passed as an epoch, a step or a count: its Python value."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Writer:
    """Writes lines; a failure warns once (or raises when ``ignore_exceptions`` is False)."""

    def __init__(self, file: str | os.PathLike[str] | None = None, ignore_exceptions: bool = True) -> None:
        self.path = Path(file) if file is not None else None
        self.ignore_exceptions = ignore_exceptions
        self._fd: int | None = None
        self._warned = False

    def write(self, record: dict) -> None:
        try:
            line = json.dumps(record, allow_nan=False, default=_plain) + "\n"
            if self.path is None:
                out = sys.stdout
                if out is None:
                    raise ValueError("sys.stdout is None (give the emitter a file= to write to)")
                out.write(line)
                out.flush()
            else:
                if self._fd is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.write(self._fd, line.encode())
        except (OSError, ValueError, TypeError, AttributeError) as exc:  # AttributeError: a stdout without write()
            if not self.ignore_exceptions:
                raise
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"gangplank_emitter: cannot write metrics ({exc}); training goes on", RuntimeWarning, stacklevel=2
                )

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
