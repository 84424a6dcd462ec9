"""User patterns: a regex per log shape, for logs no built-in format reads (as mtail programs or grok patterns).

    - match: 'Epoch (?P<epoch>\\d+) .* loss (?P<loss>[-+.\\deE]+)'
    - match: 'TEST acc=(?P<accuracy>\\S+)'
      phase: test

Named groups ``epoch`` and ``step`` place the values (as printed); every other named group is
a metric of that name. Patterns are searched in the line in order, and the first that matches
wins; one combined regex of them all runs first, so a line none matches costs one search.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

PHASES = ("train", "test")
PLACES = ("epoch", "step")
MAX_LINE = 1 << 16
MAX_INDEX = 10**9
_GROUP = re.compile(rb"(?<!\\)((?:\\\\)*)\(\?P([<=])(\w+)")


@dataclass(frozen=True, slots=True)
class Pattern:
    regex: re.Pattern[bytes]
    phase: str


class Match(NamedTuple):
    """The values one pattern found in a line, with the epoch and step it named (a tuple: built per line)."""

    metrics: dict[str, float]
    epoch: int | None
    step: int | None
    phase: str


class Patterns:
    """Compiled patterns, in order, with their combined prefilter."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self.patterns = tuple(patterns)
        self._any = _combined(self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def parse(self, line: bytes) -> list[Match]:
        """The first pattern's values, or nothing; ValueError if a metric group holds no number."""
        if len(line) > MAX_LINE:
            return []
        line = line.rstrip(b"\r\n")
        if self._any is not None and self._any.search(line) is None:
            return []
        for number, pattern in enumerate(self.patterns, 1):
            found = pattern.regex.search(line)
            if found is not None:
                return [_match(found, pattern, number)]
        return []


def _match(found: re.Match[bytes], pattern: Pattern, number: int) -> Match:
    metrics: dict[str, float] = {}
    places: dict[str, int | None] = dict.fromkeys(PLACES)
    for name, text in found.groupdict().items():
        if not text:
            continue  # a group that took part in no match, or matched nothing
        try:
            value = float(text)
        except ValueError:
            shown = text[:40].decode("utf-8", "replace")
            raise ValueError(f"pattern {number}: group {name!r} is not a number: {shown!r}") from None
        if name in places:
            if not math.isfinite(value) or value != int(value) or not 0 <= value <= MAX_INDEX:
                raise ValueError(
                    f"pattern {number}: {name} must be a whole number from 0 to {MAX_INDEX}, not {value!r}"
                )
            places[name] = int(value)
        else:
            metrics[name] = value
    return Match(metrics, places["epoch"], places["step"], pattern.phase)


def compile_pattern(text: str, phase: str = "train") -> Pattern:
    """One pattern, checked: ValueError with the reason for a bad regex, phase or group."""
    if phase not in PHASES:
        raise ValueError(f"pattern {text!r}: phase must be one of {', '.join(PHASES)}, not {phase!r}")
    try:
        regex = re.compile(text.encode("utf-8"))
    except re.error as exc:
        raise ValueError(f"pattern {text!r} is not a regular expression: {exc}") from None
    if not regex.groupindex:
        raise ValueError(f"pattern {text!r} has no named group: name the values, as (?P<loss>[0-9.]+)")
    if all(name in PLACES for name in regex.groupindex):
        raise ValueError(f"pattern {text!r} names no metric: only {', '.join(regex.groupindex)}")
    return Pattern(regex, phase)


def load(path: str) -> list[Pattern]:
    """The patterns of a YAML file: a list of ``{match: REGEX, phase: train|test}``."""
    import yaml  # only --patterns reads YAML: every other start is spared its import

    try:
        entries = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the patterns file {path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"the patterns file {path} is not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"the patterns file {path} must hold a list of {{match: REGEX, phase: train|test}}")
    patterns = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), str) or set(entry) - {"match", "phase"}:
            raise ValueError(f"the patterns file {path}, entry {i}: expected {{match: REGEX, phase: train|test}}")
        try:
            patterns.append(compile_pattern(entry["match"], str(entry.get("phase", "train"))))
        except ValueError as exc:
            raise ValueError(f"the patterns file {path}, entry {i}: {exc}") from None
    return patterns


def from_options(path: str | None, regexes: Sequence[str]) -> Patterns:
    """``--patterns FILE``'s entries, then each ``--pattern REGEX`` (train phase); ValueError if one is bad."""
    return Patterns([*(load(path) if path else ()), *(compile_pattern(text) for text in regexes)])


def _combined(patterns: Sequence[Pattern]) -> re.Pattern[bytes] | None:
    """One regex that matches where any pattern does (their groups renamed apart), or None if it cannot be built."""
    if len(patterns) < 2:
        return None  # one pattern is its own filter
    parts = []
    for i, pattern in enumerate(patterns):
        renamed = _GROUP.sub(rb"\g<1>(?P\g<2>_%d_\g<3>" % i, pattern.regex.pattern)
        parts.append(b"(?:" + renamed + b")")
    try:
        return re.compile(b"|".join(parts))
    except re.error:
        return None
