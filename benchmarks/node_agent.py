"""The node agent on a busy node: 300 containers followed at once, mostly noise.

Lays out a kubelet-style log directory (150 pods of 2 containers, 1 in 10 training with the
emitter's records, the rest printing noise), starts ``gangplank-sidecar --kubernetes-logs`` with
a real Pushgateway and ``--listen``, and measures, from /proc:

- CPU (user + system) while nothing is written (idle), and while every container writes a
  noise line every NOISE_PERIOD seconds on average;
- RSS at the end and its peak (VmHWM);
- the inotify watches the agent holds (from /proc/PID/fdinfo), against the kernel's limit.

Run: .venv/bin/python benchmarks/node_agent.py [--containers 300] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from _common import free_port, start_pushgateway

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from kubelet import Kubelet, cri, epoch, start

NOISE_PERIOD = 10.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_kib(pid: int, key: str) -> int:
    line = next(s for s in Path(f"/proc/{pid}/status").read_text().splitlines() if s.startswith(key + ":"))
    return int(line.split()[1])


def inotify_watches(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                count += Path(f"/proc/{pid}/fdinfo/{fd}").read_text().count("inotify wd:")
        except OSError:
            continue
    return count


def lines_read(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(s.rsplit(" ", 1)[1]) for s in text.splitlines() if s.startswith("gangplank_sidecar_lines_total{"))


def wait_read(port: int, lines: float) -> float:
    """When the agent listening on ``port`` has read ``lines`` lines."""
    while True:
        try:
            if lines_read(port) >= lines:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.1)


def layout(k: Kubelet, containers: int, backlog: int) -> list[tuple[str, str, str]]:
    """Each container's log holds ``backlog`` lines; 1 in 10 is a training container."""
    names = []
    for i in range(containers):
        pod, container = f"job-{i // 2:03d}", ("main", "sidecar")[i % 2]
        ns = ("ml", "research", "default")[i % 3]
        lines = [cri(f"noise line {n} of {pod}/{container}: nothing to see here, {'x' * 40}") for n in range(backlog)]
        if i % 10 == 0:
            run = f"r{i}"
            lines[:3] = [
                cri(start(run, job=f"train-{i}")),
                cri(epoch(run, 1, {"loss": 0.5, "accuracy": 0.8})),
                cri(epoch(run, 2, {"loss": 0.25, "accuracy": 0.9})),
            ]
        k.write(ns, pod, container, b"".join(lines))
        names.append((ns, pod, container))
    return names


def measure(pid: int, seconds: float, work: Callable[[], None] = lambda: None) -> float:
    """Mean CPU use (fraction of one core) over ``seconds`` while ``work`` runs every 10 ms."""
    before, t0 = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - t0 < seconds:
        work()
        time.sleep(0.01)
    return (cpu_seconds(pid) - before) / (time.monotonic() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=200, help="lines in each log at the start")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        k = Kubelet(Path(tmp) / "pods")
        names = layout(k, args.containers, args.backlog)
        expected = args.containers * args.backlog
        gateway = start_pushgateway()
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "gangplank_sidecar",
            "--kubernetes-logs",
            str(k.root),
            "--pushgateway",
            gateway.url,
            "--listen",
            str(port),
            "--state-file",
            str(Path(tmp) / "state.json"),
            "--no-history",
        ]
        agent = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        try:
            t0 = time.monotonic()
            backlog_s = wait_read(port, expected) - t0
            time.sleep(3)  # the first pushes
            idle = measure(agent.pid, args.seconds)

            rate = args.containers / NOISE_PERIOD
            written = 0
            t1 = time.monotonic()

            def noise() -> None:
                nonlocal written
                due = int((time.monotonic() - t1) * rate)
                while written < due:
                    ns, pod, container = random.choice(names)
                    k.write(ns, pod, container, cri(f"noise {written}: a line nobody parses, {'y' * 40}"))
                    written += 1

            noisy = measure(agent.pid, args.seconds, noise)
            time.sleep(2)
            read = lines_read(port) - expected
            rss, peak = status_kib(agent.pid, "VmRSS"), status_kib(agent.pid, "VmHWM")
            watches = inotify_watches(agent.pid)
            agent.terminate()
            agent.wait(30)
            agent = subprocess.Popen(argv, stderr=subprocess.DEVNULL)  # a restart replays up to the checkpoints
            t2 = time.monotonic()
            replay_s = wait_read(port, expected + written) - t2
        finally:
            agent.terminate()
            agent.wait(30)
            gateway.stop()
    limit = Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip()
    print(f"node agent, {args.containers} containers, {args.backlog} lines each at the start ({expected} lines)")
    print(f"  backlog read in            {backlog_s:.1f} s ({expected / backlog_s:,.0f} lines/s, first read)")
    print(
        f"  agent restart: replayed    {expected + written} lines in {replay_s:.1f} s (from the start, including "
        "start-up; nothing pushed again)"
    )
    print(f"  CPU idle                   {idle * 100:.2f} % of a core (budget 1 %)")
    print(
        f"  CPU with noise             {noisy * 100:.2f} % of a core at {rate:.0f} lines/s ({written} written, "
        f"{read:.0f} read)"
    )
    print(f"  RSS                        {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB; budget 100 MB)")
    print(f"  inotify watches            {watches} (kernel limit per user: {limit})")


if __name__ == "__main__":
    main()
