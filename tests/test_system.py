"""System metrics: cgroup files, process trees, a fake NVML, and a real job measured into the real gateway."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import types

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, SIDECAR, Pushgateway, value
from gangplank_sidecar.cli import settings_from
from gangplank_sidecar.settings import ConfigError
from gangplank_sidecar.sinks.summary import summarize
from gangplank_sidecar.system.cgroup import Cgroup, own_path, parse_cpu_max, parse_keyed, parse_memory_max
from gangplank_sidecar.system.families import SystemCollector, system_families
from gangplank_sidecar.system.gpu import Gpus, GpuUsage
from gangplank_sidecar.system.process import CgroupTarget, PodProcesses, ProcessTree, shared_pod
from gangplank_sidecar.system.sampler import Reading, Sampler, Totals, choose_target

FIXTURES = ROOT / "tests/fixtures/cgroup"
V2, PROC = FIXTURES / "v2", FIXTURES / "proc"
MiB = 2**20


# --- cgroup v2 files ---------------------------------------------------------------------------


def test_cgroup_of_a_pod_container_reads_exact_values() -> None:
    cgroup = Cgroup.of(4242, V2, PROC)
    assert cgroup == Cgroup(V2, "/kubepods/pod1/trainer")
    assert cgroup.cpu_seconds() == 81.234567
    assert cgroup.cpu_limit() == 1.5  # its own 150000/100000 is tighter than the pod's 2.5
    assert cgroup.memory_used() == 536870912 - 83886080  # memory.current less inactive_file
    assert cgroup.memory_limit() == 805306368  # tighter than kubepods' 1 GiB


def test_cgroup_without_memory_files_inherits_the_limits_above() -> None:
    cgroup = Cgroup.of(4343, V2, PROC)
    assert cgroup.cpu_seconds() == 5.0
    assert cgroup.memory_used() is None
    assert cgroup.cpu_limit() == 2.5
    assert cgroup.memory_limit() == 1073741824


def test_no_v2_hierarchy_or_no_v2_line_means_no_cgroup() -> None:
    assert Cgroup.of(4242, FIXTURES / "v1", PROC) is None
    assert Cgroup.of("self", V2, PROC) is None  # only a v1 line in its /proc/self/cgroup
    assert Cgroup.of(999999, V2, PROC) is None
    assert Cgroup(V2, "/nowhere").cpu_seconds() is None
    assert Cgroup(V2, "/nowhere").cpu_limit() == math.inf


def test_cgroup_target_cpu_ratio_is_the_share_of_the_quota(tmp_path) -> None:
    root = tmp_path / "v2"
    shutil.copytree(V2, root)
    clock = iter([100.0, 102.0]).__next__
    target = CgroupTarget(Cgroup(root, "/kubepods/pod1/trainer"), clock=clock)
    first = target.read()
    assert (first.cpu_ratio, first.memory_used, first.memory_ratio) == (None, 452984832.0, 0.5625)
    stat = root / "kubepods/pod1/trainer/cpu.stat"
    stat.write_text(stat.read_text().replace("usage_usec 81234567", "usage_usec 82734567"))
    cpus = min(len(os.sched_getaffinity(0)), 1.5)
    assert target.read().cpu_ratio == 1.5 / (2.0 * cpus)


def test_cgroup_target_without_memory_keeps_cpu_and_says_why() -> None:
    target = CgroupTarget(Cgroup(V2, "/kubepods/pod1/nomemory"), clock=iter([0.0, 1.0]).__next__)
    usage = target.read()
    assert (usage.cpu_ratio, usage.memory_used, usage.memory_ratio) == (None, None, None)
    assert usage.missing == f"no memory.current in {V2 / 'kubepods/pod1/nomemory'}"
    assert target.read().cpu_ratio == 0.0


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,20}", fullmatch=True), st.integers(0, 2**63)))
def test_parse_keyed_round_trips(values: dict[str, int]) -> None:
    assert parse_keyed("".join(f"{k} {v}\n" for k, v in values.items())) == values


@given(st.integers(0, 2**40), st.integers(1, 2**40))
def test_parse_cpu_max_is_quota_over_period(quota: int, period: int) -> None:
    assert parse_cpu_max(f"{quota} {period}\n") == quota / period
    assert parse_cpu_max(f"max {period}\n") == math.inf


@given(st.text())
def test_cgroup_parsers_never_raise(text: str) -> None:
    parse_keyed(text)
    assert parse_cpu_max(text) >= 0
    assert parse_memory_max(text) >= 0
    path = own_path(text)
    assert path is None or isinstance(path, str)


@given(st.integers(0, 2**63))
def test_parse_memory_max(limit: int) -> None:
    assert parse_memory_max(f"{limit}\n") == float(limit)
    assert parse_memory_max("max\n") == math.inf


def test_own_path_takes_the_v2_line() -> None:
    assert own_path("12:memory:/a\n0::/kubepods/x\n") == "/kubepods/x"
    assert own_path("0::\n") == "/"
    assert own_path("4:memory:/a\n") is None


# --- a fake NVML at the import boundary ---------------------------------------------------------


class FakeNVMLError(Exception):
    pass


def fake_nvml(devices: list[tuple[int, int, int]], fail: set[int] = frozenset()) -> types.ModuleType:
    """(utilisation %, memory used, memory total) per device, as nvidia-ml-py answers."""
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = FakeNVMLError
    nvml.calls = []
    nvml.nvmlInit = lambda: nvml.calls.append("init")
    nvml.nvmlShutdown = lambda: nvml.calls.append("shutdown")
    nvml.nvmlDeviceGetCount = lambda: len(devices)
    nvml.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)

    def device(handle: tuple[str, int]) -> tuple[int, int, int]:
        if handle[1] in fail:
            raise FakeNVMLError("GPU is lost")
        return devices[handle[1]]

    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=device(h)[0], memory=0)
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=device(h)[1], total=device(h)[2], free=0)
    return nvml


def gpu_sampler(monkeypatch, nvml: types.ModuleType | None) -> tuple[Sampler, list[str]]:
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    said: list[str] = []
    sampler = Sampler(60, said.append, target=None, disk_path=None)
    sampler.start()
    sampler.stop()  # the thread takes the first sample, stop() the last one
    return sampler, said


def exposed(sampler: Sampler, labels: dict[str, str] | None = None) -> dict[tuple[str, frozenset], float]:
    registry = CollectorRegistry()
    registry.register(SystemCollector(sampler, lambda: labels or {}))
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def test_gpu_series_from_nvml_are_exact(monkeypatch) -> None:
    nvml = fake_nvml([(37, 3 * 2**30, 16 * 2**30), (100, 2**30, 8 * 2**30)])
    sampler, said = gpu_sampler(monkeypatch, nvml)
    assert said == []
    assert nvml.calls == ["init", "shutdown"]
    assert exposed(sampler, {"team": "vision"}) == {
        ("gangplank_system_gpu_utilization_ratio", frozenset({("team", "vision"), ("gpu", "0")})): 0.37,
        ("gangplank_system_gpu_utilization_ratio", frozenset({("team", "vision"), ("gpu", "1")})): 1.0,
        ("gangplank_system_gpu_memory_used_bytes", frozenset({("team", "vision"), ("gpu", "0")})): 3 * 2**30,
        ("gangplank_system_gpu_memory_used_bytes", frozenset({("team", "vision"), ("gpu", "1")})): 2**30,
        ("gangplank_system_gpu_memory_utilization_ratio", frozenset({("team", "vision"), ("gpu", "0")})): 0.1875,
        ("gangplank_system_gpu_memory_utilization_ratio", frozenset({("team", "vision"), ("gpu", "1")})): 0.125,
    }
    assert sampler.totals.samples == 2
    assert sampler.totals.gpu == [0.37, 1.0, 0.37, 1.0]


def test_a_gpu_that_stops_answering_keeps_its_last_good_sample(monkeypatch) -> None:
    fail: set[int] = set()
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([(50, 10, 100), (20, 30, 100)], fail))
    sampler = Sampler(60, [].append, target=None, disk_path=None)
    sampler.gpus = Gpus.open(print)
    sampler.sample()
    fail.add(1)
    reading = sampler.sample()
    assert reading.gpus == {"0": GpuUsage(0.5, 10.0, 0.1)}
    assert sampler.latest.gpus == {"0": GpuUsage(0.5, 10.0, 0.1), "1": GpuUsage(0.2, 30.0, 0.3)}


@pytest.mark.parametrize(
    ("nvml", "why"),
    [
        (None, "no GPU series: nvidia-ml-py is not installed"),
        (fake_nvml([]), "no GPU series: NVML sees no GPU"),
    ],
)
def test_no_nvml_or_no_gpu_is_one_log_line_and_no_series(monkeypatch, nvml, why) -> None:
    sampler, said = gpu_sampler(monkeypatch, nvml)
    assert said == [why]
    assert exposed(sampler) == {}


def test_nvml_that_fails_to_start_is_one_log_line(monkeypatch) -> None:
    nvml = fake_nvml([(1, 1, 1)])

    def broken() -> None:
        raise FakeNVMLError("Driver Not Loaded")

    nvml.nvmlInit = broken
    sampler, said = gpu_sampler(monkeypatch, nvml)
    assert said == ["no GPU series: NVML is not available (Driver Not Loaded)"]
    assert exposed(sampler) == {}


# --- names, summary, settings -------------------------------------------------------------------


def full_reading() -> Reading:
    return Reading(
        cpu_ratio=0.25,
        memory_used=3.0 * MiB,
        memory_ratio=0.5,
        disk_used=7e9,
        disk_ratio=0.7,
        gpus={"0": GpuUsage(0.5, 1e9, 0.25)},
    )


def test_names_pass_promtool() -> None:
    registry = CollectorRegistry()

    class Fixed:
        def collect(self):
            return iter(system_families(full_reading(), {"job": "mnist"}))

    registry.register(Fixed())
    text = generate_latest(registry)
    assert text.count(b"# TYPE gangplank_system_") == 8
    done = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_summary_has_peak_memory_mean_cpu_and_mean_gpu() -> None:
    totals = Totals()
    for cpu, memory, gpu in ((None, 100 * MiB, 0.5), (0.25, 300 * MiB, 0.75), (0.75, 200 * MiB, 1.0)):
        totals.add(Reading(cpu_ratio=cpu, memory_used=memory, gpus={"0": GpuUsage(gpu, 0, 0)}))
    assert summarize([], totals) == (
        "gangplank-sidecar: no training or evaluation records seen\n"
        "gangplank-sidecar: system (3 samples): peak memory 300.0 MiB, mean CPU 50.0%, mean GPU 75.0%\n"
    )
    assert summarize([], Totals(samples=2)).endswith("system (2 samples): no CPU, memory or GPU measured\n")


def test_system_options(monkeypatch) -> None:
    monkeypatch.delenv("GANGPLANK_SYSTEM_INTERVAL", raising=False)
    default = settings_from([])
    assert (default.system_interval, default.pid, default.disk_path) == (15.0, None, None)
    given_ = settings_from(["--system-interval", "0.5", "--pid", "42", "--disk-path", "/data"])
    assert (given_.system_interval, given_.pid, given_.disk_path) == (0.5, 42, "/data")
    monkeypatch.setenv("GANGPLANK_SYSTEM_INTERVAL", "2.5")
    assert settings_from([]).system_interval == 2.5
    with pytest.raises(ConfigError, match="--system-interval: Input should be greater than or equal to 0"):
        settings_from(["--system-interval", "-1"])
    with pytest.raises(ConfigError, match="--pid: Input should be greater than 0"):
        settings_from(["--pid", "0"])


def test_without_v2_cgroup_the_target_is_absent_with_one_line() -> None:
    said: list[str] = []
    assert choose_target(None, False, said.append, FIXTURES / "v1", PROC) is None
    assert said == [f"no CPU or memory series: no cgroup v2 at {FIXTURES / 'v1'} (pass --pid PID, or wrap the command)"]


# --- real processes -------------------------------------------------------------------------------

HOLD = 200 * MiB
JOB = f"""
import json, os, sys, time
cpu = min(os.sched_getaffinity(0))
os.sched_setaffinity(0, {{cpu}})  # one CPU: the ratio is the share of it, if the sampler respects the affinity
held = bytearray({HOLD})
held[::4096] = b"x" * len(range(0, {HOLD}, 4096))  # touch every page: resident, not just reserved
print("ready", flush=True)
sys.stdin.readline()
# 6 ms of CPU in every 20 ms: a steady 30% that a busy shared machine still grants in any window.
start, cpu0, periods = time.monotonic(), time.process_time(), 0
while time.monotonic() - start < float(sys.argv[1]):
    until = time.process_time() + 0.006
    while time.process_time() < until:
        pass
    periods += 1
    time.sleep(max(0.0, start + periods * 0.02 - time.monotonic()))
