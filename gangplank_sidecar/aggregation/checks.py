"""Training-time checks over one run's metric history: catch a bad run while it is still going.

Each check is a small pure function of the epochs seen so far (and the weight histograms);
it returns a finding while its condition holds and None otherwise, so an alert resolves
when the run recovers. The thresholds are one table, ``Thresholds``; README "Checks" lists them.
Metrics are Keras' names: ``loss`` (training) and ``val_loss`` (validation).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from gangplank_sidecar.aggregation.state import Key, RunState
from gangplank_sidecar.parsers.protocol import Check, Severity, Weights, spell_non_finite

Epochs = Sequence[tuple[int, dict[str, float]]]
Point = tuple[int, float]  # (epoch, value)


@dataclass(frozen=True)
class Thresholds:
    """When each check fires; every field can be set with ``--check-threshold NAME=VALUE``."""

    divergence_epochs: int = 3  # divergence: loss rose this many epochs in a row ...
    divergence_margin: float = 0.1  # ... or stands this fraction above its first value
    overfitting_patience: int = 3  # overfitting: val_loss past its best this many epochs while loss falls
    plateau_epochs: int = 5  # plateau: loss improved by less than min_delta over this many epochs
    min_delta: float = 1e-3  # improvement that counts, relative to the best value so far
    dead_share: float = 0.9  # dead_weights: share of weights in the bucket around 0 ...
    dead_growth: float = 0.2  # ... that grew by at least this since the run's first histogram
    exploding_growth: float = 0.25  # exploding_weights: share beyond the outer bounds grew by this ...
    exploding_abs: float = 100.0  # ... or a weight this large, or any non-finite weight
    gap_epochs: int = 4  # train_val_gap: val_loss - loss widened this many epochs in a row ...
    gap_ratio: float = 0.25  # ... and is at least this fraction of val_loss


def thresholds_from(pairs: Sequence[str]) -> Thresholds:
    """``["plateau_epochs=8", ...]`` -> Thresholds; raises ValueError with a one-line reason."""
    types = {f.name: f.type for f in fields(Thresholds)}
    values: dict[str, Any] = {}  # each an int or a float, as its field's type says
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or name not in types:
            raise ValueError(f"bad check threshold {pair!r}: expected NAME=VALUE, NAME one of {', '.join(types)}")
        try:
            value = int(text) if types[name] == "int" else float(text)
        except ValueError:
            raise ValueError(
                f"bad check threshold {pair!r}: {text!r} is not a{'n integer' if types[name] == 'int' else ' number'}"
            ) from None
        if not value >= 0:
            raise ValueError(f"bad check threshold {pair!r}: must be a number >= 0")
        values[name] = value
    return Thresholds(**values)


def _series(epochs: Epochs, key: str) -> list[tuple[int, float]]:
    return [(epoch, metrics[key]) for epoch, metrics in epochs if key in metrics and math.isfinite(metrics[key])]


def _in_a_row(values: Sequence[float], moved: Callable[[float, float], bool]) -> int:
    """How many times in a row, up to the last of ``values``, ``moved(before, after)`` held."""
    count = 0
    for a, b in zip(values[-2::-1], values[::-1]):
        if not moved(a, b):
            break
        count += 1
    return count


def _better(a: float, b: float, min_delta: float) -> bool:
    """Whether a (lower) improves on b by more than min_delta of b's size."""
    return a < b - min_delta * abs(b)


@functools.lru_cache(maxsize=256)
def _finding(name: str, message: str) -> Check:
    """Checks are frozen: a finding that holds epoch after epoch (a plateau) is validated once."""
    code, severity = CHECKS[name][1:]
    return Check(code=code, name=name, severity=severity, message=message)


def non_finite(epochs: Epochs, t: Thresholds) -> Check | None:
    """A metric of the latest epoch is NaN or infinite: the run is broken from here on."""
    return _non_finite(*epochs[-1]) if epochs else None


def _non_finite(epoch: int, metrics: dict[str, float]) -> Check | None:
    if math.isfinite(sum(metrics.values())):  # then every value is finite
        return None
    bad = [f"{key}={spell_non_finite(value)}" for key, value in sorted(metrics.items()) if not math.isfinite(value)]
    return _finding("non_finite", f"non-finite {', '.join(bad)} at epoch {epoch}") if bad else None


