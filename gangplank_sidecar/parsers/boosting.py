"""XGBoost and LightGBM evaluation lines: one boosting round, every eval set's metrics.

    [11]\tvalidation_0-logloss:0.05123\tvalidation_1-logloss:0.09310          (XGBoost, rounds from 0)
    [0]\ttrain-logloss:0.61+0.002\ttest-logloss:0.62+0.011                   (xgb.cv: mean+std)
    [12]\ttraining's auc: 0.991\tvalid_1's binary_logloss: 0.1034            (LightGBM, rounds from 1)
    [3]\tcv_agg's valid auc: 0.98 + 0.0114                                    (lgb.cv: mean + std)

A round is an epoch: ``Round.rounds`` counts completed rounds (XGBoost's index + 1). The key
joins the set and the metric with ``_`` (validation_1_logloss, valid_1_binary_logloss); a
cross-validation's spread is ``<key>_std``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = rb"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_XGB_PAIR = rb"\t([^\t\s:]+?)-([^\t:]+):(" + _NUMBER + rb")(?:\+(" + _NUMBER + rb"))?"
_LGB_PAIR = rb"\t([^\t']+)'s ([^\t:]+): (" + _NUMBER + rb")(?: \+ (" + _NUMBER + rb"))?"
_XGB_LINE = re.compile(rb"\[(\d{1,9})\]((?:" + _XGB_PAIR + rb")+)\s*")
_LGB_LINE = re.compile(rb"\[(\d{1,9})\]((?:" + _LGB_PAIR + rb")+)\s*")
_XGB = re.compile(_XGB_PAIR)
_LGB = re.compile(_LGB_PAIR)
MAX_LINE = 1 << 16  # far above any real round (hundreds of metrics); keeps the time per line small


@dataclass(frozen=True, slots=True)
class Round:
    """A boosting round's evaluation: ``rounds`` completed so far, and each set's metrics."""

    rounds: int
    metrics: dict[str, float]


def candidate(line: bytes) -> bool:
    """Whether ``line`` may be a round: a few byte tests, no regex."""
    return line[:1] == b"[" and b"]\t" in line


def parse_xgboost(line: bytes) -> list[Round]:
    if not candidate(line) or b":" not in line:
        return []
    return _parse(line, _XGB_LINE, _XGB, 1)


def parse_lightgbm(line: bytes) -> list[Round]:
    if not candidate(line) or b"'s " not in line:
        return []
    return _parse(line, _LGB_LINE, _LGB, 0)


def _parse(line: bytes, whole: re.Pattern[bytes], pair: re.Pattern[bytes], first: int) -> list[Round]:
    line = line.rstrip(b"\r\n")
    found = whole.fullmatch(line) if len(line) <= MAX_LINE else None
    if found is None:
        return []
    metrics: dict[str, float] = {}
    for data, metric, mean, std in pair.findall(found[2]):
        key = f"{data.decode('utf-8', 'replace')}_{metric.decode('utf-8', 'replace')}"
        metrics[key] = float(mean)
        if std:
            metrics[f"{key}_std"] = float(std)
    return [Round(int(found[1]) + first, metrics)]
