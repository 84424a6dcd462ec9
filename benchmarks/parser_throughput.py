"""Parse-and-aggregate throughput of the sidecar against a bare read + json.loads + echo loop.

Both read the same file of lines (emitter records, FloydHub lines, Keras 3 and Keras 2
progress lines, noise; three mixes, as one stream each) in the same run, in 64 KiB chunks,
and echo to /dev/null. A third loop runs only the splitter and the parsers, to tell how the
sidecar's time per line splits between parsing and the run state when a mix misses 2/3.
Then one stream per framework format (transformers, Lightning, XGBoost, LightGBM, CSV, ``kv``,
user patterns), each beside the bare loop. Then the real ``gangplank-sidecar`` command reads
100k and 1M lines, and its peak RSS is taken from the kernel (``wait4``).
Run: ``.venv/bin/python benchmarks/parser_throughput.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from gangplank_sidecar import parsers
from gangplank_sidecar.aggregation.state import Store
from gangplank_sidecar.parsers.patterns import from_options
from gangplank_sidecar.pipeline import Pipeline
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.sources.stdin import CHUNK, Echo, pump

BAR = "━" * 20
TARGET = 2 / 3


def keras3_bar(current: int, target: int, metrics: str) -> str:
    done = BAR[: 20 * current // target]
    return (
        f"\x1b[1m{current:2d}/{target}\x1b[0m \x1b[32m{done}\x1b[0m\x1b[37m{BAR[len(done) :]}\x1b[0m "
        f"\x1b[1m0s\x1b[0m 3ms/step{metrics}"
    )


MIXES = {
    "emitter+floydhub+keras+noise": ("emitter", "floydhub", "keras", "noise"),
    "floydhub+noise": ("floydhub", "noise"),
    "keras+noise": ("keras", "noise"),
}


def mixed_lines(
    count: int, kinds: tuple[str, ...] = MIXES["emitter+floydhub+keras+noise"], seed: int = 0
) -> Iterator[str]:
    """``count`` lines, the same share of each kind, in turn.

    Emitter records are mostly ``step`` records with an ``epoch`` record every 1000 lines, as
    ``Emitter(step_every=N)`` writes them: one run of a few hundred epochs, like a real job.
    """
    rng = random.Random(seed)
    for i in range(count):
        epoch = i // 1000 + 1
        loss, acc = rng.random(), rng.random()
        kind = kinds[i % len(kinds)]
        if kind == "emitter" and i % 1000 == 0:
            yield json.dumps(
                {
                    "gangplank": 1,
                    "event": "epoch",
                    "run": "bench",
                    "phase": "train",
                    "time": 1764065730.52 + i,
                    "epoch": epoch,
                    "elapsed_seconds": i * 0.01,
                    "metrics": {"accuracy": acc, "loss": loss, "val_accuracy": acc, "val_loss": loss},
                    "params": {"total": 104202, "trainable": 104202},
                }
            )
        elif kind == "emitter":
            yield json.dumps(
                {
                    "gangplank": 1,
                    "event": "step",
                    "run": "bench",
                    "phase": "train",
                    "time": 1764065730.52 + i,
                    "step": i,
                    "metrics": {"accuracy": acc, "loss": loss},
                }
            )
        elif kind == "floydhub":
            yield json.dumps({"metric": rng.choice(("loss", "accuracy", "val_loss")), "value": loss, "epoch": epoch})
        elif kind == "keras":
            metrics = f" - accuracy: {acc:.4f} - loss: {loss:.4f} - val_accuracy: {acc:.4f} - val_loss: {loss:.4e}"
            n = i // len(kinds)  # an Epoch header, then that epoch's result as Keras 3 or 2 prints it
            yield (
                f"Epoch {n // 2 + 1}/1000000"
                if n % 2 == 0
                else (
                    "\r" + keras3_bar(1, 75, metrics[:-25]) + "\b" * 80 + "\r" + keras3_bar(75, 75, metrics),
                    f"75/75 - 0s - 511us/step{metrics}",
                    f"1875/1875 [==============================] - 3s 1ms/step{metrics}",
                )[n // 2 % 3]
            )
        else:
            yield noise(i, loss)


# The streams of the mtail comparison (benchmarks/vs_mtail.py): one format each, as a real job
# prints it, half noise, one epoch per 1,000 lines and step-level output in between.
EPOCH_LINES = 1000


def noise(i: int, value: float) -> str:
    return f"2025-11-25 10:15:{i % 60:02d} INFO loader: batch {i} of shard {i % 7} prefetched in {value:.3f} ms"


def keras3_progress(current: int, target: int, metrics: str, final: bool = False) -> str:
    """One update of Keras 3's verbose=1 bar when its output is not a terminal: a line of its own."""
    numdigits = len(str(target))
    done = 20 * current // target
    bar = f"\x1b[1m{current:{numdigits}d}/{target}\x1b[0m " + (f"\x1b[32m{BAR[:done]}\x1b[0m" if done else "")
    bar += f"\x1b[37m{BAR[done:]}\x1b[0m"
    timing = " \x1b[1m1s\x1b[0m 3ms/step" if final else f" \x1b[1m{(target - current) * 3 // 1000}s\x1b[0m 3ms/step"
    return bar + timing + metrics


