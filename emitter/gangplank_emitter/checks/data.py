"""Data checks (Kepler K1xx, K3xx) on the arrays a user is about to fit.

Keras callbacks never see the data, so the user calls `inspect_data()` before fit. It
returns what fired and keeps it, with what the model checks need to know about the
labels and the input scale (K204, K402, K403, K501), for the next Emitter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import catalogue as c
from .catalogue import finding


@dataclass(frozen=True)
class LabelInfo:
    """What the model checks need to know about the training labels."""

    kind: str  # "classes" (one integer per row), "onehot", or "continuous"
    low: float
    high: float
    width: int  # columns per row: 1 for one label per row
    binary: bool  # every value is 0 or 1


@dataclass
class Kept:
    """What the last inspect_data() saw, for the next model_checks() and Emitter."""

    findings: list[dict]
    samples: int
    labels: LabelInfo | None
    input_mean_square: float | None


_kept: Kept | None = None


def inspect_data(
    x: Any, y: Any = None, batch_size: int | None = None, validation_data: tuple | None = None
) -> list[dict]:
    """Run the data checks, keep the result for the next Emitter, and return it."""
    global _kept
    x2 = _rows(x)
    n = len(x2) if x2 is not None else len(np.asarray(x))
    y2 = None if y is None else np.asarray(y)
    classes = _classes(y2)
    findings = _batch_size(batch_size, n)
    if y2 is not None:
        findings += _shuffled(y2, classes)
    sample = _sample(x2, c.SAMPLE_ROWS)
    mean_square = None
    if x2 is not None and sample is not None:  # a sample only of rows
        mean_square = float(np.mean(np.square(sample)))
        same_rows = classes if classes is not None and len(classes) == n else None
        findings += _normalised(sample) + _correlated(sample) + _duplicates(x2, same_rows, sample.std(axis=0))
    if validation_data is not None:
        x_val, y_val = validation_data[0], validation_data[1]
        if classes is not None:
            findings += _stratified(classes, _classes(np.asarray(y_val)))
        v2 = _rows(x_val)
        if x2 is not None and sample is not None and v2 is not None and v2.shape[1] == x2.shape[1]:
            findings += _separately(sample, v2)
    _kept = Kept(list(findings), n, _label_info(y2, classes), mean_square)
    return findings


def kept() -> Kept | None:
    """What the last inspect_data() in this process saw, or None."""
    return _kept


def inspected() -> bool:
    """Whether inspect_data() ran since the last take_inspected()."""
    return _kept is not None


def take_inspected() -> list[dict]:
    """Return the findings the last inspect_data() kept, and forget everything it kept."""
    global _kept
    findings = _kept.findings if _kept is not None else []
    _kept = None
    return findings


def _rows(x: Any) -> np.ndarray | None:
    """The inputs as one row per sample (a view where possible); None if not numeric."""
    a = np.asarray(x)
    if a.ndim == 0 or a.dtype.kind not in "biuf" or len(a) == 0:
        return None
    return a.reshape(len(a), -1)


def _sample(x2: np.ndarray | None, rows: int) -> np.ndarray | None:
    """A fixed random sample of at most `rows` rows, as float64."""
    if x2 is None:
        return None
    if len(x2) > rows:
        index = np.sort(np.random.default_rng(0).choice(len(x2), rows, replace=False))
        x2 = x2[index]
    return x2.astype(np.float64)


def _classes(y: np.ndarray | None) -> np.ndarray | None:
    """One integer class per row, if the labels are classes (integers or one-hot)."""
    if y is None or y.ndim == 0 or y.dtype.kind not in "biuf" or len(y) == 0:
        return None
    if y.ndim == 2 and y.shape[1] > 1:
        if _is_onehot(y):
            return y.argmax(axis=1)
        return None
    flat = y.reshape(-1) if y.ndim == 2 else y
    if flat.ndim != 1:
        return None
    if flat.dtype.kind == "f" and not np.array_equal(flat, np.round(flat)):
        return None
    return flat.astype(np.int64)


def _is_onehot(y: np.ndarray) -> bool:
    return bool(np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all())


def _label_info(y: np.ndarray | None, classes: np.ndarray | None) -> LabelInfo | None:
    if y is None or y.dtype.kind not in "biuf" or y.size == 0:
        return None
    width = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
    low, high = float(np.min(y)), float(np.max(y))
    binary = bool(np.isin(y, (0, 1)).all())
    if classes is None:
        kind = "continuous"
    else:
        kind = "onehot" if width > 1 else "classes"
    return LabelInfo(kind, low, high, width, binary)


def _batch_size(batch_size: int | None, n: int) -> list[dict]:
    if batch_size is None:
        return []
    found = []
    if batch_size < n and batch_size & (batch_size - 1) != 0:
        found.append(finding("K101", f"batch size {batch_size} is not a power of 2"))
    if batch_size < c.MIN_BATCH_SIZE and batch_size < n:
        found.append(finding("K1010", f"batch size {batch_size} is below {c.MIN_BATCH_SIZE}: noisy, slow epochs"))
    if batch_size > c.MAX_BATCH_FRACTION * n:
        found.append(
            finding(
                "K1012",
                f"batch size {batch_size} is more than {c.MAX_BATCH_FRACTION:.0%} of {n} rows: few updates per epoch",
            )
        )
    return found


def _shuffled(y: np.ndarray, classes: np.ndarray | None) -> list[dict]:
    """K102: a shuffle changes label between neighbours (n-1)(1 - sum p^2) times on average."""
    n = len(y)
    if n < c.MIN_SHUFFLE_ROWS:
        return []
    if classes is None:
        if y.dtype.kind not in "biuf":
            return []
        target = y.reshape(n, -1)[:, 0].astype(np.float64)
        centred = target - target.mean()
        power = float(centred @ centred)
        if power == 0:
            return []
        autocorrelation = float(centred[1:] @ centred[:-1]) / power
        if autocorrelation <= c.MAX_TARGET_AUTOCORRELATION:
            return []
        return [
            finding(
                "K102",
                f"targets of neighbouring rows correlate at {autocorrelation:.2f}: the rows look ordered; shuffle them",
            )
        ]
    _, counts = np.unique(classes, return_counts=True)
    change = 1.0 - float(np.sum((counts / n) ** 2))
    if change == 0:
        return []
    expected = (n - 1) * change
    changes = int(np.count_nonzero(classes[1:] != classes[:-1]))
    z = (changes - expected) / np.sqrt((n - 1) * change * (1 - change))
    if changes >= c.MIN_SHUFFLE_RATIO * expected or z >= -c.MIN_SHUFFLE_Z:
        return []
    return [
        finding(
            "K102",
            f"labels change between neighbouring rows {changes} times where a shuffle "
            f"gives about {expected:.0f}: the rows come in runs; shuffle them",
        )
    ]


def _stratified(train: np.ndarray, val: np.ndarray | None) -> list[dict]:
    """K103: total variation distance between class shares, beyond a random split's noise."""
    if val is None or len(val) == 0:
        return []
    labels = np.union1d(np.unique(train), np.unique(val))
    p = np.array([np.count_nonzero(train == k) for k in labels]) / len(train)
    q = np.array([np.count_nonzero(val == k) for k in labels]) / len(val)
    shift = 0.5 * float(np.abs(p - q).sum())
    limit = max(c.MAX_CLASS_SHIFT, c.CLASS_SHIFT_NOISE * np.sqrt(len(labels) / len(val)))
    if shift <= limit:
        return []
    worst = labels[int(np.argmax(np.abs(p - q)))]
    return [
        finding(
            "K103",
            f"class shares differ by {shift:.2f} between train and validation "
            f"(limit {limit:.2f}); class {worst} differs most: split stratified",
        )
    ]


