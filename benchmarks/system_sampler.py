"""The system sampler's own CPU cost, as a share of one core, at the default interval and at 1 s.

Two measurements: the CPU time of one sample taken in this process (a process tree of five
Python processes, the disk, NVML if there is one), divided by the interval; and the real
``gangplank-sidecar`` idling on an open pipe with ``--system-interval 1`` against
``--system-interval 0``, its CPU time read from the kernel over the same window.
Run: ``.venv/bin/python benchmarks/system_sampler.py [--window SECONDS]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import psutil

from gangplank_sidecar.settings import Settings
from gangplank_sidecar.system.gpu import Gpus
from gangplank_sidecar.system.process import ProcessTree
from gangplank_sidecar.system.sampler import Sampler

DEFAULT_INTERVAL = Settings.model_fields["system_interval"].default  # the sidecar's --system-interval

SLEEPER = (
    "import subprocess, sys, time; [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']) for "
    "_ in range(4)]; time.sleep(600)"
)
SIDECAR = [sys.executable, "-m", "gangplank_sidecar", "--quiet"]


def cpu_per_sample(pid: int, samples: int) -> float:
    sampler = Sampler(DEFAULT_INTERVAL, lambda message: None, ProcessTree(pid), os.getcwd())
    sampler.gpus = Gpus.open(lambda message: None)
    sampler.sample()
    start = time.process_time()
    for _ in range(samples):
        sampler.sample()
    return (time.process_time() - start) / samples


def sidecar_cpu(pid: int, interval: float, window: float) -> float:
    """CPU seconds the idle sidecar used over ``window`` seconds, after its start-up."""
    proc = subprocess.Popen(
        [*SIDECAR, "--system-interval", str(interval), "--pid", str(pid)],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3.0)
        me = psutil.Process(proc.pid)
        before = sum(me.cpu_times()[:2])
        time.sleep(window)
        return sum(me.cpu_times()[:2]) - before
    finally:
        proc.communicate(b"", timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=20.0, help="seconds the real sidecar is watched (default 20)")
    args = parser.parse_args()
    tree = psutil.Process(subprocess.Popen([sys.executable, "-c", SLEEPER]).pid)
    try:
        time.sleep(1.0)
        members = 1 + len(tree.children(recursive=True))
        per_sample = cpu_per_sample(tree.pid, 200)
        print(
            f"one sample ({members} processes in the tree, {len(psutil.pids())} on the machine): "
            f"{per_sample * 1e3:.2f} ms of CPU"
        )
        for interval in (DEFAULT_INTERVAL, 1.0):
            print(f"  at --system-interval {interval:g}: {per_sample / interval:.4%} of a core")
        on = sidecar_cpu(tree.pid, 1.0, args.window)
        off = sidecar_cpu(tree.pid, 0.0, args.window)
        print(
            f"real sidecar over {args.window:g} s: {on / args.window:.4%} of a core with --system-interval 1, "
            f"{off / args.window:.4%} with it off: the sampler costs {(on - off) / args.window:.4%}"
        )
    finally:
        for child in tree.children(recursive=True):
            child.kill()
        tree.kill()
        tree.wait()


if __name__ == "__main__":
    main()
