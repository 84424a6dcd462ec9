"""User patterns: a regex per log shape, for logs no built-in format reads (as mtail programs or grok patterns).

    - match: 'Epoch (?P<epoch>\\d+) .* loss (?P<loss>[-+.\\deE]+)'
    - match: 'TEST acc=(?P<accuracy>\\S+)'
      phase: test

Named groups ``epoch`` and ``step`` place the values (as printed); every other named group is
a metric of that name. Patterns are searched in the line in order, and the first that matches
wins. One combined regex of them all runs instead: a line none matches costs one search, and a
line the first pattern matches one search too, whose groups give the values.
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
_NUMBERED = re.compile(rb"(?<!\\)(?:\\\\)*(?:\\[1-9]|\(\?\(\d)")  # a backreference or condition by number


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


_new_match = tuple.__new__  # a Match from its fields without NamedTuple's Python-level constructor


class Layout(NamedTuple):
    """Where a pattern's groups are in the combined regex. ``groups``: its empty closing group (so that
    ``Match.group`` gives a tuple), its ``epoch`` and ``step`` groups, its metric groups; ``epoch_at``,
    ``step_at`` and ``first_metric``: positions in that tuple (0 for no such group)."""

    number: int
    pattern: Pattern
    groups: tuple[int, ...]
    metrics: tuple[str, ...]
    epoch_at: int
    step_at: int
    first_metric: int


class Patterns:
    """Compiled patterns, in order, with their combined regex (None if it cannot be built)."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self.patterns = tuple(patterns)
        self._any, self._layouts = _combined(self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def parse(self, line: bytes) -> list[Match]:
        """The first pattern's values, or nothing; ValueError if a metric group holds no number."""
        if len(line) > MAX_LINE:
            return []
        line = line.rstrip(b"\r\n")
        if self._any is None:
            return self._each(line, 0)
        found = self._any.search(line)
        if found is None:
            return []
        layout = self._layouts[found.lastindex or 0]
        number = layout.number
        if number > 1:  # a later pattern matched earlier in the line: an earlier pattern may match further on
            earlier = self._each(line, 0, number - 1)
            if earlier:
                return earlier
        try:
            return [_values(found.group(*layout.groups), layout)]
        except ValueError:  # not a plain number: the full reading says which group, or reads it after all
            return self._each(line, number - 1, number)

    def _each(self, line: bytes, first: int, stop: int | None = None) -> list[Match]:
        """Patterns ``first`` to ``stop`` (0-based, end excluded), each searched on its own, in order."""
        for number, pattern in enumerate(self.patterns[first:stop], first + 1):
            found = pattern.regex.search(line)
            if found is not None:
                return [_match(found, pattern, number)]
        return []


def _values(texts: tuple[bytes | None, ...], layout: Layout) -> Match:
    """The values of a pattern's groups, as ``_combined`` laid them out. ValueError for anything but a
    plain number, or a place out of range: ``_match`` then reads the line."""
    _, pattern, _, metrics, epoch_at, step_at, first_metric = layout
    epoch = step = None
    if epoch_at and (text := texts[epoch_at]):
        epoch = int(text)
        if not 0 <= epoch <= MAX_INDEX:
            raise ValueError(epoch)
    if step_at and (text := texts[step_at]):
        step = int(text)
        if not 0 <= step <= MAX_INDEX:
            raise ValueError(step)
    values = {}
    for name, text in zip(metrics, texts[first_metric:]):
        if text:
            values[name] = float(text)
    return _new_match(Match, (values, epoch, step, pattern.phase))


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


def _combined(patterns: Sequence[Pattern]) -> tuple[re.Pattern[bytes] | None, dict[int, Layout]]:
    """One regex that matches where any pattern does (their groups renamed apart), each followed by an empty
    group of its own, and the layout of each pattern's groups in it by the index of that group; None if it
    cannot be built (a numbered backreference would point elsewhere; inline flags must start a regex).
    The empty group comes last, not around the pattern: a group around it would hide a leading ``^``
    from the regex engine, which then tries every position of a line."""
    if not patterns:
        return None, {}
    parts = []
    for i, pattern in enumerate(patterns):
        if _NUMBERED.search(pattern.regex.pattern):
            return None, {}
        renamed = _GROUP.sub(rb"\g<1>(?P\g<2>_%d_\g<3>" % i, pattern.regex.pattern)
        parts.append(b"(?:(?:" + renamed + b")(?P<_%d>))" % i)  # an empty group that closes last: ``lastindex``
    try:
        combined = re.compile(b"|".join(parts))
    except re.error:
        return None, {}
    layouts = {}
    for i, pattern in enumerate(patterns):
        index, wrapper = combined.groupindex, combined.groupindex[f"_{i}"]
        places = [name for name in PLACES if name in pattern.regex.groupindex]
        metrics = tuple(name for name in pattern.regex.groupindex if name not in PLACES)
        groups = (wrapper, *(index[f"_{i}_{name}"] for name in (*places, *metrics)))
        at = {name: n for n, name in enumerate(places, 1)}
        layouts[wrapper] = Layout(i + 1, pattern, groups, metrics, at.get("epoch", 0), at.get("step", 0), len(at) + 1)
    return combined, layouts