def divergence(epochs: Epochs, t: Thresholds) -> Check | None:
    """loss rose for ``divergence_epochs`` epochs in a row, or stands well above its first value."""
    loss = _series(epochs, "loss")
    if not loss:
        return None
    rises = _in_a_row([v for _, v in loss], lambda a, b: _better(a, b, t.min_delta))
    return _divergence(len(loss), loss[0], loss[-1], rises, t)


def _divergence(count: int, first: Point, last: Point, rises: int, t: Thresholds) -> Check | None:
    """``count`` finite losses, the ``first`` and the ``last``, which ends ``rises`` rises in a row."""
    if count < 2:
        return None
    (first_epoch, first_loss), (epoch, value) = first, last
    if value > first_loss + t.divergence_margin * abs(first_loss):
        return _finding(
            "divergence",
            f"loss {value:.4g} at epoch {epoch} is above its first value {first_loss:.4g} (epoch {first_epoch})",
        )
    if t.divergence_epochs and rises >= t.divergence_epochs:
        return _finding(
            "divergence", f"loss rose {t.divergence_epochs} epochs in a row, to {value:.4g} at epoch {epoch}"
        )
    return None


def overfitting(epochs: Epochs, t: Thresholds) -> Check | None:
    """val_loss past its best for ``overfitting_patience`` epochs while loss still falls (Kepler K504).

    Only the epochs that measured val_loss count (``validation_freq``): the others carry none.
    """
    val = _series(epochs, "val_loss")
    loss = dict(_series(epochs, "loss"))
    if not val:
        return None
    best, last = min(val, key=lambda ev: ev[1]), val[-1]
    return _overfitting(best, loss.get(best[0]), last, loss.get(last[0]), t)


def _overfitting(
    best: Point, loss_at_best: float | None, last: Point, loss_at_last: float | None, t: Thresholds
) -> Check | None:
    """``best`` and ``last``: the lowest (first of equals) and the latest (epoch, val_loss), each with the
    loss of that epoch."""
    (best_epoch, best_val), (epoch, last_val) = best, last
    since = epoch - best_epoch
    if since < max(t.overfitting_patience, 1) or loss_at_best is None or loss_at_last is None:
        return None
    if not loss_at_last < loss_at_best:
        return None
    return _finding(
        "overfitting",
        f"val_loss bottomed out at {best_val:.4g} at epoch {best_epoch} (best epoch {best_epoch}) and is "
        f"{last_val:.4g} "
        f"{since} epochs later while loss fell from {loss_at_best:.4g} to {loss_at_last:.4g}",
    )


def plateau(epochs: Epochs, t: Thresholds) -> Check | None:
    """loss improved by less than ``min_delta`` over the last ``plateau_epochs`` epochs."""
    loss = _series(epochs, "loss")
    if not t.plateau_epochs or len(loss) <= t.plateau_epochs:
        return None
    return _plateau(min(v for _, v in loss[: -t.plateau_epochs]), min(v for _, v in loss[-t.plateau_epochs :]), t)


def _plateau(before: float, recent: float, t: Thresholds) -> Check | None:
    """``before``: the best loss before the last ``plateau_epochs`` epochs; ``recent``: the best of those."""
    if _better(recent, before, t.min_delta):
        return None
    return _finding(
        "plateau", f"loss has not improved on {before:.4g} for {t.plateau_epochs} epochs (min_delta {t.min_delta:g})"
    )


def train_val_gap(epochs: Epochs, t: Thresholds) -> Check | None:
    """val_loss - loss widened ``gap_epochs`` epochs in a row and is a good share of val_loss."""
    loss = dict(_series(epochs, "loss"))
    gaps = [(e, v - loss[e], v) for e, v in _series(epochs, "val_loss") if e in loss]
    widened = _in_a_row([g for _, g, _ in gaps], lambda a, b: b > a)
    return _train_val_gap(gaps[-1] if gaps else None, widened, t)


def _train_val_gap(last: tuple[int, float, float] | None, widened: int, t: Thresholds) -> Check | None:
    """``last``: (epoch, val_loss - loss, val_loss) of the latest epoch with both, its gap wider than the one
    before ``widened`` times in a row."""
    if not t.gap_epochs or last is None or widened < t.gap_epochs:
        return None
    epoch, gap, val = last
    if gap >= t.gap_ratio * abs(val):
        return _finding(
            "train_val_gap", f"val_loss - loss widened {t.gap_epochs} epochs in a row, to {gap:.4g} at epoch {epoch}"
        )
    return None


