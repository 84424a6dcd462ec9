"""One pipeline: lines from any source -> parsers -> per-stream interpreter -> run state.

Sources call ``feed`` from the reading thread; nothing here waits on the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from gangplank_sidecar import parsers
from gangplank_sidecar.aggregation.interpret import Interpreter
from gangplank_sidecar.aggregation.state import Store
from gangplank_sidecar.checks import Thresholds
from gangplank_sidecar.parsers.protocol import UnknownVersion
from gangplank_sidecar.selfmetrics import SelfMetrics

MAX_REPORTED_ERRORS = 10


@dataclass
class _Stream:
    interpreter: Interpreter
    lineno: int = 0
    errors: int = 0


class Pipeline:
    def __init__(
        self,
        store: Store,
        selfmetrics: SelfMetrics,
        report: Callable[[str], None],
        fmt: str = "auto",
        job: str | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.store = store
        self.thresholds = thresholds
        self.selfmetrics = selfmetrics
        self.report = report
        self.fmt = fmt
        self.job = job
        self._streams: dict[str, _Stream] = {}
        self._versions_reported: set[object] = set()
        self._lines: dict[str, Counter] = {}

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            interpreter = Interpreter(self.store, name, self.job, self.report, self.thresholds)
            stream = self._streams[name] = _Stream(interpreter)
        return stream

    def _count(self, fmt: str) -> None:
        counter = self._lines.get(fmt)
        if counter is None:
            counter = self._lines[fmt] = self.selfmetrics.lines.labels(fmt)
        counter.inc()

    def feed(self, source: str, line: bytes) -> None:
        stream = self._stream(source)
        stream.lineno += 1
        try:
            fmt, items = parsers.parse(line, self.fmt)
        except UnknownVersion as exc:
            self._count("gangplank")
            self.selfmetrics.parse_errors.inc()
            if str(exc) not in self._versions_reported:
                self._versions_reported.add(str(exc))
                self.report(f"{source}:{stream.lineno}: skipping records of {exc}")
            return
        except ValueError as exc:
            self._count("error")
            self.selfmetrics.parse_errors.inc()
            stream.errors += 1
            if stream.errors <= MAX_REPORTED_ERRORS:
                more = " (further errors are only counted)" if stream.errors == MAX_REPORTED_ERRORS else ""
                self.report(f"{source}:{stream.lineno}: {exc}{more}")
            return
        self._count(fmt)
        for item in items:
            stream.interpreter.apply(item)
