"""``gangplank-runs search "val_loss<0.1 job=mnist"``: a query of space-separated terms, all of which must hold.

A term is NAME OP VALUE with OP one of ``< <= > >= = !=``. NAME is a run field (run, phase,
job, status, framework, source, epochs, params, elapsed), ``label.KEY`` for a label, or else a
metric, compared by its best value in the run.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gangplank_sidecar.runs.db import RunRow

_TERM = re.compile(r"([^<>=!\s]+)(<=|>=|!=|<|>|=)(\S+)\Z")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "!=": operator.ne,
}
TEXT_FIELDS = ("run", "phase", "job", "status", "framework", "source")
NUMBER_FIELDS = ("epochs", "params", "elapsed")


@dataclass(frozen=True)
class Term:
    name: str
    op: str
    value: str

    def matches(self, run: RunRow) -> bool:
        if self.name in TEXT_FIELDS or self.name.startswith("label."):
            have = run.labels.get(self.name[6:]) if self.name.startswith("label.") else getattr(run, self.name)
            return have is not None and _OPS[self.op](str(have), self.value)
        want = float(self.value)
        if self.name in NUMBER_FIELDS:
            number = getattr(run, self.name)
        else:
            best = run.best(self.name)
            number = best[0] if best else None
        return number is not None and _OPS[self.op](number, want)


def parse(query: str) -> list[Term]:
    """The terms of ``query``; raises ValueError naming the first bad term."""
    terms = []
    for text in query.split():
        m = _TERM.match(text)
        if not m:
            raise ValueError(f"bad search term {text!r}: expected NAME OP VALUE, OP one of < <= > >= = !=")
        term = Term(*m.groups())
        text_field = term.name in TEXT_FIELDS or term.name.startswith("label.")
        if text_field and term.op not in ("=", "!="):
            raise ValueError(f"bad search term {text!r}: {term.name} takes = or !=")
        if not text_field:
            try:
                number = float(term.value)
            except ValueError:
                raise ValueError(f"bad search term {text!r}: {term.value!r} is not a number") from None
            if math.isnan(number):
                raise ValueError(f"bad search term {text!r}: NaN compares with nothing")
        terms.append(term)
    return terms
