"""One sidecar: a source, the pipeline and its run state, and the sinks, started and ended in order.

Start: everything that can fail on configuration (transport, ``--listen``) fails before a byte
is read. End: stop reading, stop the sampler, then give every sink the same flush deadline.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from prometheus_client import disable_created_metrics

from gangplank_sidecar.aggregation.state import Store, key
from gangplank_sidecar.errors import ConfigError
from gangplank_sidecar.parsers import patterns as user_patterns
from gangplank_sidecar.pipeline import Pipeline
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.settings import Settings
from gangplank_sidecar.sinks import Sink
from gangplank_sidecar.sinks.summary import summarize
from gangplank_sidecar.sinks.transport import Transport, check
from gangplank_sidecar.sources.stdin import Echo, read_stdin
from gangplank_sidecar.sparkline import levels_for

# The parts a mode may not use are imported where that mode wires them (a pipe with --no-history
# loads neither SQLite, protobuf, watchfiles nor the HTTP server): their imports are most of the start.
if TYPE_CHECKING:
    from gangplank_sidecar.sinks.history import HistorySink
    from gangplank_sidecar.sinks.listen import ListenSink
    from gangplank_sidecar.sinks.pushgateway import PushgatewaySink
    from gangplank_sidecar.sinks.remote_write import RemoteWriteSink
    from gangplank_sidecar.sources.files import Follower
    from gangplank_sidecar.system.sampler import Sampler

EXIT_OK, EXIT_UNDELIVERED, EXIT_USAGE = 0, 1, 2
NODE_AGENT_JOB = "gangplank-node-agent"
NODE_CHECKPOINT_EVERY = 2.0  # hundreds of noisy logs: a state file write (an fsync) at most this often


class Undelivered(Exception):
    """--strict: a push failed after its retries; we stop at once, which breaks the producer's pipe."""


def report(message: str) -> None:
    """One write per message: print() writes the newline apart, so threads' reports interleave."""
    sys.stderr.write(f"gangplank-sidecar: {message}\n")
    sys.stderr.flush()


def _raise(exception: type[Exception]) -> Callable[[int, object], None]:
    """A signal handler that raises ``exception`` in the main thread, ending its blocking read."""

    def handler(signum: int, frame: object) -> None:
        raise exception

    return handler


def _say(message: str) -> None:
    """``report`` for a signal handler: one unbuffered write, so it can never meet a half-done one."""
    with contextlib.suppress(OSError):
        os.write(2, f"gangplank-sidecar: {message}\n".encode())


class Signals:
    """SIGTERM, SIGHUP and SIGINT from the read to the exit: one stop, then shorter waits, never a traceback.

    While reading, a signal ends the read (``stopped``), except the first SIGINT in pipe mode:
    the producer got the same Ctrl-C and may still be writing its last lines (a "saving checkpoint"
    print, the emitter's end record), so we read and echo on to EOF like ``tee -i``; a second one
    stops at once. Then a signal ends ``--linger`` (a stop skips it); during the final delivery it cuts the
    delivery short (``on_cut``), and what was not delivered is said as usual. The handler never
    raises: an exception could land in the middle of a record's update of the run state.
    """

    def __init__(self, patient: bool) -> None:
        self.patient = patient
        self.stage = "reading"  # then "linger", then "flush"
        self.interrupted = self.stopped = self.linger_over = self.cut = False
        self.on_cut: list[Callable[[], None]] = []

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.stage == "reading":
            if signum == signal.SIGINT and self.patient and not self.interrupted:
                self.interrupted = True
                _say("interrupted: reading on until the producer closes the pipe (Ctrl-C again stops now)")
                return
            self.stage = "linger"
            self.stopped = self.linger_over = True  # a stop is no end of input to linger after
            _say("stopping: delivering the final state")
            return
        if self.stage == "linger":
            self.linger_over = True
            return
        if not self.cut:
            self.cut = True
            _say("interrupted: cutting the final delivery short")
        for hurry in self.on_cut:
            hurry()


def _interrupt_main() -> None:
    """Called by the push worker: a signal is the one thing that ends the main thread's blocking read."""
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)


