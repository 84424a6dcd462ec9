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


# Every line ``_formats`` claims holds a { (of a dict or JSON), one of Keras' and Lightning's words
# (a header or a bar's "Epoch ", Keras results' " - ") or starts as a boosting round: a few byte
# tests tell the rest, most of a log, apart ("[INFO] ..." lines, and tqdm bars without a dict or an
# "Epoch ", which only Lightning's bars carry). ``0x7B in line`` is one memchr, where ``b"{" in line``
# first tries its operand as an int (an exception raised and cleared: ten times the cost), and a
# word is only looked for in a line that holds its rarer first byte.


def _auto(line: bytes) -> Parsed:
    if (
        0x7B not in line  # {
        and (0x45 not in line or line.find(b"Epoch ") < 0)  # E
        and (0x2D not in line or line.find(b" - ") < 0)  # -
        and not (line[:1] == b"[" and line.find(b"]\t") >= 0)
    ):
        return OTHER
    return _formats(line)


def _formats(line: bytes) -> Parsed:
    """``auto`` without the prefilter: each format's own byte test (``find``, not ``in``: see above), then its
    parser."""
    if line.find(protocol.MARKER) >= 0:
        return "gangplank", protocol.parse(line)
    if line.find(floydhub.PREFIX) >= 0:
        points = floydhub.parse(line)
        if points:
            return "floydhub", points
    if line.find(b"%|") >= 0:  # a tqdm bar, which Keras never draws: Lightning's, or a bar before a Trainer dict
        bars = (
            lightning_log.parse_bar(line) if line.find(b"Epoch ") >= 0 else None
        )  # its own first test, without a call
        if bars:
            return "lightning", bars
    elif keras_log.candidate(line):
        items = keras_log.parse(line)
        if items:
            return "keras", items
    if line.find(b"{'") >= 0:
        logs = transformers_log.parse(line)
        if logs:
            return "transformers", logs
    if line.find(b"/? [") >= 0:  # a tqdm bar of unknown total
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
        if found is OTHER and 0x6D in line and line.find(b" metric") >= 0:  # m; not ``in``: see _auto
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