def _normalised(sample: np.ndarray) -> list[dict]:
    """K303: the typical column is far from mean 0, standard deviation 1."""
    std = sample.std(axis=0)
    varying = std > 0
    if not varying.any():
        return []
    median_std = float(np.median(std[varying]))
    median_mean = float(np.median(np.abs(sample.mean(axis=0)[varying])))
    if c.MIN_COLUMN_STD <= median_std <= c.MAX_COLUMN_STD and median_mean <= c.MAX_COLUMN_MEAN:
        return []
    return [
        finding(
            "K303",
            f"inputs are not normalised: median column std {median_std:.3g}, "
            f"median |mean| {median_mean:.3g}; standardise them",
        )
    ]


def _correlated(sample: np.ndarray) -> list[dict]:
    """K301: pairs of columns with |correlation| of near copies; columns that are nearly
    constant (a few rare values correlate by chance) are skipped."""
    sample = sample[:: max(1, len(sample) // c.CORRELATION_ROWS)]
    std = sample.std(axis=0)
    varying = np.count_nonzero(sample != np.median(sample, axis=0), axis=0)
    columns = np.flatnonzero(varying >= c.MIN_VARYING_SHARE * len(sample))
    if len(columns) > c.MAX_CORRELATED_COLUMNS:
        columns = columns[np.linspace(0, len(columns) - 1, c.MAX_CORRELATED_COLUMNS).astype(np.int64)]
    if len(columns) < 2:
        return []
    z = ((sample[:, columns] - sample[:, columns].mean(axis=0)) / std[columns]).astype(np.float32)
    correlation = np.abs(z.T @ z) / len(z)
    pairs = np.argwhere(np.triu(correlation, k=1) >= c.MAX_CORRELATION)
    if len(pairs) == 0:
        return []
    first, second = columns[pairs[0]]
    return [
        finding(
            "K301",
            f"{len(pairs)} pairs of input columns correlate at |r| >= {c.MAX_CORRELATION} "
            f"(first: columns {first} and {second}): drop or combine redundant inputs",
        )
    ]


def _duplicates(x2: np.ndarray, classes: np.ndarray | None, spread: np.ndarray) -> list[dict]:
    """K302: rows equal to another row, found by sorting a random projection and comparing
    neighbours: first on the columns that vary most (`spread`, per column), then in full."""
    rng = np.random.default_rng(1)
    index = np.arange(len(x2))
    if len(x2) > c.MAX_DUPLICATE_ROWS:
        index = np.sort(rng.choice(len(x2), c.MAX_DUPLICATE_ROWS, replace=False))
    rows = x2[index] if len(index) < len(x2) else x2
    dtype = np.float64 if rows.dtype == np.float64 else np.float32
    projection = rows @ rng.standard_normal(int(rows.shape[1])).astype(dtype)
    order = np.argsort(projection)
    ordered = projection[order]
    tolerance = 4 * np.spacing(max(abs(ordered[0]), abs(ordered[-1])))
    near = np.flatnonzero(np.diff(ordered) <= tolerance)
    if len(near) == 0:
        return []
    first, second = order[near], order[near + 1]
    telling = np.argsort(spread)[-c.DUPLICATE_PREFILTER_COLUMNS :]
    alike = np.all(rows[first[:, None], telling] == rows[second[:, None], telling], axis=1)
    first, second = first[alike], second[alike]
    equal = np.all(rows[first] == rows[second], axis=1)
    duplicates = int(np.count_nonzero(equal))
    if duplicates <= c.MAX_DUPLICATE_FRACTION * len(rows):
        return []
    message = f"{duplicates} of {len(rows)} rows repeat another row"
    if classes is not None:
        conflicts = int(np.count_nonzero(classes[index[first[equal]]] != classes[index[second[equal]]]))
        if conflicts:
            message += f" ({conflicts} with a different label)"
    return [finding("K302", message + ": remove duplicates, or they leak into validation")]


def _separately(train_sample: np.ndarray, v2: np.ndarray) -> list[dict]:
    """K104: validation z-scored with its own statistics, or on another scale than train."""
    if len(v2) < c.MIN_VALIDATION_ROWS:
        return []
    mean = v2.mean(axis=0, dtype=np.float64)
    square = np.einsum("ij,ij->j", v2, v2, dtype=np.float64) / len(v2)
    std = np.sqrt(np.maximum(square - mean**2, 0.0))
    varying = std > 0
    if varying.sum() >= 2:
        own = np.abs(mean[varying]).max() <= c.OWN_STATS_TOLERANCE and np.abs(
            std[varying] - 1
        ).max() <= c.OWN_STATS_TOLERANCE + 1 / len(v2)
        if own:
            return [
                finding(
                    "K104",
                    "validation columns have mean 0 and std 1 exactly: it was normalised "
                    "with its own statistics; use the training set's",
                )
            ]
    train_std = train_sample.std(axis=0)
    both = varying & (train_std > 0)
    if not both.any():
        return []
    ratio = float(np.median(std[both] / train_std[both]))
    if 1 / c.MAX_SCALE_RATIO <= ratio <= c.MAX_SCALE_RATIO:
        return []
    return [
        finding(
            "K104",
            f"validation columns are {ratio:.3g} times as spread as training columns: "
            "normalise both with the training set's statistics",
        )
    ]
