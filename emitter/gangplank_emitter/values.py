"""What a metric value is: the one conversion every callback (Keras, Run, others) goes through.

A real number (``int``, ``float``, a numpy scalar, ``Fraction``) or an array of exactly one real
element (``np.array([0.5])``, a 0-d or ``[[0.5]]`` jax/torch/numpy array) is a metric value and
becomes a float; a non-finite float becomes the protocol's string ("NaN", "Infinity"). Anything
else is not: a bool, a complex number, a string, an array of several values, an int too large for
a float. ``metric_values`` says why for each key it skips; the caller warns once per key, or raises
in strict mode (``ignore_exceptions=False``).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping

import numpy as np

from gangplank_emitter.writer import finite_or_token


class NotAMetric(TypeError):
    """A value that is not a real number: the message says what it is instead."""


def _what(value: object) -> str:
    shape = getattr(value, "shape", None)
    kind = type(value).__name__
    return f"{kind} of shape {tuple(shape)}" if shape is not None and tuple(shape) != () else kind


def to_float(value: object) -> float:
    """``value`` as a float, or ``NotAMetric``."""
    if isinstance(value, (bool, np.bool_)):
        raise NotAMetric(f"{_what(value)}, not a number")
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:
            raise NotAMetric(f"{_what(value)} too large for a float") from None
    item = getattr(value, "item", None)
    if callable(item):  # numpy, jax and torch arrays: one element, whatever the shape
        try:
            scalar = item()
        except (ValueError, RuntimeError, TypeError):
            raise NotAMetric(f"{_what(value)}, not one number") from None
        if scalar is not value:
            return to_float(scalar)
    raise NotAMetric(f"{_what(value)}, not a real number")


def metric_values(metrics: object, keep: Iterable[str] | None = None) -> tuple[dict[str, float | str], dict[str, str]]:
    """The metric values in ``metrics`` (only the ``keep`` keys when given; a missing or None value
    is left out), and for each key skipped, why."""
    if not isinstance(metrics, Mapping):
        raise NotAMetric(f"metrics must be a mapping of names to numbers, not {_what(metrics)}")
    values: dict[str, float | str] = {}
    skipped: dict[str, str] = {}
    for key in keep if keep is not None else metrics:
        value = metrics.get(key)
        if value is None:
            continue
        try:
            values[str(key)] = finite_or_token(to_float(value))
        except NotAMetric as why:
            skipped[str(key)] = str(why)
    return values, skipped


def steps(step_every: object) -> int | None:
    """``step_every`` as every Emitter takes it: a whole number of steps, 1 or more, or None (no step records)."""
    if step_every is not None and (isinstance(step_every, bool) or not isinstance(step_every, int) or step_every < 1):
        raise ValueError(
            f"step_every must be a whole number of batches, 1 or more (or None: no step records), not {step_every!r}"
        )
    return step_every
