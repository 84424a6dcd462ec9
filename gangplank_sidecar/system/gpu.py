"""GPU utilisation and memory per device from NVML (nvidia-ml-py), imported only when sampling starts.

A machine without the package, the driver or a GPU simply has no GPU series.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class GpuUsage:
    utilization_ratio: float
    memory_used: float
    memory_ratio: float


class Gpus:
    def __init__(self, nvml: ModuleType, handles: list[object]) -> None:
        self.nvml = nvml
        self.handles = handles

    @classmethod
    def open(cls, report: Callable[[str], None]) -> Gpus | None:
        """NVML's devices, or None (and one log line saying why)."""
        try:
            import pynvml
        except ImportError:
            report("no GPU series: nvidia-ml-py is not installed")
            return None
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            report(f"no GPU series: NVML is not available ({exc})")
            return None
        if not handles:
            pynvml.nvmlShutdown()
            report("no GPU series: NVML sees no GPU")
            return None
        return cls(pynvml, handles)

    def read(self) -> dict[str, GpuUsage]:
        """By device index; a device that fails to answer is left out of this sample."""
        out: dict[str, GpuUsage] = {}
        for index, handle in enumerate(self.handles):
            try:
                busy = self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            except self.nvml.NVMLError:
                continue
            if memory.total:
                out[str(index)] = GpuUsage(busy / 100, float(memory.used), memory.used / memory.total)
        return out

    def close(self) -> None:
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()