print(json.dumps({{"share": (time.process_time() - cpu0) / (time.monotonic() - start)}}), flush=True)
os._exit(0)  # no teardown that frees the memory bit by bit while a sample looks
"""


def resident(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def test_a_process_that_exits_keeps_its_last_good_sample() -> None:
    child = subprocess.Popen([sys.executable, "-c", JOB, "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    rss = resident(child.pid)
    said: list[str] = []
    sampler = Sampler(60, said.append, ProcessTree(child.pid), disk_path=None, gpus=False)
    first = sampler.sample()
    assert abs(first.memory_used - rss) <= 64 * 1024 and first.cpu_ratio is None  # a page or two may move
    child.communicate("go\n", timeout=30)
    assert sampler.sample().memory_used is None
    sampler.sample()
    assert sampler.latest.memory_used == first.memory_used
    assert said == [f"the process tree of pid {child.pid} has no process left; keeping its last sample"]


def test_pid_mode_pushes_cpu_and_memory_of_a_busy_job(pushgateway: Pushgateway, tmp_path) -> None:
    """--pid on a job pinned to one CPU that holds 200 MiB: the pushed values match what the job saw."""
    child = subprocess.Popen([sys.executable, "-c", JOB, "4"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    rss = resident(child.pid)
    assert HOLD < rss < HOLD + 40 * MiB
    sidecar = subprocess.Popen(
        [
            *SIDECAR,
            "--pushgateway",
            pushgateway.url,
            "--job",
            "burn",
            "--label",
            "team=vision",
            "--system-interval",
            "1",
            "--pid",
            str(child.pid),
            "--disk-path",
            str(tmp_path),
            "--quiet",
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # a first sample before the work starts
    share = json.loads(child.communicate("go\n", timeout=60)[0])["share"]
    time.sleep(2.5)  # samples after the job exited: they must not wipe the last good one
    _, stderr = sidecar.communicate(b'{"metric": "loss", "value": 0.5}\n', timeout=60)
    assert sidecar.returncode == 0, stderr
    samples = pushgateway.gangplank()
    group = {"job": "burn", "phase": "system", "team": "vision"}
    cpu = value(samples, "gangplank_system_cpu_utilization_ratio", **group)
    # The last whole interval against the whole burn, within a quarter (other work on the machine moves
    # the share between intervals): /2 (the affinity ignored) or x100 (a percent) still fail.
    assert abs(cpu - share) < share / 4 and share > 0.2
    memory = value(samples, "gangplank_system_memory_used_bytes", **group)
    assert abs(memory - rss) < 2 * MiB
    cgroup = Cgroup.of(os.getpid())
    limit = min(cgroup.memory_limit() if cgroup else math.inf, psutil.virtual_memory().total)
    assert value(samples, "gangplank_system_memory_utilization_ratio", **group) == memory / limit
    disk = psutil.disk_usage(str(tmp_path))
    assert abs(value(samples, "gangplank_system_disk_used_bytes", **group) - disk.used) < 0.01 * disk.total
    assert (
        abs(value(samples, "gangplank_system_disk_utilization_ratio", **group) - disk.used / (disk.used + disk.free))
        < 0.01
    )
    assert not [k for k in samples if k[0].startswith("gangplank_system_gpu")]
    assert stderr.decode().count("has no process left; keeping its last sample") == 1
    assert b"Traceback" not in stderr


def test_wrapper_mode_measures_the_wrapped_tree_under_the_job_its_records_name(pushgateway: Pushgateway) -> None:
    """No --pid and no --job: the wrapped command is measured, and pushed under the job of its first record."""
    start = {
        "gangplank": 1,
        "event": "start",
        "run": "r1",
        "phase": "train",
        "time": 1.0,
        "params": {"total": 1, "trainable": 1},
        "job": "wrapped",
    }
    job = JOB.replace('print("ready", flush=True)', f"print({json.dumps(start)!r}, flush=True)")
    done = subprocess.run(
        [*SIDECAR, "--pushgateway", pushgateway.url, "--system-interval", "1", "--", sys.executable, "-c", job, "4"],
        input=b"go\n",
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    share = json.loads(done.stdout.splitlines()[-1])["share"]
    samples = pushgateway.gangplank()
    assert {dict(labels).get("job") for name, labels in samples if name.startswith("gangplank_system_")} == {"wrapped"}
    group = {"job": "wrapped", "phase": "system"}
    cpu = value(samples, "gangplank_system_cpu_utilization_ratio", **group)
    assert abs(cpu - share) < 0.05 and share > 0.2
    assert HOLD < value(samples, "gangplank_system_memory_used_bytes", **group) < HOLD + 40 * MiB
    assert done.stderr.decode().count("the wrapped command's process tree has no process left") == 1


TREE = """
import os, subprocess, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
burn = ("import time\\nwhile time.process_time() < 0.5: pass\\n"
        "held = bytearray(50 * 2**20); held[::4096] = b'x' * 12800\\nprint('burnt', flush=True)\\ninput()")
