"""The last good reading as gangplank_system_* metric families.

Pushed as their own group, ``{job, phase="system", --labels}``, beside ``train`` and ``test``:
a train push (a PUT of its group) then never wipes them, and they keep their own pace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gangplank_sidecar.system.sampler import Reading, Sampler

PHASE = "system"

_JOB = (
    (
        "cpu_utilization_ratio",
        "cpu_ratio",
        "Share of the CPUs available to the job (cgroup quota and affinity) it kept busy over the last interval; 1 = "
        "all of them",
    ),
    (
        "memory_used_bytes",
        "memory_used",
        "Memory used by the job: resident memory of its processes, or its cgroup's working set",
    ),
    (
        "memory_utilization_ratio",
        "memory_ratio",
        "Memory used by the job as a share of the memory available to it (cgroup limit or machine)",
    ),
    ("disk_used_bytes", "disk_used", "Bytes used on the file system that holds the disk path"),
    (
        "disk_utilization_ratio",
        "disk_ratio",
        "Used share of the disk path's file system, as df shows it: used / (used + available)",
    ),
)
_GPU = (
    (
        "gpu_utilization_ratio",
        "utilization_ratio",
        "Share of the last sample period in which the GPU was busy, from NVML",
    ),
    ("gpu_memory_used_bytes", "memory_used", "GPU memory in use on the device, from NVML"),
    ("gpu_memory_utilization_ratio", "memory_ratio", "GPU memory in use as a share of the device's memory"),
)


def system_families(reading: Reading, labels: dict[str, str] | None = None) -> list[Metric]:
    """Only the series that were measured; ``labels`` go into every sample."""
    labels = labels or {}
    out: list[Metric] = []
    for name, attr, help_text in _JOB:
        value = getattr(reading, attr)
        if value is not None:
            family = GaugeMetricFamily("gangplank_system_" + name, help_text, labels=list(labels))
            family.add_metric(list(labels.values()), value)
            out.append(family)
    if reading.gpus:
        for name, attr, help_text in _GPU:
            family = GaugeMetricFamily("gangplank_system_" + name, help_text, labels=[*labels, "gpu"])
            for gpu, usage in sorted(reading.gpus.items(), key=lambda item: int(item[0])):
                family.add_metric([*labels.values(), gpu], getattr(usage, attr))
            out.append(family)
    return out


class SystemCollector(Collector):
    """The sampler's latest reading, collected fresh on every scrape or push."""

    def __init__(self, sampler: Sampler, labels: Callable[[], dict[str, str]] = dict) -> None:
        self.sampler = sampler
        self.labels = labels

    def collect(self) -> Iterator[Metric]:
        return iter(system_families(self.sampler.latest, self.labels()))


class SystemGroup:
    """The system series as one Pushgateway group (``phase``, ``version``, ``registry``).

    Nothing is pushed until ``ready()`` (the job's name is known), so that no group is left
    behind under the default job when the first record names the job.
    """

    phase = PHASE

    def __init__(self, sampler: Sampler, ready: Callable[[], bool] = lambda: True) -> None:
        self.sampler = sampler
        self.ready = ready
        self.registry = CollectorRegistry()
        self.registry.register(SystemCollector(sampler))

    @property
    def version(self) -> int:
        return self.sampler.version if self.ready() else 0
