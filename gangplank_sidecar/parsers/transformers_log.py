"""The dicts transformers' Trainer prints at each logging step, evaluation and the end of training.

    {'loss': '0.6931', 'grad_norm': '1.234', 'learning_rate': '0.0009', 'epoch': '0.5'}     (5.x: .4g strings)
    {'loss': 0.6931, 'grad_norm': 1.2341, 'learning_rate': 0.0009, 'epoch': 0.5}            (4.x, or PrinterCallback)
    {'eval_loss': 0.69, 'eval_runtime': 0.01, ..., 'epoch': 1.0}
    {'train_runtime': 1.23, 'train_samples_per_second': 78.0, ..., 'train_loss': 0.69, 'epoch': 3.0}

They are Python reprs, not JSON, and with tqdm bars on the same stream (``2>&1``) they follow
the bar's ``\\r`` and cursor moves: only what a terminal finally shows is read. A dict is the
Trainer's when it has an ``epoch`` or an ``eval_*`` key. Values that are not numbers (nested
dicts, lists, text) are skipped; which dict is training, validation or a test is the
interpreter's call.
"""

from __future__ import annotations

import ast
import math
import re
from typing import NamedTuple

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]")
_NUMBER = rb"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_OCTAL = re.compile(rb"[-+]?0\d+")
_BARE = re.compile(rb"(?<=: )([-+]?(?:nan|inf))(?=[,}])")
_NUMPY = re.compile(rb"np\.(?:float|int|uint)(?:16|32|64)\(([^()]{0,64})\)")
MAX_DICT = 1 << 16
_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "+inf": math.inf, "+nan": math.nan, "-nan": math.nan}
_SPECIAL_BYTES = {text.encode(): value for text, value in _SPECIAL.items()}
_KEY_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./-"
_DECIMAL_BYTES = b"0123456789.eE+-"  # with these alone, float() reads exactly _NUMBER's finite numbers


class Log(NamedTuple):
    """One printed dict's numeric values, keys as the Trainer wrote them (``epoch`` included).

    A tuple: as cheap to build as one.
    """

    metrics: dict[str, float]


def candidate(line: bytes) -> bool:
    return line.find(b"{'") >= 0 and 0x7D in line  # }; ``find`` and an int: ``in`` tries a bytes as an int first


def parse(line: bytes) -> list[Log]:
    if not candidate(line):
        return []
    text = _final_segment(line)
    if not (text.startswith(b"{'") and text.endswith(b"}")) or len(text) > MAX_DICT:
        return []
    metrics = _fast(text)
    if metrics is None:
        metrics = _full(text)
    return [Log(metrics)] if metrics is not None and _trainers(metrics) else []


def _fast(text: bytes) -> dict[str, float] | None:
    """The values of the common shape, a flat dict of numbers or number strings (keys of ``_KEY_BYTES``, at
    most 200), by byte operations, no eval; None for any other shape.

    Pairs are split at ``, '`` and ``': `` (a key or a number holds neither), then each key and
    number is held to its characters: what is left is a number exactly when ``float`` reads it.
    """
    if text[:2] != b"{'" or text[-1:] != b"}":
        return None
    metrics = {}
    for pair in text[2:-1].split(b", '"):
        key, colon, value = pair.partition(b"': ")
        if not colon or not 0 < len(key) <= 200 or key.translate(None, _KEY_BYTES):
            return None
        if value[:1] == b"'":
            if len(value) < 3 or value[-1:] != b"'":
                return None
            value = value[1:-1]
        elif value[:1] in b"+-0" and value and _OCTAL.fullmatch(value):
            return None  # 05 is no Python literal (the full parser refuses the dict); Python never prints one
        special = _SPECIAL_BYTES.get(value)
        if special is None:
            if value.translate(None, _DECIMAL_BYTES):
                return None
            try:
                special = float(value)  # float() reads ASCII bytes
            except ValueError:
                return None
        metrics[key.decode()] = special
    return metrics


def _full(text: bytes) -> dict[str, float] | None:
    """Any dict literal: its number values and number strings; None if it is no dict literal."""
    text = _NUMPY.sub(rb"\1", text)  # NumPy 2 prints its scalars as np.float64(0.5)
    text = _BARE.sub(rb"'\1'", text)  # Python prints nan and inf bare, which are no literals
    try:
        value = ast.literal_eval(text.decode("utf-8"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict):
        return None
    metrics = {}
    for key, item in value.items():
        if not isinstance(key, str) or isinstance(item, bool):
            continue
        if isinstance(item, (int, float)):
            metrics[key] = float(item)
        elif isinstance(item, str) and re.fullmatch(_NUMBER.decode(), item):
            metrics[key] = _number(item)
    return metrics


def _number(text: str) -> float:
    return _SPECIAL[text] if text in _SPECIAL else float(text)


def _trainers(metrics: dict[str, float]) -> bool:
    return "epoch" in metrics or any(key.startswith("eval_") for key in metrics)


def _final_segment(line: bytes) -> bytes:
    """What is left on screen after the last ``\\r``, without cursor moves or colours."""
    line = line.rstrip(b"\r\n")
    segment = line[line.rfind(b"\r") + 1 :]
    if b"\x1b" in segment:
        segment = _ANSI.sub(b"", segment)
    return segment.strip()
