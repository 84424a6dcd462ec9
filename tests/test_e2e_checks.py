"""End to end: Kepler's checks from a real fit, through gangplank-sidecar, on the real gateway."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, SIDECAR, Pushgateway, keras_env

KEPLER = {
    "K102": "data_not_shuffled",
    "K204": "data_incompatible_with_initialiser",
    "K303": "data_not_normalised",
    "K401": "sigmoid_in_hidden_layer",
}
PASSED = {
    "K201": "weights_too_small",
    "K202": "weights_outside_unit_sphere",
    "K203": "uniform_weight_initialisation",
    "K503": "bad_batchnorm_position",
    "K301": "correlated_inputs",
    "K302": "duplicate_samples",
}


def test_unshuffled_raw_sigmoid_fit_shows_failed_checks(pushgateway: Pushgateway) -> None:
    train = subprocess.run(
        [sys.executable, str(ROOT / "tests/scripts/train_unchecked.py")],
        capture_output=True,
        env=keras_env(),
        timeout=240,
        check=True,
    )
    start = next(
        json.loads(line[line.index('{"gangplank":') :])
        for line in train.stdout.decode().splitlines()
        if '"event": "start"' in line
    )
    assert {f["code"]: f["name"] for f in start["checks"] if f.get("fired", True)} == KEPLER
    # The checks that always run and passed come as fired: false, so that the gateway shows their 0.
    assert {f["code"]: f["name"] for f in start["checks"] if not f.get("fired", True)} == PASSED
    sidecar = subprocess.run(
        [*SIDECAR, "--quiet", "--pushgateway", pushgateway.url], input=train.stdout, capture_output=True, timeout=60
    )
    assert sidecar.returncode == 0, sidecar.stderr.decode()
    failed = {
        dict(labels)["code"]: (dict(labels)["check"], v)
        for (name, labels), v in pushgateway.gangplank().items()
        if name == "gangplank_check_failed" and dict(labels)["code"].startswith("K")
    }
    # K504 (overfitting) is the sidecar's own history check: exported from the start, not fired.
    assert failed == {
        **{code: (name, 1.0) for code, name in KEPLER.items()},
        **{code: (name, 0.0) for code, name in PASSED.items()},
        "K504": ("overfitting", 0.0),
    }
