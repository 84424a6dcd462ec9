"""Picks the parser for each line: one module per input format, each a pure function.

``auto`` tries the cheapest, most specific test first: the protocol marker, then the
FloydHub prefix, then the Keras patterns, then the frameworks' shapes (transformers dicts,
Lightning bars, boosting rounds, Lightning's results tables); a line none of them claims is
"other". ``kv`` is never in ``auto`` (too many logs hold ``a=b``), and ``csv`` only for a
followed file whose name ends in ``.csv``. User patterns, if any, are tried before all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gangplank_sidecar.parsers import (
    boosting,
    csv_log,
    floydhub,
    keras_log,
    kv,
    lightning_log,
    protocol,
    transformers_log,
)
from gangplank_sidecar.parsers.patterns import Patterns

FORMATS = (
    "gangplank",
    "floydhub",
    "keras",
    "transformers",
    "lightning",
    "xgboost",
    "lightgbm",
    "csv",
    "kv",
)  # --format: these or auto
Parsed = tuple[str, Sequence[object]]
OTHER: Parsed = ("other", ())


def parse(line: bytes, fmt: str = "auto") -> Parsed:
    """(format that recognised the line or "other", its items); ValueError for a bad record.

    Line by line, without a stream's state: ``stream_parser`` also reads CSV files and Lightning's tables.
    """
    return PARSERS[fmt](line)


# One function per --format, so that the reading path makes no choice per line. Each parser
# is only called for a line that holds its cheap byte test (``in`` costs a fraction of a
# regex or a decode): most lines of a log are none of ours.


# Every line ``_formats`` claims holds one of these bytes ({ of a dict or JSON, | of a bar), one
# of Keras' words (its header, its results' " - ") or starts as a boosting round: one C pass over
# the line and three tests tell the rest, most of a log, apart ("[INFO] ..." lines included).
_MARKS = b"{|"


def _auto(line: bytes) -> Parsed:
    if (
        len(line.translate(None, _MARKS)) == len(line)
        and b"Epoch " not in line
        and b" - " not in line
        and not (line[:1] == b"[" and b"]\t" in line)
    ):
        return OTHER
    return _formats(line)


def _formats(line: bytes) -> Parsed:
    """``auto`` without the prefilter: each format's own byte test, then its parser."""
    if protocol.MARKER in line:
        return "gangplank", protocol.parse(line)
    if floydhub.PREFIX in line:
        points = floydhub.parse(line)
        if points:
            return "floydhub", points
    if b"%|" in line:  # a tqdm bar, which Keras never draws: Lightning's, or a bar before a Trainer dict
        bars = lightning_log.parse_bar(line) if b"Epoch " in line else None  # its own first test, without a call
        if bars:
            return "lightning", bars
    elif keras_log.candidate(line):
        items = keras_log.parse(line)
        if items:
            return "keras", items
    if b"{'" in line:
        logs = transformers_log.parse(line)
        if logs:
            return "transformers", logs
    if b"/? [" in line:  # a tqdm bar of unknown total
        bars = lightning_log.parse_bar(line)
        if bars:
            return "lightning", bars
    if boosting.candidate(line):
        rounds = boosting.parse_xgboost(line)
        if rounds:
            return "xgboost", rounds
        rounds = boosting.parse_lightgbm(line)
        if rounds:
            return "lightgbm", rounds
    return OTHER


def _gangplank(line: bytes) -> Parsed:
    return ("gangplank", protocol.parse(line)) if protocol.MARKER in line else OTHER


def _floydhub(line: bytes) -> Parsed:
    points = floydhub.parse(line) if floydhub.PREFIX in line else None
    return ("floydhub", points) if points else OTHER


def _keras(line: bytes) -> Parsed:
    items = keras_log.parse(line) if keras_log.candidate(line) else None
    return ("keras", items) if items else OTHER


def _one(name: str, parse: Callable[[bytes], Sequence[object]]) -> Callable[[bytes], Parsed]:
    """The parser of a format whose parse function does its own byte test first."""

    def parsed(line: bytes) -> Parsed:
        items = parse(line)
        return (name, items) if items else OTHER

    return parsed


PARSERS: dict[str, Callable[[bytes], Parsed]] = {
    "auto": _auto,
    "gangplank": _gangplank,
    "floydhub": _floydhub,
    "keras": _keras,
    "transformers": _one("transformers", transformers_log.parse),
    "lightning": _one("lightning", lightning_log.parse_bar),
    "xgboost": _one("xgboost", boosting.parse_xgboost),
    "lightgbm": _one("lightgbm", boosting.parse_lightgbm),
    "kv": _one("kv", kv.parse),
}
"""Each format line by line; ``stream_parser`` adds the state a stream's lines share."""


def stream_parser(fmt: str, source: str, patterns: Patterns | None = None) -> Callable[[bytes], Parsed]:
    """The parser of one stream: ``fmt``'s, with the state a stream's lines share (a CSV file's
    header, a Lightning table's rows), behind the user patterns if there are any."""
    if fmt == "csv" or (fmt == "auto" and source.endswith(".csv")):
        parse = _one("csv", csv_log.CsvLog().parse)
    elif fmt in ("auto", "lightning"):
        parse = _with_tables(PARSERS[fmt])
    else:
        parse = PARSERS[fmt]
    return parse if not patterns else _patterns_first(patterns, parse)


def _with_tables(parse: Callable[[bytes], Parsed]) -> Callable[[bytes], Parsed]:
    """``parse``, and Lightning's results tables: a header line opens one, its rows follow it."""
    tables = lightning_log.Tables()

    def parsed(line: bytes) -> Parsed:
        if tables.stage is not None:  # a table is open (``tables.open`` without a call per line)
            results = tables.parse(line)
            if results or tables.open:
                return "lightning", results
        found = parse(line)
        if found is OTHER and b" metric" in line:
            tables.parse(line)
            if tables.open:
                return "lightning", ()
        return found

    return parsed


def _patterns_first(patterns: Patterns, parse: Callable[[bytes], Parsed]) -> Callable[[bytes], Parsed]:
    """The user's patterns first, on every line: they describe the lines the formats do not read."""

    def parsed(line: bytes) -> Parsed:
        matches = patterns.parse(line)
        return ("patterns", matches) if matches else parse(line)

    return parsed