def _cumulative(weights: Weights, bound: float | None, upper: bool) -> int:
    """Weights <= bound (the +Inf count for None when upper, 0 when lower)."""
    if bound is None:
        return weights.count if upper else 0
    return weights.counts[weights.le.index(bound)]


def _near_zero_share(weights: Weights) -> float:
    lo = max((b for b in weights.le if b < 0), default=None)
    hi = min((b for b in weights.le if b > 0), default=None)
    return (_cumulative(weights, hi, True) - _cumulative(weights, lo, False)) / weights.count


def _outer_share(weights: Weights) -> float:
    return (weights.counts[0] + weights.count - weights.counts[-2]) / weights.count


def dead_weights(first: Weights | None, last: Weights | None, t: Thresholds) -> Check | None:
    """Most weights collapsed into the bucket around 0 since the run's first histogram."""
    if first is None or last is None or not last.count or not first.count or first.le != last.le:
        return None
    share, was = _near_zero_share(last), _near_zero_share(first)
    if share >= t.dead_share and share - was >= t.dead_growth:
        return _finding(
            "dead_weights", f"{share:.0%} of the weights are in the bucket around 0 (first histogram: {was:.0%})"
        )
    return None


def exploding_weights(first: Weights | None, last: Weights | None, t: Thresholds) -> Check | None:
    """Non-finite or huge weights, or mass moving beyond the outer buckets."""
    if last is None:
        return None
    if last.nonfinite:
        return _finding("exploding_weights", f"{last.nonfinite} non-finite weights")
    biggest = max(abs(last.min or 0.0), abs(last.max or 0.0))
    if biggest >= t.exploding_abs:
        return _finding("exploding_weights", f"a weight of magnitude {biggest:.4g} (limit {t.exploding_abs:g})")
    if first is None or not first.count or not last.count or first.le != last.le or not last.le:
        return None
    share, was = _outer_share(last), _outer_share(first)
    if share - was >= t.exploding_growth:
        return _finding(
            "exploding_weights",
            f"{share:.0%} of the weights lie beyond [{last.le[0]:g}, {last.le[-1]:g}] (first histogram: {was:.0%})",
        )
    return None


# name -> (what it catches, Kepler code or "", severity)
CHECKS: dict[str, tuple[str, str, Severity]] = {
    "non_finite": ("a NaN or infinite loss or metric", "", "error"),
    "divergence": ("loss rising or above its first value", "", "error"),
    "overfitting": ("validation loss past its best while training loss falls", "K504", "warning"),
    "plateau": ("training loss no longer improving", "", "info"),
    "train_val_gap": ("a widening gap between validation and training loss", "", "warning"),
    "dead_weights": ("weights collapsing to 0", "", "warning"),
    "exploding_weights": ("weights growing without bound", "", "error"),
}


_PASSED = tuple(
    Check(code=code, name=name, severity=severity, message="", fired=False)
    for name, (_, code, severity) in CHECKS.items()
)


def changes_findings(epoch_metrics: dict[str, float], metrics: dict[str, float]) -> bool:
    """Whether ``metrics``, more values of an epoch whose checks ran on ``epoch_metrics``, can change what
    they find: RunChecks reads loss and val_loss (and the weights), and names every non-finite value."""
    return any(
        key in ("loss", "val_loss") or not math.isfinite(value) or not math.isfinite(epoch_metrics.get(key, 0.0))
        for key, value in metrics.items()
    )


def all_passed() -> list[Check]:
    """Every training check as passed, to export zeros from the start of a run."""
    return list(_PASSED)