def stream_lines(kind: str, count: int, seed: int = 0) -> Iterator[str]:
    """``count`` lines of one stream: ``emitter``, ``floydhub`` or ``keras``, every second line noise.

    An epoch ends every ``EPOCH_LINES`` lines: emitter step records then an epoch record;
    FloydHub ``step`` points (loss and accuracy) then the epoch's four values; Keras 3 an
    ``Epoch i/N`` header, progress updates (each a line: Keras' bar when piped), then the result.
    """
    rng = random.Random(seed)
    epochs = count // EPOCH_LINES + 1
    per_epoch = EPOCH_LINES // 2  # ours; the other half is noise
    for i in range(count):
        loss, acc = rng.random(), rng.random()
        if i % 2:
            yield noise(i, loss)
            continue
        epoch, k = i // EPOCH_LINES + 1, (i % EPOCH_LINES) // 2  # k-th line of ours in this epoch
        step = (epoch - 1) * per_epoch + k
        if kind == "emitter":
            if k == per_epoch - 1:
                yield json.dumps(
                    {
                        "gangplank": 1,
                        "event": "epoch",
                        "run": "bench",
                        "phase": "train",
                        "time": 1764065730.52 + i,
                        "epoch": epoch,
                        "elapsed_seconds": i * 0.01,
                        "metrics": {"accuracy": acc, "loss": loss, "val_accuracy": acc, "val_loss": loss},
                        "params": {"total": 104202, "trainable": 104202},
                    }
                )
            else:
                yield json.dumps(
                    {
                        "gangplank": 1,
                        "event": "step",
                        "run": "bench",
                        "phase": "train",
                        "time": 1764065730.52 + i,
                        "step": step,
                        "metrics": {"accuracy": acc, "loss": loss},
                    }
                )
        elif kind == "floydhub":
            last = ("loss", "accuracy", "val_loss", "val_accuracy")
            if k >= per_epoch - len(last):
                yield json.dumps({"metric": last[k - per_epoch + len(last)], "value": loss, "epoch": epoch})
            else:
                yield json.dumps({"metric": ("loss", "accuracy")[k % 2], "value": loss, "step": step // 2})
        elif kind == "keras":
            target = per_epoch - 1
            metrics = f" - accuracy: {acc:.4f} - loss: {loss:.4f}"
            if k == 0:
                yield f"Epoch {epoch}/{epochs}"
            elif k == per_epoch - 1:
                yield keras3_progress(
                    target, target, metrics + f" - val_accuracy: {acc:.4f} - val_loss: {loss:.4f}", final=True
                )
            else:
                yield keras3_progress(k, target, metrics)
        else:
            raise ValueError(f"no stream {kind!r}")


def write(path: Path, count: int, kinds: tuple[str, ...] = MIXES["emitter+floydhub+keras+noise"]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for line in mixed_lines(count, kinds):
            out.write(line + "\n")


def bare_loop(path: Path) -> int:
    """What any tool that echoes and reads JSON lines must do at least."""
    lines = 0
    with open(os.devnull, "wb") as out:
        fd = os.open(path, os.O_RDONLY)
        pending = b""
        while chunk := os.read(fd, CHUNK):
            out.write(chunk)
            out.flush()
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            for line in parts:
                lines += 1
                if line.startswith(b"{"):
                    json.loads(line)
        os.close(fd)
    return lines


def sidecar_loop(path: Path) -> int:
    """The sidecar's own reading path: splitter, echo, parsers, interpreter, run state."""
    store, selfmetrics = Store(), SelfMetrics()
    pipeline = Pipeline(store, selfmetrics, report=lambda message: None)
    with open(os.devnull, "wb") as out:
        fd = os.open(path, os.O_RDONLY)
        pump(fd, "bench", pipeline.feed_lines, Echo(out, report=lambda message: None))
        os.close(fd)
    return sum(selfmetrics.lines.by_format.values())


def parse_loop(path: Path) -> int:
    """The splitter, the echo and the parsers alone, without the run state.

    ``--format auto``, and only the protocol once a protocol record came, as the pipeline does.
    """
    lines, parse = 0, parsers.PARSERS["auto"]
    with open(os.devnull, "wb") as out:
        fd = os.open(path, os.O_RDONLY)

        def feed(source: str, chunk: Iterable[bytes]) -> None:
            nonlocal lines, parse
            for line in chunk:
                lines += 1
                try:
                    if parse(line)[0] == "gangplank":
                        parse = parsers.PARSERS["gangplank"]
                except ValueError:
                    pass

        pump(fd, "bench", feed, Echo(out, report=lambda message: None))
        os.close(fd)
    return lines


def shortfall(mix: str, bare: float, parsed: float, sidecar: float) -> str:
    """Why a mix misses the target, in microseconds per line (an average over the mix's lines)."""
    us = [1e6 / rate for rate in (bare, parsed, sidecar)]
    allowed = us[0] / TARGET
    why = {
        "floydhub+noise": "Both decode the FloydHub lines as JSON, but each one is then a metric point: a Point, "
        "and an update of the run's state under the store's lock",
        "keras+noise": "The bare loop decodes none of these lines (none is JSON): it only splits them, while "
        "every Keras line needs a regex match and every second one is an epoch result (an update of the run state "
        "and the training checks)",
    }.get(mix, "")
    return (
        f"  below {TARGET:.2f} in this run: the bare loop spends {us[0]:.2f} us a line, "
        f"so 2/3 allows {allowed:.2f} us; the sidecar spends {us[1]:.2f} us splitting and parsing "
        f"and {us[2] - us[1]:.2f} us on the run state.{' ' + why + '.' if why else ''}"
    )


def rate(loop: Callable[[Path], int], path: Path, repeat: int) -> float:
    """Best lines per second of ``repeat`` runs (the least disturbed by other processes)."""
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        lines = loop(path)
        best = max(best, lines / (time.perf_counter() - started))
    return best


def peak_rss_mib(path: Path, options: list[str] | None = None) -> float:
    """Peak RSS (VmHWM) of ``gangplank-sidecar --quiet`` reading ``path`` on stdin, read until it exits.

    Not ``wait4``'s ru_maxrss: that also counts this process's pages, copied by fork before exec.
    """
    peak = 0.0
    with path.open("rb") as stdin:
        process = subprocess.Popen(
            [sys.executable, "-m", "gangplank_sidecar", "--quiet", *(options or [])],
            stdin=stdin,
            stderr=subprocess.DEVNULL,
        )
        while process.poll() is None:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                break
            peak = max(
                [peak] + [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")]
            )
            time.sleep(0.01)
    assert process.returncode == 0, process.returncode
    return peak


# One stream per framework format: half noise, one epoch per 1,000 lines, the lines in between
# what the framework prints between epochs (logging steps, bar updates, near misses). A CSV
# file holds no noise: its stream is step rows and one epoch row per 1,000.
FRAMEWORK_STREAMS = {  # name -> (--format, stream name, --pattern regexes)
    "transformers": ("auto", "bench", ()),
    "lightning": ("auto", "bench", ()),
    "xgboost": ("auto", "bench", ()),
    "lightgbm": ("auto", "bench", ()),
    "csv": ("auto", "bench/metrics.csv", ()),
    "kv": ("kv", "bench", ()),
    "patterns": (
        "auto",
        "bench",
        (
            r"^iter (?P<step>\d+) loss (?P<loss>\S+)$",
            r"^epoch (?P<epoch>\d+) val (?P<val_loss>\S+)$",
            r"^TEST (?P<acc>\S+)$",
        ),
    ),
}


def framework_lines(kind: str, count: int, seed: int = 0) -> Iterator[str]:
    rng = random.Random(seed)
    tqdm = "\r 33%|███▎      | 4/12 [00:01<00:03,  2.46it/s]"
    for i in range(count):
        epoch, loss = i // 1000, rng.random()
        end = i % 1000 == 999
        if kind == "csv":
            yield (
                "epoch,step,train_loss_epoch,train_loss_step,val_loss"
                if i == 0
                else (f"{epoch},{i},{loss},,{loss}" if end else f"{epoch},{i},,{loss},")
            )
        elif i % 2 == 0 and not end:
            yield f"2025-11-25 10:15:{i % 60:02d} INFO loader: batch {i} of shard {i % 7} prefetched in {loss:.3f} ms"
        elif kind == "transformers":
            yield (
                f"{tqdm}\r                  \r{{'eval_loss': '{loss:.4g}', 'eval_runtime': '0.0976', 'epoch': "
                f"'{epoch + 1}'}}"
                if end
                else f"{tqdm}\r                  \r{{'loss': '{loss:.4g}', 'grad_norm': '0.2171', 'learning_rate': "
                f"'0.00075', 'epoch': '{epoch + i % 1000 / 1000:.4g}'}}"
                if i % 10 == 1
                else tqdm
            )
        elif kind == "lightning":
            bar = (
                f"Epoch {epoch}: {{}}%|█████     | {{}}/500 [00:00<00:00, 717.17it/s, v_num=0, "
                f"train_loss_step={loss:.3g}]"
            )
            yield (
                "\r" + bar.format(100, 500)[:-1] + f", val_loss={loss:.3g}]"
                if end
                else "\r" + bar.format(50, 250) + "\r" + bar.format(51, 255)
            )
        elif kind == "xgboost":
            yield (
                f"[{epoch}]\tvalidation_0-logloss:{loss:.5f}\tvalidation_1-logloss:{loss:.5f}"
                if end
                else f"[10:15:{i % 60:02d}] WARNING: iteration {i} is slow"
            )
        elif kind == "lightgbm":
            yield (
                f"[{epoch + 1}]\ttraining's auc: {loss:g}\tvalid_1's binary_logloss: {loss:g}"
                if end
                else f"[LightGBM] [Info] Number of data points: {i}"
            )
        elif kind == "kv":
            yield (
                f"epoch={epoch + 1} loss={loss:.4f} val_loss={loss:.4f}" if end else f"step={i} loss={loss:.4f} lr=1e-3"
            )
        else:
            yield f"epoch {epoch + 1} val {loss:.4f}" if end else f"iter {i} loss {loss:.4f}"


def framework_loop(fmt: str, source: str, regexes: tuple[str, ...]) -> Callable[[Path], int]:
    """``sidecar_loop`` for one framework stream: its format, stream name and user patterns."""

    def loop(path: Path) -> int:
        store, selfmetrics = Store(), SelfMetrics()
        pipeline = Pipeline(
            store, selfmetrics, report=lambda message: None, fmt=fmt, patterns=from_options(None, regexes)
        )
        with open(os.devnull, "wb") as out:
            fd = os.open(path, os.O_RDONLY)
            pump(fd, source, pipeline.feed_lines, Echo(out, report=lambda message: None))
            os.close(fd)
        return sum(selfmetrics.lines.by_format.values())

    return loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mix, kinds in MIXES.items():
            path = Path(tmp) / "mixed.log"
            write(path, args.lines, kinds)
            bare, sidecar = rate(bare_loop, path, args.repeat), rate(sidecar_loop, path, args.repeat)
            print(f"{args.lines} lines ({mix}, {path.stat().st_size / 2**20:.0f} MiB)")
            print(f"  bare read+json.loads+echo: {bare:10,.0f} lines/s")
            print(f"  gangplank-sidecar:         {sidecar:10,.0f} lines/s   ratio {sidecar / bare:.2f}")
            if sidecar / bare < TARGET:
                print(shortfall(mix, bare, rate(parse_loop, path, args.repeat), sidecar))
        for kind, (fmt, source, regexes) in FRAMEWORK_STREAMS.items():
            path = Path(tmp) / f"{kind}.log"
            path.write_text("".join(line + "\n" for line in framework_lines(kind, args.lines)), encoding="utf-8")
            bare, sidecar = (
                rate(bare_loop, path, args.repeat),
                rate(framework_loop(fmt, source, regexes), path, args.repeat),
            )
            print(
                f"{args.lines} lines ({kind} stream, {path.stat().st_size / 2**20:.0f} MiB): bare loop {bare:10,.0f} "
                "lines/s, "
                f"gangplank-sidecar {sidecar:10,.0f} lines/s, ratio {sidecar / bare:.2f}"
            )
            path.unlink()
        for count in (100_000, 1_000_000):
            path = Path(tmp) / f"rss{count}.log"
            write(path, count)
            print(f"peak RSS of gangplank-sidecar --quiet, {count:>9,} lines: {peak_rss_mib(path):.1f} MiB")
            path.unlink()


if __name__ == "__main__":
    main()