print("ready", flush=True)
sys.stdin.readline()
grandchild = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
print(grandchild.stdout.readline(), end="", flush=True)
sys.stdin.readline()
grandchild.communicate("")
"""


def cpu_seconds(p: psutil.Process) -> float:
    times = p.cpu_times()
    return times.user + times.system


@pytest.mark.parametrize("walk", ["/proc children files", "psutil"])
def test_process_tree_counts_a_process_born_between_two_samples(walk: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        time.sleep(0.2)  # into its blocking read, where its numbers hold still
        tree = ProcessTree(child.pid, clock=iter([10.0, 12.0]).__next__)
        tree._fast = tree._fast and walk == "/proc children files"
        parent = psutil.Process(child.pid)
        before = cpu_seconds(parent)
        first = tree.read()
        assert first.cpu_ratio is None and abs(first.memory_used - parent.memory_info().rss) <= 64 * 1024
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "burnt\n"
        time.sleep(0.2)
        (grandchild,) = parent.children()
        second = tree.read()
        used = cpu_seconds(grandchild) + cpu_seconds(parent) - before
        assert used >= 0.5
        # 2 s on the fake clock, one CPU by the affinity; a clock tick (10 ms) either way at most.
        assert second.cpu_ratio == pytest.approx(used / (2.0 * 1), abs=0.0101)
        assert abs(second.memory_used - parent.memory_info().rss - grandchild.memory_info().rss) <= 64 * 1024
    finally:
        child.communicate("\n", timeout=30)


def test_a_pod_sharing_its_process_namespace_measures_the_other_containers(tmp_path) -> None:
    """PID 1 is the pod's "pause": every process outside the sidecar's cgroup is the training container's."""
    child = subprocess.Popen([sys.executable, "-c", JOB, "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        time.sleep(0.2)
        proc = tmp_path / "proc"
        for pid, cgroup in (
            ("1", "/pause"),
            ("self", "/sidecar"),
            (str(os.getpid()), "/sidecar"),
            (str(child.pid), "/train"),
        ):
            (proc / pid).mkdir(parents=True)
            (proc / pid / "cgroup").write_text(f"0::{cgroup}\n")
        (proc / "1" / "comm").write_text("pause\n")
        said: list[str] = []
        target = choose_target(None, False, said.append, V2, proc)
        assert isinstance(target, PodProcesses) and said == []
        assert target.describe == "the pod's other containers"
        usage = target.read()
        assert abs(usage.memory_used - resident(child.pid)) <= 64 * 1024
        assert usage.memory_ratio == usage.memory_used / psutil.virtual_memory().total
        assert not shared_pod(PROC)  # no PID 1 "pause" in the other fixture
    finally:
        child.communicate("go\n", timeout=30)
