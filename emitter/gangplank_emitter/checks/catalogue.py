"""Kepler's check catalogue: every code, its name, severity and threshold in one table.

Codes and meanings follow Kepler (doc/checks.rst); thresholds are ours, chosen so
that a healthy run (normalised, shuffled, stratified data, relu hidden layers,
softmax with cross-entropy, batch size 32) raises nothing. docs/checks.md explains
each row; keep both in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Check(NamedTuple):
    name: str
    severity: str
    when: str
    detects: str


CATALOGUE: dict[str, Check] = {
    "K101": Check("batch_size_not_power_of_2", "info", "inspect_data", "batch size is not a power of 2"),
    "K1010": Check("batch_size_too_small", "warning", "inspect_data", "batch size below MIN_BATCH_SIZE"),
    "K1012": Check(
        "batch_size_too_large", "warning", "inspect_data", "batch size above MAX_BATCH_FRACTION of the training rows"
    ),
    "K102": Check("data_not_shuffled", "warning", "inspect_data", "labels come in long runs (sorted or grouped)"),
    "K103": Check(
        "train_validation_not_stratified",
        "warning",
        "inspect_data",
        "train and validation class shares differ beyond sampling noise",
    ),
    "K104": Check(
        "train_validation_normalised_separately",
        "warning",
        "inspect_data",
        "validation normalised with its own statistics, or on another scale than train",
    ),
    "K201": Check("weights_too_small", "warning", "model", "initial weights shrink every signal"),
    "K202": Check("weights_outside_unit_sphere", "warning", "model", "initial weights blow signals up"),
    "K203": Check(
        "uniform_weight_initialisation",
        "info",
        "model",
        "fixed-range uniform initialiser, not scaled to the layer's fan-in",
    ),
    "K204": Check(
        "data_incompatible_with_initialiser",
        "warning",
        "model, after inspect_data",
        "inputs far from the unit scale that variance-scaling initialisers assume",
    ),
    "K301": Check("correlated_inputs", "info", "inspect_data", "pairs of input columns that are near copies"),
    "K302": Check("duplicate_samples", "warning", "inspect_data", "identical training rows"),
    "K303": Check("data_not_normalised", "warning", "inspect_data", "inputs not centred or not unit-scaled"),
    "K401": Check("sigmoid_in_hidden_layer", "warning", "model", "sigmoid activation before the output"),
    "K402": Check(
        "bad_label_coding_for_tanh",
        "warning",
        "model, after inspect_data",
        "tanh output with 0/1 labels or labels outside [-1, 1]",
    ),
    "K403": Check(
        "last_activation_mismatch",
        "error",
        "model (labels: after inspect_data)",
        "last activation does not fit the loss or the labels",
    ),
    "K501": Check(
        "more_parameters_than_samples",
        "info",
        "model, when the sample count is known",
        "more trainable parameters than training rows",
    ),
    "K502": Check(
        "vanishing_or_exploding_updates",
        "warning",
        "epoch, opt-in",
        "a layer's update ratio below MIN_UPDATE_RATIO or above MAX_UPDATE_RATIO",
    ),
    "K503": Check(
        "bad_batchnorm_position",
        "warning",
        "model",
        "batch normalisation as the output, after another one, or after a softmax",
    ),
    "K505": Check(
        "noisy_weight_updates",
        "warning",
        "epoch, opt-in",
        "a layer's update reverses direction from one epoch to the next",
    ),
}

# K1010, K1012: batch size bounds.
MIN_BATCH_SIZE = 8
MAX_BATCH_FRACTION = 0.33
# K102: label changes between neighbouring rows, against what a shuffle gives.
MIN_SHUFFLE_RATIO = 0.5
MIN_SHUFFLE_Z = 4.0
MIN_SHUFFLE_ROWS = 100
MAX_TARGET_AUTOCORRELATION = 0.5
# K103: total variation distance between class shares, with room for sampling noise.
MAX_CLASS_SHIFT = 0.1
CLASS_SHIFT_NOISE = 1.2
# K104: own-statistics tolerance and allowed scale ratio between validation and train.
OWN_STATS_TOLERANCE = 1e-4
MIN_VALIDATION_ROWS = 30
MAX_SCALE_RATIO = 3.0
# K201, K202: median L2 norm of a unit's incoming weights (He gives about 1.4).
MIN_UNIT_NORM = 0.1
MAX_UNIT_NORM = 3.0
# K204: mean square of the inputs that a variance-scaling initialiser tolerates.
MIN_INPUT_MEAN_SQUARE = 0.01
MAX_INPUT_MEAN_SQUARE = 25.0
# K301: absolute correlation that makes two columns near copies; columns and rows compared at most;
# share of rows that must differ from the column's median for the column to count.
MAX_CORRELATION = 0.98
MAX_CORRELATED_COLUMNS = 1024
CORRELATION_ROWS = 250
MIN_VARYING_SHARE = 0.05
# K302: share of rows that repeat an earlier row; rows looked at at most; columns compared
# before whole rows.
MAX_DUPLICATE_FRACTION = 0.001
MAX_DUPLICATE_ROWS = 100_000
DUPLICATE_PREFILTER_COLUMNS = 32
# K303: median column standard deviation and median absolute column mean.
MIN_COLUMN_STD = 0.05
MAX_COLUMN_STD = 3.0
MAX_COLUMN_MEAN = 3.0
# K501: trainable parameters per training row (Kepler: more parameters than rows).
MAX_PARAMETERS_PER_SAMPLE = 1.0
# K502: per-epoch update ratio ||w_t - w_t-1|| / ||w_t-1|| per layer.
MIN_UPDATE_RATIO = 1e-5
MAX_UPDATE_RATIO = 10.0
# K505: cosine between consecutive epoch updates, on a fixed sample of coordinates.
MIN_UPDATE_COSINE = -0.5
UPDATE_SAMPLE = 4096
# Rows sampled for the column statistics (K104 scale, K204, K301, K303).
SAMPLE_ROWS = 1000


def finding(code: str, message: str) -> dict:
    """One fired check, in the protocol's `checks` shape."""
    check = CATALOGUE[code]
    return {"code": code, "name": check.name, "severity": check.severity, "message": message}


def passed(codes: Iterable[str], findings: list[dict]) -> list[dict]:
    """The checks among ``codes`` that ran without a finding, marked ``fired: false``.

    The sidecar exports them as gangplank_check_failed 0, so that a healthy run shows zeros.
    """
    fired = {f["code"] for f in findings}
    return [
        {
            "code": code,
            "name": CATALOGUE[code].name,
            "severity": CATALOGUE[code].severity,
            "message": "",
            "fired": False,
        }
        for code in codes
        if code not in fired
    ]


# The checks that run whenever their step runs; the others need a batch size, validation data or
# what inspect_data() kept, and are only ever reported when they fire.
ALWAYS_IN_MODEL = ("K201", "K202", "K203", "K401", "K503")
ALWAYS_IN_INSPECT = ("K102", "K301", "K302", "K303")
