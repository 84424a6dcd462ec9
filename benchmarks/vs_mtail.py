"""The sidecar beside Debian's mtail and a bare read + json.loads + echo loop, as whole processes.

    .venv/bin/python benchmarks/vs_mtail.py [--lines 300000] [--repeat 3]

Three streams (parser_throughput.stream_lines: emitter step records + epochs, FloydHub lines
per step, Keras 3 verbose=1 progress updates + results; half noise, one epoch per 1,000
lines) and one per framework format (parser_throughput.framework_lines, read with the
``--format``/``--pattern`` of parser_throughput.FRAMEWORK_STREAMS; CSV as ``--format csv``),
each read from a file to its end by: the bare loop (parser_throughput.bare_loop in a fresh interpreter),
mtail in one-shot mode with the program of benchmarks/mtail/ that extracts the same values, and
``gangplank-sidecar --quiet`` without and with the run history. Best of ``--repeat`` wall times of
each whole process; mtail is installed with apt-get if missing, as scripts/test installs the Pushgateway.
The sidecar's bytecode is compiled first, as installing it does (``compile_package``).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from parser_throughput import FRAMEWORK_STREAMS, framework_lines, peak_rss_mib, stream_lines

HERE = Path(__file__).resolve().parent
STREAMS = {
    "emitter": "emitter step records + epochs",
    "floydhub": "FloydHub lines per step",
    "keras": "Keras 3 verbose=1 (progress updates + results)",
    "transformers": "transformers Trainer dicts after tqdm bars",
    "lightning": "Lightning TQDM bars (epoch per line)",
    "xgboost": "XGBoost rounds + warnings",
    "lightgbm": "LightGBM rounds + [Info] lines",
    "csv": "CSV metrics rows (--format csv)",
    "kv": "name=value lines (--format kv)",
    "patterns": "three --pattern regexes",
}


def lines_of(kind: str, count: int) -> list[str]:
    return list(framework_lines(kind, count) if kind in FRAMEWORK_STREAMS else stream_lines(kind, count))


def sidecar_options(kind: str) -> list[str]:
    """The options that make the sidecar read ``kind`` as mtail's program does: its format, its patterns."""
    if kind not in FRAMEWORK_STREAMS:
        return []
    fmt, _source, regexes = FRAMEWORK_STREAMS[kind]
    return ["--format", "csv" if kind == "csv" else fmt] + [
        option for regex in regexes for option in ("--pattern", regex)
    ]


SIDECAR = str(Path(sys.executable).parent / "gangplank-sidecar")


def ensure_mtail() -> str:
    """The mtail command, installed from the Debian package if it is not there yet."""
    found = shutil.which("mtail")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "mtail"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdout=subprocess.DEVNULL,
    )
    return shutil.which("mtail") or sys.exit("mtail is not installed")


def compile_package() -> None:
    """The sidecar as a user runs it: pip writes a package's bytecode when it installs it, but an editable
    install under PYTHONDONTWRITEBYTECODE=1 (this project's machines) recompiles its 50 modules at every
    start (about 0.1 s of CPU). Writes gangplank_sidecar's ``__pycache__`` (ignored by git) once."""
    import compileall

    import gangplank_sidecar

    compileall.compile_dir(Path(gangplank_sidecar.__file__).parent, quiet=1)


def best_wall(
    command: list[str], repeat: int, stdin: Path | None = None, fresh: Path | None = None
) -> tuple[float, float]:
    """Best wall time and best CPU time (user + system) of ``repeat`` runs of ``command``, from start to exit.

    ``fresh`` is emptied before each run. The CPU time tells apart what the process costs from
    what it waited for the two shared cores.
    """
    wall = cpu = float("inf")
    for _ in range(repeat):
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir()
        with open(stdin or os.devnull, "rb") as source:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(command, stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            elapsed = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)}: exit {done.returncode}: {done.stderr.decode()[-2000:]}")
        wall = min(wall, elapsed)
        cpu = min(cpu, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--streams", nargs="*", default=list(STREAMS), choices=list(STREAMS))
    args = parser.parse_args()
    mtail = ensure_mtail()
    compile_package()
    version = subprocess.run([mtail, "--version"], capture_output=True, text=True).stdout.split(" git")[0]
    print(f"{args.lines:,} lines a stream, best of {args.repeat} whole-process runs; {version}")
    print(f"{'stream':<50}{'bare loop':>10}{'mtail':>9}{'sidecar':>9}{'+history':>10}{'vs mtail':>10}{'RSS':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.streams:
            path, progs, db = Path(tmp) / f"{kind}.log", Path(tmp) / f"progs-{kind}", Path(tmp) / "db"
            with path.open("w", encoding="utf-8") as out:
                out.writelines(line + "\n" for line in lines_of(kind, args.lines))
            progs.mkdir()
            shutil.copy(HERE / "mtail" / f"{kind}.mtail", progs)
            bare = best_wall(
                [
                    sys.executable,
                    "-c",
                    f"import sys; sys.path.insert(0, {str(HERE)!r}); "
                    f"from parser_throughput import bare_loop; bare_loop({str(path)!r})",
                ],
                args.repeat,
            )
            theirs = best_wall(
                [
                    mtail,
                    "-one_shot",
                    "-one_shot_format",
                    "prometheus",
                    "-progs",
                    str(progs),
                    "-logs",
                    str(path),
                    "-logtostderr",
                    "-address",
                    "127.0.0.1",
                    "-port",
                    "0",
                ],
                args.repeat,
            )
            options = sidecar_options(kind)
            ours = best_wall([SIDECAR, "--quiet", "--no-history", *options], args.repeat, stdin=path)
            history = best_wall(
                [SIDECAR, "--quiet", "--db", str(db / "runs.db"), *options], args.repeat, stdin=path, fresh=db
            )
            rss = peak_rss_mib(path, options)
            for what, i in (("wall", 0), ("CPU", 1)):
                print(
                    f"{STREAMS[kind] if i == 0 else '':<44}{what:>6}{bare[i]:>8.2f} s{theirs[i]:>7.2f} "
                    f"s{ours[i]:>7.2f} s"
                    f"{history[i]:>8.2f} s{theirs[i] / ours[i]:>9.2f}x" + (f"{rss:>6.1f} MiB" if i == 0 else "")
                )
    print(
        "vs mtail: mtail's time / the sidecar's (--no-history); above 1 the sidecar is faster. CPU: user + system "
        "time of the process. RSS: peak of gangplank-sidecar --quiet (with the history)."
    )


if __name__ == "__main__":
    main()