class RunChecks:
    """One run's checks, updated per epoch in O(metrics): ``epoch`` returns (fired, passed).

    The rules above need only a few running values of the run so far: the first and the last loss
    with how many rises in a row led to it, the last few losses and the best before them, the
    best and the latest val_loss with the loss of their epochs, the latest gap and how many
    widenings in a row led to it. Each epoch updates them, so a check costs the same at epoch 10
    and 10000. The state is immutable values (tuples, numbers): text formats bring an epoch in
    pieces, and the same epoch again replaces itself on the state saved before it.
    """

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = t = thresholds or Thresholds()
        self._kept = max(t.plateau_epochs, 2)  # losses kept, newest last
        self.latest: int | None = None  # the latest epoch's number
        self.first_weights: Weights | None = None
        self.last_weights: Weights | None = None
        self._state: tuple = (0, None, None, 0, (), math.inf, None, None, None, None, None, 0)
        self._before = self._state  # the state before the latest epoch

    def epoch(
        self, epoch: int, metrics: dict[str, float], weights: Weights | None
    ) -> tuple[list[Check], dict[str, Check]]:
        """(the findings, the other training checks as passed, by name)."""
        if self.latest == epoch:
            self._state = self._before  # the same epoch again, with more of its values
        else:
            self._before, self.latest = self._state, epoch
        self._state = self._add(epoch, metrics)
        if weights is not None:
            self.first_weights = self.first_weights or weights
            self.last_weights = weights
        t, (count, first, last_loss, rises, losses, before, best, loss_at_best, last, loss_at_last, gap, widened) = (
            self.thresholds,
            self._state,
        )
        found = [
            _non_finite(epoch, metrics),
            _divergence(count, first, last_loss, rises, t),
            None if last is None else _overfitting(best, loss_at_best, last, loss_at_last, t),
            _plateau(before, min(losses[-t.plateau_epochs :]), t)
            if t.plateau_epochs and count > t.plateau_epochs
            else None,
            _train_val_gap(gap, widened, t),
        ]
        if self.last_weights is not None:
            found += [
                dead_weights(self.first_weights, self.last_weights, t),
                exploding_weights(self.first_weights, self.last_weights, t),
            ]
        fired = list(filter(None, found))  # a Check is true: the findings, in C
        return fired, _passed_but(frozenset(map(_NAME, fired))) if fired else _ALL_PASSED

    def _add(self, epoch: int, metrics: dict[str, float]) -> tuple:
        """The state with this epoch's finite loss and val_loss taken in."""
        t, (count, first, last_loss, rises, losses, before, best, loss_at_best, last, loss_at_last, gap, widened) = (
            self.thresholds,
            self._state,
        )
        loss, val = metrics.get("loss", math.nan), metrics.get("val_loss", math.nan)
        finite_loss = math.isfinite(loss)
        if finite_loss:
            if t.plateau_epochs and len(losses) >= t.plateau_epochs:
                before = min(before, losses[-t.plateau_epochs])  # leaves the last plateau_epochs
            rises = rises + 1 if last_loss is not None and _better(last_loss[1], loss, t.min_delta) else 0
            count, first, last_loss, losses = (
                count + 1,
                first or (epoch, loss),
                (epoch, loss),
                (*losses[1 - self._kept :], loss),
            )
        if math.isfinite(val):
            at = loss if finite_loss else None
            if best is None or val < best[1]:
                best, loss_at_best = (epoch, val), at
            last, loss_at_last = (epoch, val), at
            if finite_loss:
                widened = widened + 1 if gap is not None and val - loss > gap[1] else 0
                gap = (epoch, val - loss, val)
        return count, first, last_loss, rises, losses, before, best, loss_at_best, last, loss_at_last, gap, widened


_ALL_PASSED = {c.name: c for c in _PASSED}
_NAME = operator.attrgetter("name")


@functools.lru_cache(maxsize=128)
def _passed_but(fired: frozenset[str]) -> dict[str, Check]:
    """The training checks not in ``fired``, as passed: one dict per set of findings, shared (never changed)."""
    return {name: c for name, c in _ALL_PASSED.items() if name not in fired}


class Monitor:
    """The checks of each (job, phase)'s current run, applied to its series under the store's lock."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self._runs: dict[Key, tuple[str, RunChecks]] = {}
        self._last: tuple[RunState, str, RunChecks] | None = None  # the series checked last, its run and checks
        # What the last epoch set on that series: (its checks_version after, passed, fired)
        self._set: tuple[int, dict[str, Check], list[Check]] | None = None

    def start(self, series: RunState) -> None:
        if series.phase == "train":
            series.set_checks(all_passed(), fired=False)

    def epoch(self, series: RunState) -> None:
        """After an epoch's values reached the series (text formats bring one epoch in pieces)."""
        last = self._last
        if last is not None and last[0] is series and last[1] == series.run:
            run = last[2]
        else:
            current = self._runs.get(series.key)
            if current is None or current[0] != series.run:
                current = self._runs[series.key] = (series.run, RunChecks(self.thresholds))
            run = current[1]
            self._last, self._set = (series, series.run, run), None
        fired, passed = run.epoch(series.epoch or 0, series.epoch_metrics, series.weights)
        done = self._set
        if done is not None and done[0] == series.checks_version and done[1] is passed and done[2] == fired:
            return  # the same findings as the epoch before, still on the series (findings are shared objects)
        series.pass_checks(passed)
        if fired:
            series.set_checks(fired)
        self._set = (series.checks_version, passed, fired)