class Sidecar:
    def __init__(self, settings: Settings) -> None:
        """Builds every part; raises ConfigError (exit 2) before anything is read."""
        disable_created_metrics()
        self.settings = s = settings
        self.store = Store(max_series=s.max_series)
        self.selfmetrics = SelfMetrics()
        self.pipeline = Pipeline(
            self.store,
            self.selfmetrics,
            report,
            fmt=s.format,
            job=None if s.kubernetes_logs else s.job,
            thresholds=s.check_threshold,
            patterns=user_patterns.from_options(s.patterns, s.pattern),
        )
        if s.kubernetes_logs and not os.path.isdir(s.kubernetes_logs):
            raise ConfigError(f"--kubernetes-logs: {s.kubernetes_logs} is not a directory")
        if s.files and not s.command:
            from gangplank_sidecar.sources.files import unusable
        for path in s.files if not s.command else ():
            if (why := unusable(path)) is not None:
                raise ConfigError(why)
        for option, file in (("--state-file", s.state_file), ("--db", s.db if s.history else None)):
            if file and os.path.exists(file) and not os.path.isfile(file):  # a FIFO would block our open() for good
                raise ConfigError(f"{option} {file}: not a regular file")
        try:
            if s.pushgateway:
                check(s.pushgateway, s.transport)
            if s.pushgateway or s.remote_write:  # the senders: without one, no CA store to load (30 ms of CPU)
                self.transport = Transport(s.transport)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.listen: ListenSink | None = None
        if s.listen:
            from gangplank_sidecar.sinks.listen import ListenSink

            self.listen = ListenSink(s.listen, self.store, s.labels, self.selfmetrics.registry, self.job, report)
        self.sampler = self._sampler()
        if self.listen is not None and self.sampler is not None:
            from gangplank_sidecar.system.families import PHASE as SYSTEM_PHASE
            from gangplank_sidecar.system.families import SystemCollector

            def labels() -> dict[str, str]:
                return {"job": self.job(), "phase": SYSTEM_PHASE, **s.labels}

            self.listen.registry.register(SystemCollector(self.sampler, labels))
        self.follower: Follower | None = None
        self.push: PushgatewaySink | None = None
        self.writers: list[RemoteWriteSink] = []
        self.history: HistorySink | None = None
        self.gave_up = False  # --strict: the push worker said it gives up (then the end does not say it again)
        self.signals = Signals(patient=not (s.command or s.files or s.kubernetes_logs) and not _terminal_stdin())

    def job(self) -> str:
        """The job the sidecar's own series go under: --job, else the first record's job (the node agent's own)."""
        if self.settings.kubernetes_logs:
            return self.settings.job or NODE_AGENT_JOB
        return self.store.job(self.settings.job)

    def _sampler(self) -> Sampler | None:
        s = self.settings
        if not s.system_interval or s.kubernetes_logs:  # the node agent measures no training process
            return None
        from gangplank_sidecar.system.sampler import Sampler, choose_target

        disk = s.disk_path or (os.path.dirname(os.path.abspath(s.files[0])) if s.files else os.getcwd())
        return Sampler(s.system_interval, report, choose_target(s.pid, bool(s.command), report), disk)

    def start(self) -> None:
        """File mode replays each file up to its checkpoint first: that state was already pushed."""
        s = self.settings
        if self.listen is not None:
            from gangplank_sidecar.sinks.listen import parse_address

            self.listen.start()
            if parse_address(s.listen or "")[1] == 0:
                host = _host(str(self.listen.server.server_address[0]))
                report(f"serving /metrics at http://{host}:{self.listen.port}/metrics")
        if s.files or s.kubernetes_logs:
            from gangplank_sidecar.sources.checkpoint import Checkpoints, default_path
        if s.files and not s.command:
            from gangplank_sidecar.sources.files import Follower

            path = Path(s.state_file) if s.state_file else default_path(s.files)
            self.follower = Follower(
                s.files, self.pipeline.feed, report, Checkpoints(path, report), lambda: self.store.version
            )
            self.follower.resume()
        if s.kubernetes_logs:
            from gangplank_sidecar.sources.kubernetes import KubernetesLogs

            path = Path(s.state_file) if s.state_file else default_path([s.kubernetes_logs])
            self.follower = KubernetesLogs(
                s.kubernetes_logs,
                self.pipeline,
                report,
                Checkpoints(path, report, interval=NODE_CHECKPOINT_EVERY),
                lambda: self.store.version,
                s.kubernetes_namespaces,
                s.kubernetes_forget_after,
            )
            self.follower.resume()
        if s.pushgateway:
            self._start_push()
        if s.remote_write:
            from gangplank_sidecar.sinks.remote_write import remote_write_sinks

            recorder, self.writers = remote_write_sinks(
                s.remote_write, s.labels, self.selfmetrics.registry, report, self.transport, s.retry
            )
            self.store.listeners.append(recorder)
            for writer in self.writers:
                writer.start()
        if self.sampler is not None:
            self.sampler.start()
        self.history = self._history()
        if self.follower is not None and self.follower.checkpoints is not None:
            self.follower.checkpoints.start(functools.partial(self._delivered_through, self.store.version))

    def _sinks(self) -> list[Sink]:
        """In closing order: the remote writers keep sending their batches while the Pushgateway flushes."""
        return [sink for sink in (self.listen, self.push, *self.writers, self.history) if sink is not None]

    def _delivered_through(self, replayed: int) -> int:
        """What a checkpoint may claim: the least version every sink has delivered. A sink started after the
        replay never heard of its versions (up to ``replayed``): they were delivered before the restart."""
        return min((max(sink.delivered_through(), replayed) for sink in self._sinks()), default=self.store.version)

    def _start_push(self) -> None:
        from gangplank_sidecar.sinks.pushgateway import PushgatewaySink
        from gangplank_sidecar.system.families import SystemGroup

        s = self.settings
        signal.signal(signal.SIGUSR1, _raise(Undelivered))
        self.push = push = PushgatewaySink(
            self.store,
            s.pushgateway or "",
            s.labels,
            self.selfmetrics,
            report,
            job=(s.job or NODE_AGENT_JOB) if s.kubernetes_logs else s.job,
            handler=self.transport,
            retry=s.retry,
            timeout=s.transport.push_timeout,
            on_failed=self._gave_up if s.strict else None,
        )
        if self.sampler is not None:
            sampler = self.sampler
            push.groups.append(SystemGroup(sampler, ready=lambda: bool(s.job or self.store.version or sampler.stopped)))
            sampler.listeners.append(lambda reading: push.wake())
        if self.follower is not None:
            push.assume_delivered()
        if s.kubernetes_logs:
            from gangplank_sidecar.sources.kubernetes import KubernetesLogs

            if isinstance(self.follower, KubernetesLogs):
                push.delete([key(*group) for group in self.follower.orphans])
        push.start()

    def _gave_up(self) -> None:
        """--strict: the push failed after its retries and the worker said so; stop reading at once.

        When the reading has already ended, the signal is ignored and the end goes on: it must not
        report the same failure a second time.
        """
        self.gave_up = True
        _interrupt_main()

    def _history(self) -> HistorySink | None:
        """The run history (on by default); a database that cannot be opened is reported, never fatal."""
        if not self.settings.history:
            return None
        import sqlite3

        from gangplank_sidecar.runs import db as history_db
        from gangplank_sidecar.sinks.history import HistorySink

        path = Path(self.settings.db) if self.settings.db else history_db.default_path()
        try:
            history = HistorySink(path, self.settings.labels, report, self.selfmetrics.registry)
        except (OSError, sqlite3.Error) as exc:
            report(f"run history disabled: {path}: {exc}")
            return None
        self.store.listeners.append(history.listen)
        if self.sampler is not None:
            self.sampler.listeners.append(lambda reading: history.system(self.job(), reading))
        history.start()
        return history

    def read(self, echo: Echo) -> int:
        """Reads the source to its end or a stop signal; the wrapped command's exit code, else 0.

        What start-up built lives as long as the process: ``gc.freeze`` takes it out of the collector's
        view, so that the collections the reading path's garbage triggers do not walk it each time.
        """
        s = self.settings
        gc.freeze()
        try:
            if self.signals.stopped:  # during the start (a long replay of followed files)
                return EXIT_OK
            if s.command:
                from gangplank_sidecar.sources.command import run_command

                errors = Echo(
                    None if s.quiet else sys.stderr.buffer,
                    report,
                    records=echo_records(s, sys.stderr, "stderr", notice=not sys.stdout.isatty()),
                )
                return run_command(s.command, self.pipeline.feed_lines, echo, errors, report)
            if self.follower is not None:
                from gangplank_sidecar.sources.files import follow

                runs = (lambda: [(r.source, r.status) for r in self.store.all_runs()]) if s.exit_on_end else None
                follow(self.follower, runs, lambda: self.signals.stopped)
            else:
                read_stdin(self.pipeline.feed_lines, echo, lambda: self.signals.stopped)
        finally:
            if self.signals.stage == "reading":
                self.signals.stage = "linger"
            self.signals.install()  # the wrapped command had its own handlers, to pass signals on
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # from here on, the end decides the exit code
        return EXIT_OK

    def finish(self, echo: Echo, strict_failed: bool = False) -> bool:
        """Ends every part; True when everything was delivered within --flush-timeout."""
        s = self.settings
        if self.listen is not None:
            self._linger()
        self.signals.stage = "flush"
        if self.sampler is not None:
            self.sampler.stop()
        if self.push is not None:
            self.signals.on_cut.append(self.push.hurry)
        for writer in self.writers:
            # mypy cannot infer a lambda with a default argument (it binds this loop's writer)
            self.signals.on_cut.append(lambda writer=writer: writer.stop(time.monotonic()))  # type: ignore[misc]
        deadline = time.monotonic() + (0 if strict_failed or self.signals.cut else s.flush_timeout)
        closed = [(sink, sink.close(time.monotonic() if self.signals.cut else deadline)) for sink in self._sinks()]
        if self.follower is not None and self.follower.checkpoints is not None:
            self.follower.checkpoints.close()
        if self.push is None:
            totals = self.sampler.totals if self.sampler else None
            sys.stderr.write(
                ("\n" if echo.mid_line else "")
                + summarize(
                    self.store.all_runs(), totals, dropped=self.store.dropped, levels=levels_for(sys.stderr.encoding)
                )
            )
        if self.push is not None and not dict(closed)[self.push] and not strict_failed and not self.gave_up:
            what = ", ".join(self.push.undelivered()) or "the sidecar's own metrics"
            when = "before the signal" if self.signals.cut else f"within {s.flush_timeout:g} s"
            report(f"not delivered to the Pushgateway at {s.pushgateway} {when}: {what} ({self.push.last_error})")
        return all(delivered for _, delivered in closed)

    def _linger(self) -> None:
        """Serves the final state a little longer, so that a last scrape can happen; a signal ends it."""
        end = time.monotonic() + self.settings.linger
        while not self.signals.linger_over and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))  # a handler that returns does not end a sleep (PEP 475)


