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


class Writer:
    """Writes lines; a failure warns once (or raises when ``ignore_exceptions`` is False)."""

    def __init__(self, file: str | os.PathLike[str] | None = None, ignore_exceptions: bool = True) -> None:
        self.path = Path(file) if file is not None else None
        self.ignore_exceptions = ignore_exceptions
        self._fd: int | None = None
        self._warned = False

    def write(self, record: dict) -> None:
        line = json.dumps(record, allow_nan=False) + "\n"
        try:
            if self.path is None:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                if self._fd is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.write(self._fd, line.encode())
        except (OSError, ValueError) as exc:
            if not self.ignore_exceptions:
                raise
            if not self._warned:
                self._warned = True
                warnings.warn(f"gangplank_emitter: cannot write metrics ({exc}); training goes on", RuntimeWarning, stacklevel=2)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
