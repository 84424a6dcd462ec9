"""Wrapper mode: run a command, echo and parse its stdout and stderr, pass signals on, exit as it did.

The command runs in a session of its own, so a Ctrl-C at the terminal reaches it once,
through us, exactly as a SIGTERM from Kubernetes does. Its two pipes are read by two
threads; the pipeline is not thread-safe, so their lines go through one lock.
"""

from __future__ import annotations

import errno
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from gangplank_sidecar.sources.stdin import FeedLines, pump

DRAIN_TIMEOUT = 2.0  # after the command exits: its pipes hold at most 64 KiB each, read in milliseconds
EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE = 127, 126


def exit_code(returncode: int) -> int:
    """A shell's exit code: 128+N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run_command(
    argv: Sequence[str],
    feed: FeedLines,
    out: Callable[[bytes], None],
    err: Callable[[bytes], None],
    report: Callable[[str], None],
) -> int:
    """Runs ``argv`` to its end and returns its exit code."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        report(f"cannot run {argv[0]}: {exc.strerror}")
        return EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_NOT_EXECUTABLE
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: proc.send_signal(signum))
    lock = threading.Lock()
    abandoned = threading.Event()  # set once we stop waiting for pipes that something else still holds

    def locked(name: str, lines: Iterable[bytes]) -> None:
        with lock:
            if not abandoned.is_set():
                feed(name, lines)

    def echoing(echo: Callable[[bytes], None]) -> Callable[[bytes], None]:
        def write(chunk: bytes) -> None:
            if not abandoned.is_set():  # no lock: a slow reader of our stdout must not hold up the other pipe
                echo(chunk)

        return write

    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(
            target=pump, args=(pipe.fileno(), name, locked, echoing(echo)), name=f"read-{name}", daemon=True
        )
        for pipe, name, echo in ((proc.stdout, "stdout", out), (proc.stderr, "stderr", err))
    ]
    for reader in readers:
        reader.start()
    try:
        code = exit_code(proc.wait())
    except BaseException:
        proc.terminate()  # we are stopping for good (--strict): the command must not run on unseen
        raise
    deadline = time.monotonic() + DRAIN_TIMEOUT
    for reader in readers:
        reader.join(max(0.0, deadline - time.monotonic()))
    with lock:
        abandoned.set()
    if any(reader.is_alive() for reader in readers):
        report("the command has exited, but a process it started still holds its output open: not reading it any more")
    return code
