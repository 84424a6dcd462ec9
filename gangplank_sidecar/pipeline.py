"""One pipeline: lines from any source -> parsers -> per-stream interpreter -> run state.

Sources call ``feed`` from the reading thread; nothing here waits on the network. A source
that knows more about a stream than its name (the node agent: a container's labels, the pod's
name as the default job) says so with ``open`` before feeding it, and ``close``s it at its end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gangplank_sidecar import parsers
from gangplank_sidecar.aggregation.checks import Thresholds
from gangplank_sidecar.aggregation.interpret import Interpreter
from gangplank_sidecar.aggregation.state import DEFAULT_JOB, RunState, Store
from gangplank_sidecar.parsers.patterns import Patterns
from gangplank_sidecar.parsers.protocol import UnknownVersion
from gangplank_sidecar.selfmetrics import SelfMetrics
from gangplank_sidecar.sources.lines import OVERSIZED

MAX_REPORTED_ERRORS = 10


@dataclass
class _Stream:
    interpreter: Interpreter
    parse: Callable[[bytes], parsers.Parsed]
    lineno: int = 0
    errors: int = 0
    oversized: int = 0


class Pipeline:
    def __init__(
        self,
        store: Store,
        selfmetrics: SelfMetrics,
        report: Callable[[str], None],
        fmt: str = "auto",
        job: str | None = None,
        thresholds: Thresholds | None = None,
        patterns: Patterns | None = None,
    ) -> None:
        self.store = store
        self.thresholds = thresholds
        self.selfmetrics = selfmetrics
        self.report = report
        self.fmt = fmt
        self.job = job
        self.patterns = patterns
        self._streams: dict[str, _Stream] = {}
        self._versions_reported: set[object] = set()
        self._series_reported = False
        self._counts = selfmetrics.lines
        self._by_format = selfmetrics.lines.by_format  # one attribute lookup per line, not two

    def _stream(self, name: str, labels: dict[str, str] | None = None, default_job: str = DEFAULT_JOB) -> _Stream:
        interpreter = Interpreter(
            self.store, name, self.job, self.report, self.thresholds, self._dropped, labels, default_job
        )
        stream = self._streams[name] = _Stream(interpreter, parsers.stream_parser(self.fmt, name, self.patterns))
        return stream

    def open(self, source: str, labels: dict[str, str], default_job: str, jobs: dict[str, str] | None = None) -> None:
        """Declares a stream: its series carry ``labels``; a run takes its job from ``jobs`` (run -> job), else
        from its start record, else ``default_job``."""
        if source not in self._streams:
            self._stream(source, labels, default_job).interpreter.know_jobs(jobs or {})

    def close(self, source: str) -> None:
        """Forgets a stream that has ended for good (its series stay in the store)."""
        self._streams.pop(source, None)

    def end(self, source: str, status: str) -> None:
        """Ends the runs of a stream that are still going (the node agent's deleted pods)."""

        def ended(series: RunState) -> None:
            series.status = status

        for series in self.store.of_source(source):
            if series.status is None:
                self.store.update(series, "end", ended)

    def forget(self, source: str) -> None:
        """Takes a stream's series out of the store: the sinks stop showing them."""
        for series in self.store.of_source(source):
            self.store.forget(series)

    def on_start(self, callback: Callable[[str, str, str], None]) -> None:
        """Calls ``callback(source, run, job)`` in the reading thread as each run starts."""

        def started(event: str, series: RunState) -> None:
            if event == "start":
                callback(series.source, series.run, series.job)

        self.store.listeners.append(started)

    def feed(self, source: str, line: bytes, when: float | None = None) -> None:
        """One line read (``when``: the time its source gives it)."""
        self.feed_lines(source, (line,), when)

    def feed_lines(self, source: str, lines: Iterable[bytes], when: float | None = None) -> None:
        """The lines of one chunk read, each kept to a few dict lookups when it is none of ours.

        The interpreter may fold the updates they make into one (a CSV file's rows of the epoch in progress),
        which it makes before this returns. Once a stream has brought protocol records, ``auto`` looks for
        nothing else in it: the interpreter would drop its text formats' values anyway (the emitter's are exact).
        """
        stream = self._streams.get(source) or self._stream(source)
        interpreter, by_format = stream.interpreter, self._by_format
        apply = interpreter.apply
        interpreter.folding = True
        try:
            for line in lines:
                stream.lineno += 1
                if line is OVERSIZED:
                    self._oversized(source, stream)
                    continue
                try:
                    fmt, items = stream.parse(line)
                except ValueError as exc:  # UnknownVersion too
                    self._bad(source, stream, exc)
                    continue
                by_format[fmt] += 1
                if items:
                    for item in items:
                        apply(item, when)
                    if fmt == "gangplank" and interpreter.protocol_seen:
                        stream.parse = parsers.PARSERS["gangplank"]
        finally:
            interpreter.folding = False
            interpreter.flush()

    def _bad(self, source: str, stream: _Stream, exc: ValueError) -> None:
        """A line that failed to parse: counted; reported up to ``MAX_REPORTED_ERRORS`` times a stream, and a
        newer protocol version once."""
        self._counts.parse_errors += 1
        if isinstance(exc, UnknownVersion):
            self._counts.by_format["gangplank"] += 1
            if str(exc) not in self._versions_reported:
                self._versions_reported.add(str(exc))
                self.report(f"{source}:{stream.lineno}: skipping records of {exc}")
            return
        self._counts.by_format["error"] += 1
        stream.errors += 1
        if stream.errors <= MAX_REPORTED_ERRORS:
            more = " (further errors are only counted)" if stream.errors == MAX_REPORTED_ERRORS else ""
            self.report(f"{source}:{stream.lineno}: {exc}{more}")

    def _dropped(self, series: RunState, count: int) -> None:
        """Metric keys beyond --max-series: counted, and the first run that had them reported."""
        self._counts.dropped_values += count
        if not self._series_reported:
            self._series_reported = True
            self.report(
                f"run {series.run} (job {series.job}, {series.phase}) has more than {series.max_keys} metric keys: "
                "further keys are dropped (--max-series; counted in gangplank_sidecar_dropped_metric_values_total, "
                "not reported again)"
            )

    def _oversized(self, source: str, stream: _Stream) -> None:
        """A line too long to parse was echoed whole and is counted; the first of a stream is reported."""
        self._counts.oversized += 1
        stream.oversized += 1
        if stream.oversized == 1:
            self.report(
                f"line {stream.lineno} of {source} is too long to parse: echoed, not parsed (further ones are only "
                "counted)"
            )
