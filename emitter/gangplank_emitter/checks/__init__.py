"""Kepler's sanity checks: data (inspect), model (model_checks) and training (UpdateTracker).

A finding is a plain dict {"code", "name", "severity", "message"}, the shape of the
protocol's `checks` field. The thresholds live in `catalogue`.
"""

from .catalogue import CATALOGUE
from .data import inspect, take_inspected
from .model import model_checks
from .training import UpdateTracker, trainable_by_layer

__all__ = ["CATALOGUE", "UpdateTracker", "inspect", "model_checks", "take_inspected", "trainable_by_layer"]
