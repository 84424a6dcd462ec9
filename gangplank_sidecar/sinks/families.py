"""A series as Prometheus metric families, with Gangplank 0.5.0's names and help texts.

Both the Pushgateway sink (labels in the grouping key) and the ``/metrics`` endpoint
(labels in every sample) expose exactly this, so the two can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from decimal import Decimal

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gangplank_sidecar.aggregation.state import RunState
from gangplank_sidecar.parsers.protocol import Weights

_ELAPSED_HELP = {
    "train": "The amount of time spent training the model",
    "test": "The amount of time spent testing the model",
}
PARAMS_HELP = "The number of trainable and non-trainable model weights"
WEIGHTS_HELP = "model trainable weights"


def _gauge(name: str, help_text: str, labels: dict[str, str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def go_float(x: float) -> str:
    """``le`` as the Pushgateway and Prometheus' Go code print it (``0``, not ``0.0``).

    Prometheus 2 keeps ``le`` as a string, so a scrape of ``/metrics`` must spell a bound the
    way the gateway does, or one dashboard could not serve both paths.
    """
    if not math.isfinite(x):
        return floatToGoString(x)
    if x == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)
    exp = point - 1
    precision = len(text) if 6 > len(text) >= point else 6
    if exp < -4 or exp >= precision:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        body = f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    elif point <= 0:
        body = "0." + "0" * -point + text
    else:
        body = text[:point] + "0" * (point - len(text)) + ("." + text[point:] if len(text) > point else "")
    return ("-" if sign else "") + body


def histogram(name: str, weights: Weights, labels: dict[str, str]) -> Metric:
    """Built sample by sample: prometheus-client drops ``_sum`` when a bound is negative."""
    family = Metric(name, WEIGHTS_HELP, "histogram")
    bounds = [go_float(b) for b in weights.le] + [go_float(math.inf)]
    for le, count in zip(bounds, weights.counts):
        family.add_sample(name + "_bucket", {**labels, "le": le}, count)
    family.add_sample(name + "_count", labels, weights.count)
    family.add_sample(name + "_sum", labels, weights.sum)
    return family


def run_families(series: RunState, labels: dict[str, str] | None = None) -> list[Metric]:
    """The gangplank_* families of one series; ``labels`` go into every sample."""
    labels = labels or {}
    prefix = f"gangplank_{series.phase}_"
    names = series.names.map(list(series.metrics))
    out: list[Metric] = [
        _gauge(prefix + names[key], key, labels, value) for key, value in sorted(series.metrics.items())
    ]
    if series.phase == "train" and series.epoch is not None:
        out.append(_gauge(prefix + "epochs_count", "The number of completed training epochs", labels, series.epoch))
    if series.step is not None:
        out.append(_gauge(prefix + "step", "The last training step reported", labels, series.step))
    if series.elapsed is not None:
        out.append(_gauge(prefix + "elapsed_time_seconds", _ELAPSED_HELP[series.phase], labels, series.elapsed))
    if series.params is not None:
        out.append(_gauge(prefix + "model_parameters_count", PARAMS_HELP, labels, series.params))
    if series.weights is not None:
        out.append(histogram(prefix + "model_weights", series.weights, labels))
    if series.phase == "train":
        out.extend(_best(series, names, labels))
    out.append(_gauge("gangplank_run_active", "1 until the run's end record", labels, float(series.status is None)))
    out.append(
        _gauge(
            "gangplank_run_last_record_timestamp_seconds",
            "When the run's last record was written (Unix time)",
            labels,
            series.time,
        )
    )
    if series.checks:
        checks = GaugeMetricFamily(
            "gangplank_check_failed", "1 while a sanity check has fired for this run", labels=[*labels, "check", "code"]
        )
        for name, check in sorted(series.checks.items()):
            checks.add_metric([*labels.values(), name, check.code], float(name in series.failed_checks))
        out.append(checks)
    return out


def _best(series: RunState, names: dict[str, str], labels: dict[str, str]) -> list[Metric]:
    """The best value of each metric, and the epoch of the best val_loss (else loss)."""
    if not series.best:
        return []
    best = GaugeMetricFamily("gangplank_train_best", "The best value of each metric so far", labels=[*labels, "metric"])
    for key, (value, _) in sorted(series.best.items()):
        best.add_metric([*labels.values(), names[key]], value)
    out: list[Metric] = [best]
    monitored = next((key for key in ("val_loss", "loss") if key in series.best), None)
    epoch = series.best[monitored][1] if monitored else None
    if epoch is not None:
        out.append(_gauge("gangplank_train_best_epoch", f"The epoch of the best {monitored}", labels, epoch))
    return out


def merge(metrics: Iterable[Metric]) -> list[Metric]:
    """One family per name: several series (jobs, phases) may share a family name."""
    merged: dict[str, Metric] = {}
    for metric in metrics:
        first = merged.get(metric.name)
        if first is None:
            merged[metric.name] = metric
        else:
            first.samples.extend(metric.samples)
    return list(merged.values())


class Families(Collector):
    """A fixed list of families as a prometheus-client collector (for a registry to expose)."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)
