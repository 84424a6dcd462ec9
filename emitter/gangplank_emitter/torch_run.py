"""What the transformers and Lightning emitters share: a ``Run`` whose histograms stay on the device.

Framework values (0-d tensors, numpy scalars) become Python floats here, so the core ``Run``
only ever sees plain numbers.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from gangplank_emitter.run import Run
from gangplank_emitter.torch_histogram import histogram
from gangplank_emitter.writer import finite_or_token


class TorchRun(Run):
    """``Run`` with torch tensors as ``weights``: counted by ``torch_histogram`` on their device."""

    def _weights(self, weights: Iterable[object] | None) -> dict[str, object]:
        if weights is None or self.histogram_buckets is None:
            return {}
        counts = histogram(weights, self.histogram_buckets)  # type: ignore[arg-type]  # TorchRun is given tensors
        counts["sum"] = finite_or_token(counts["sum"])
        return {"weights": counts}


def framework(name: str, version: str) -> str:
    return f"{name}-{version}/torch-{torch.__version__}"


def params(module: torch.nn.Module) -> dict[str, int]:
    """Parameter counts of a model; a parameter shared by two layers counts once, as in torch."""
    found = list(module.parameters())
    return {"total": sum(p.numel() for p in found), "trainable": sum(p.numel() for p in found if p.requires_grad)}


def trainable(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.requires_grad]


def scalars(metrics: Mapping[str, object]) -> dict[str, float]:
    """The one-number values of ``metrics`` as floats (exact: a float32 tensor widens to float64)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if type(value) is float or type(value) is int:  # the common case, before the slower checks
            out[key] = float(value)
            continue
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()  # a bool or complex tensor gives a bool or complex: skipped below
        elif isinstance(value, (np.ndarray, np.generic)):
            if value.size != 1 or value.dtype.kind not in "iuf":
                continue
            value = value.item()
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[key] = float(value)
    return out
