"""A log directory laid out as the kubelet and containerd lay out /var/log/pods, for the node agent's tests."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import zlib
from pathlib import Path

T0 = 1796292900  # 2026-12-03T10:15:00Z


def stamp(when: float) -> bytes:
    """RFC 3339 with nanoseconds, as containerd writes it."""
    whole = int(when)
    nanos = round((when - whole) * 1e9)
    return (f"2026-12-03T10:{(whole - T0) // 60 + 15:02d}:{(whole - T0) % 60:02d}.{nanos:09d}Z").encode()


def cri(content: bytes | str, when: float = T0, stream: str = "stdout", split: int = 0) -> bytes:
    """One CRI line, or ``split`` + 1 lines (P ... P F) holding it in parts as containerd splits long lines."""
    data = content.encode() if isinstance(content, str) else content
    if not split:
        return stamp(when) + f" {stream} F ".encode() + data + b"\n"
    size = -(-len(data) // (split + 1))
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(
        stamp(when) + f" {stream} {'F' if i == len(pieces) - 1 else 'P'} ".encode() + p + b"\n"
        for i, p in enumerate(pieces)
    )


def record(event: str, run: str, time: float, **fields: object) -> str:
    return json.dumps({"gangplank": 1, "event": event, "run": run, "phase": "train", "time": time, **fields})


def start(run: str, time: float = T0, **fields: object) -> str:
    return record("start", run, time, params={"total": 10}, **fields)


def epoch(run: str, n: int, metrics: dict[str, float], time: float = T0) -> str:
    return record("epoch", run, time + n, epoch=n, elapsed_seconds=float(n), metrics=metrics, params={"total": 10})


class Kubelet:
    """Writes container logs under ``root``: ``<ns>_<pod>_<uid>/<container>/<restart>.log``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def pod_dir(self, namespace: str, pod: str) -> Path:
        return self.root / f"{namespace}_{pod}_{zlib.crc32(f'{namespace}/{pod}'.encode()):08x}-uid"

    def log(self, namespace: str, pod: str, container: str, restart: int = 0) -> Path:
        path = self.pod_dir(namespace, pod) / container / f"{restart}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, namespace: str, pod: str, container: str, data: bytes, restart: int = 0) -> Path:
        path = self.log(namespace, pod, container, restart)
        with open(path, "ab") as f:
            f.write(data)
        return path

    def rotate(self, path: Path, suffix: str) -> Path:
        """containerLogMaxSize reached: rename to ``<n>.log.<suffix>``, gzip the older plain rotated file."""
        for older in path.parent.glob(path.name + ".*"):
            if older.suffix != ".gz":
                with open(older, "rb") as src, gzip.open(str(older) + ".gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.unlink(older)
        rotated = path.with_name(f"{path.name}.{suffix}")
        os.rename(path, rotated)
        return rotated

    def delete(self, namespace: str, pod: str) -> None:
        shutil.rmtree(self.pod_dir(namespace, pod))
