"""Data checks: each fires on a made case and passes on healthy digits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from conftest import codes
from gangplank_emitter.checks import inspect_data, take_inspected
from gangplank_emitter.checks.catalogue import CATALOGUE


def test_healthy_digits_raise_nothing(digits):
    x, y, xv, yv, _, _ = digits
    assert inspect_data(x, y, batch_size=32, validation_data=(xv, yv)) == []


def test_one_hot_labels_and_constant_columns_raise_nothing(digits):
    x, y, xv, yv, _, _ = digits
    wide = np.hstack([x, np.full((len(x), 3), 1000.0, dtype=np.float32)])
    wide_val = np.hstack([xv, np.full((len(xv), 3), 1000.0, dtype=np.float32)])
    assert inspect_data(wide, np.eye(10)[y], batch_size=32, validation_data=(wide_val, np.eye(10)[yv])) == []


def test_finding_shape(digits):
    x, y, _, _, _, _ = digits
    assert inspect_data(x, y, batch_size=30) == [
        {
            "code": "K101",
            "name": "batch_size_not_power_of_2",
            "severity": "info",
            "message": "batch size 30 is not a power of 2",
        }
    ]


@pytest.mark.parametrize("batch_size, expected", [(4, ["K1010"]), (6, ["K101", "K1010"]), (512, ["K1012"]), (64, [])])
def test_batch_size_bounds(digits, batch_size, expected):
    x, y, _, _, _, _ = digits
    assert codes(inspect_data(x, y, batch_size=batch_size)) == expected


def test_sorted_labels_are_not_shuffled(digits):
    x, y, _, _, _, _ = digits
    order = np.argsort(y, kind="stable")
    found = inspect_data(x[order], y[order], batch_size=32)
    assert codes(found) == ["K102"]
    assert found[0]["message"].startswith(
        "labels change between neighbouring rows 9 times where a shuffle gives about 1292"
    )


def test_sorted_one_hot_labels_are_not_shuffled(digits):
    x, y, _, _, _, _ = digits
    order = np.argsort(y, kind="stable")
    assert codes(inspect_data(x[order], np.eye(10)[y[order]])) == ["K102"]


def test_shuffles_of_few_imbalanced_labels_count_as_shuffled(digits):
    x, _, _, _, _, _ = digits
    rng = np.random.default_rng(0)
    labels = np.array([0] * 110 + [1] * 10)
    assert [codes(inspect_data(x[:120], rng.permutation(labels))) for _ in range(200)] == [[]] * 200


def test_ordered_regression_targets_are_not_shuffled():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 4))
    target = np.sort(rng.standard_normal(500))
    assert codes(inspect_data(x, target)) == ["K102"]
    assert inspect_data(x, rng.permutation(target)) == []


def test_validation_missing_classes_is_not_stratified(digits):
    x, y, xv, yv, _, _ = digits
    half = yv < 5
    found = inspect_data(x, y, validation_data=(xv[half], yv[half]))
    assert codes(found) == ["K103"]
    assert found[0]["message"].startswith("class shares differ by 0.50 between train and validation (limit 0.28)")


def test_validation_normalised_with_its_own_statistics(digits):
    x, y, _, yv, _, raw_val = digits
    own = StandardScaler().fit_transform(raw_val).astype(np.float32)
    found = inspect_data(x, y, validation_data=(own, yv))
    assert codes(found) == ["K104"]
    assert found[0]["message"].startswith("validation columns have mean 0 and std 1 exactly")


def test_validation_left_raw(digits):
    x, y, _, yv, _, raw_val = digits
    found = inspect_data(x, y, validation_data=(raw_val, yv))
    assert codes(found) == ["K104"]
    assert found[0]["message"].startswith("validation columns are 4.")


def test_copied_column_is_correlated(digits):
    x, y, _, _, _, _ = digits
    wide = np.hstack([x, 2 * x[:, [10]] + 0.5])
    found = inspect_data(wide, y)
    assert codes(found) == ["K301"]
    assert found[0]["message"].startswith(
        "1 pairs of input columns correlate at |r| >= 0.98 (first: columns 10 and 64)"
    )


def test_duplicate_rows(digits):
    x, y, _, _, _, _ = digits
    found = inspect_data(np.vstack([x, x[:150]]), np.concatenate([y, y[:150]]))
    assert codes(found) == ["K302"]
    assert found[0]["message"] == "150 of 1587 rows repeat another row: remove duplicates, or they leak into validation"
    conflicting = inspect_data(np.vstack([x, x[:20]]), np.concatenate([y, (y[:20] + 1) % 10]))
    assert conflicting[0]["message"].startswith("20 of 1457 rows repeat another row (20 with a different label)")


def test_few_duplicates_stay_below_the_threshold(digits):
    x, y, _, _, _, _ = digits
    assert inspect_data(np.vstack([x, x[:1]]), np.concatenate([y, y[:1]])) == []


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (100.0, 0.0), (0.01, 0.0), (1.0, 10.0)])
def test_raw_or_shifted_inputs_are_not_normalised(digits, scale, shift):
    _, y, _, _, raw, _ = digits
    assert codes(inspect_data(raw * scale + shift, y)) == ["K303"]


def test_unit_interval_inputs_are_normalised(digits):
    _, y, _, _, raw, _ = digits
    assert inspect_data(raw / 16.0, y) == []


def test_large_data_is_sampled():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20_000, 50)).astype(np.float32)
    y = rng.integers(0, 10, 20_000)
    assert inspect_data(x, y, batch_size=128) == []
    assert codes(inspect_data(x * 50, y, batch_size=128)) == ["K303"]


def test_images_and_non_numeric_inputs():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((300, 8, 8, 3))
    labels = rng.integers(0, 3, 300)
    assert inspect_data(images, labels, batch_size=32) == []
    assert codes(inspect_data(np.array(["a"] * 300), labels, batch_size=33)) == ["K101"]


def test_take_inspected_returns_once(digits):
    x, y, _, _, _, _ = digits
    found = inspect_data(x, y, batch_size=30)
    assert take_inspected() == found
    assert take_inspected() == []


def test_every_finding_names_its_catalogue_row(digits):
    _, y, _, _, raw, _ = digits
    order = np.argsort(y, kind="stable")
    for f in inspect_data(raw[order], y[order], batch_size=6):
        assert (f["name"], f["severity"]) == (CATALOGUE[f["code"]].name, CATALOGUE[f["code"]].severity)