def echo_records(settings: Settings, out: TextIO, name: str = "stdout", notice: bool = True) -> bool:
    """Whether the echo to ``out`` shows protocol records: --echo, else all to a pipe or file, none to a terminal.

    The first echo that leaves them out says so once (``notice``).
    """
    if settings.echo != "auto" or settings.quiet or settings.files:
        return settings.echo != "text"
    if not out.isatty():
        return True
    if notice:
        report(f"{name} is a terminal: protocol records are not echoed (--echo all shows them)")
    return False


def _terminal_stdin() -> bool:
    """At a terminal nobody else is cleaning up after a Ctrl-C: the first one stops."""
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return False


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run(settings: Settings) -> int:
    try:
        sidecar = Sidecar(settings)
    except ConfigError as exc:
        report(str(exc))
        return EXIT_USAGE
    echo = Echo(None if settings.quiet else sys.stdout.buffer, report, records=echo_records(settings, sys.stdout))
    sidecar.signals.install()
    try:
        sidecar.start()
        code = sidecar.read(echo)
    except Undelivered:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        sidecar.finish(echo, strict_failed=True)
        return EXIT_UNDELIVERED
    delivered = sidecar.finish(echo)
    if code:
        return code
    return EXIT_UNDELIVERED if settings.strict and not delivered else EXIT_OK
