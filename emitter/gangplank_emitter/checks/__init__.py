"""Kepler's sanity checks: data (inspect_data), model (model_checks) and training (UpdateTracker).

A finding is a plain dict {"code", "name", "severity", "message"}, the shape of the
protocol's `checks` field. The thresholds live in `catalogue`.
"""

from .catalogue import ALWAYS_IN_INSPECT, ALWAYS_IN_MODEL, CATALOGUE, passed
from .data import inspect_data, inspected, take_inspected
from .model import model_checks
from .training import UpdateTracker, trainable_by_layer

__all__ = [
    "ALWAYS_IN_INSPECT",
    "ALWAYS_IN_MODEL",
    "CATALOGUE",
    "UpdateTracker",
    "inspect_data",
    "inspected",
    "model_checks",
    "passed",
    "take_inspected",
    "trainable_by_layer",
]
