"""Shared fixtures: the real Pushgateway on a free loopback port, and how to run our commands."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    Prometheus,
    Pushgateway,
    Samples,
    free_port,
    pushgateway_binary,
    scrape,
    start_prometheus,
    start_pushgateway,
    wait_http,
)

# The launchers live in servers.py (benchmarks/ imports them without pytest); the tests import them from here.
__all__ = [
    "Prometheus",
    "Pushgateway",
    "Samples",
    "free_port",
    "pushgateway_binary",
    "scrape",
    "start_prometheus",
    "start_pushgateway",
    "wait_http",
]

# Keras (imported by Gangplank, the reference peer) runs on the JAX CPU backend in the tests.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# tests/proxy.py's fault-injecting proxy fixture, for every test module that asks for `proxy`.
pytest_plugins = ["proxy"]

ROOT = Path(__file__).resolve().parent.parent
SIDECAR = [sys.executable, "-m", "gangplank_sidecar"]


def keras_env(**extra: str) -> dict[str, str]:
    """The environment for a training subprocess: Keras on the JAX CPU backend."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("GANGPLANK_PUSHGATEWAY", None)
    return env


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample named ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


@pytest.fixture
def pushgateway() -> Iterator[Pushgateway]:
    gateway = start_pushgateway()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session", autouse=True)
def private_run_history(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Sidecars started by the tests keep their run history in a temporary directory, not in ~."""
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    os.environ.pop("GANGPLANK_DB", None)


@pytest.fixture(scope="module")
def digits() -> tuple:
    """Healthy digits for the checks' tests: (x, y, x_val, y_val, raw x, raw x_val).

    Shuffled, stratified, standardised with the training set's statistics; sklearn is only
    imported by the modules that ask for it.
    """
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    data = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        data.data.astype(np.float32), data.target, test_size=0.2, stratify=data.target, random_state=0
    )
    scaler = StandardScaler().fit(x_train)
    return (
        scaler.transform(x_train).astype(np.float32),
        y_train,
        scaler.transform(x_val).astype(np.float32),
        y_val,
        x_train,
        x_val,
    )


def codes(findings: list[dict]) -> list[str]:
    """The codes of a checks' findings, in order."""
    return [f["code"] for f in findings]
