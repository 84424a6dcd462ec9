"""Remote write with the receiver down: the sidecar's RSS after N step records, with and without it.

The whole sidecar runs as a subprocess (history off, no system sampling) and reads step records
(two metrics each) from its stdin; the remote-write URL is a loopback port nobody listens on. The
peak RSS (VmHWM) is read from /proc once every record is read, before EOF. A bounded buffer
keeps it flat however many records come.
Run: ``.venv/bin/python benchmarks/remote_write_down.py [--records 200000 1000000]``.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

CHUNK = 10_000


def dead_port() -> int:
    """A loopback port that was free a moment ago: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def lines(start: int, count: int, began: float) -> bytes:
    return "".join(
        f'{{"gangplank": 1, "event": "step", "run": "bench", "phase": "train", "time": {began + n * 0.001:.3f}, '
        f'"step": {n}, "metrics": {{"loss": {1 / (n + 1):.6f}, "accuracy": {n / (n + 1):.6f}}}}}\n'
        for n in range(start, start + count)
    ).encode()


def run(records: int, remote_write: bool) -> float:
    extra = ["--remote-write", f"http://127.0.0.1:{dead_port()}/api/v1/write"] if remote_write else []
    argv = [
        sys.executable,
        "-m",
        "gangplank_sidecar",
        "--quiet",
        "--no-history",
        "--system-interval",
        "0",
        "--flush-timeout",
        "0",
        *extra,
    ]
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert process.stdin is not None
    began = time.time() - records * 0.001
    for start in range(0, records, CHUNK):
        process.stdin.write(lines(start, min(CHUNK, records - start), began))
    process.stdin.flush()
    time.sleep(2.0)  # the sidecar reads what is left in the pipe
    peak = peak_rss_mib(process.pid)
    process.stdin.close()
    process.wait(120)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[200_000, 1_000_000])
    args = parser.parse_args()
    for records in args.records:
        without = run(records, remote_write=False)
        with_rw = run(records, remote_write=True)
        print(
            f"{records:>9,} step records: peak RSS {with_rw:.0f} MiB with remote write to a dead receiver, "
            f"{without:.0f} MiB without ({with_rw / without:.2f}x)"
        )


if __name__ == "__main__":
    main()
